"""The one interface every lawfit result shares (see :class:`ResultProtocol`).

Every result type (:class:`~lawfit.FitResult`, :class:`~lawfit.FitResults`,
``ComparisonResult``, ``CapacityPrediction``, ``BitsResult``, ``GradientBudget``,
``MemftSavings``, ``BudgetSensitivity``, ``PhaseTransitionResult``) offers:

- ``summary()``: text (``str()``), ``.as_html()`` and ``.as_latex()``;
- ``to_dataframe()``: the tidy main table;
- ``to_dataset()``: the same as an :class:`xarray.Dataset` (flags and notes in attrs);
- ``save(path)`` / :func:`lawfit.load`: plain JSON. A :class:`~lawfit.FitResult`
  round-trips completely; the other results are saved as a :class:`ResultRecord`
  (their tables, summary, flags and notes), which offers the same interface;
- ``flags``: a tuple of :class:`~lawfit.result.Flag` (code, message, severity).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError

__all__ = ["Flag", "SummaryText", "ResultProtocol", "ResultRecord", "RECORD_FORMAT"]

RECORD_FORMAT = "lawfit.ResultRecord"


@dataclass(frozen=True)
class Flag:
    """A diagnostic of a result: what was found, in words, and how serious it is.

    Attributes
    ----------
    code : str
        Stable machine-readable name (e.g. ``"at_bound"``); test and branch on this.
    message : str
        One sentence for people (``str(flag)``).
    severity : {"info", "warning"}
        ``"warning"``: a number of the result may be unreliable; ``"info"``: context.
    """

    code: str
    message: str
    severity: str = "warning"

    def __post_init__(self):
        if self.severity not in ("info", "warning"):
            raise LawfitError(f"Flag severity must be 'info' or 'warning'; got {self.severity!r}.")

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        """``{"code", "message", "severity"}`` (JSON-safe)."""
        return {"code": self.code, "message": self.message, "severity": self.severity}

    @classmethod
    def from_dict(cls, d: Mapping[str, str] | str) -> Flag:
        """Inverse of :meth:`to_dict`; a plain string (format-1 files) gets code "legacy"."""
        if isinstance(d, str):
            return cls("legacy", d)
        return cls(d["code"], d["message"], d.get("severity", "warning"))


def _flt(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _clean(obj):
    """Recursively make an object JSON-safe (NaN/inf -> None, numpy -> python)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _flt(obj)
    return obj


def _number_to_json(v: float) -> float | str | None:
    """NaN -> None; +-inf -> "inf"/"-inf" (JSON has neither); finite -> float."""
    if math.isnan(v):
        return None
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def _number_from_json(v) -> float:
    return np.nan if v is None else float(v)


def _frame_to_json(df: pd.DataFrame):
    """Plain-JSON columns of a frame (dtype kept; NaN -> null, inf -> "inf")."""
    cols = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            cols[str(c)] = {"dtype": "bool", "values": [bool(v) for v in s.tolist()]}
        elif pd.api.types.is_numeric_dtype(s):
            cols[str(c)] = {
                "dtype": str(s.dtype),
                "values": [_number_to_json(float(v)) for v in s.to_numpy(float)],
            }
        else:
            cols[str(c)] = {
                "dtype": "str",
                "values": [None if pd.isna(v) else str(v) for v in s.tolist()],
            }
    return {"columns": cols, "n": int(len(df))}


def _frame_from_json(d):
    """Inverse of :func:`_frame_to_json`."""
    out = {}
    for c, spec in d["columns"].items():
        vals = spec["values"]
        if spec["dtype"] == "str":
            out[c] = pd.Series(vals, dtype=object)
        elif spec["dtype"] == "bool":
            out[c] = np.array(vals, bool)
        else:
            a = np.array([_number_from_json(v) for v in vals], float)
            if spec["dtype"].startswith("int") and np.all(np.isfinite(a)):
                a = a.astype(spec["dtype"])
            out[c] = a
    return pd.DataFrame(out, index=pd.RangeIndex(d["n"]))


class SummaryText(str):
    """A result's summary: plain text (it *is* a ``str``) that also renders as HTML and LaTeX.

    Parameters
    ----------
    text : str
        The plain-text summary.
    tables : sequence of (str, pandas.DataFrame)
        Captioned tables for the HTML and LaTeX renderings.
    flags, notes : sequence
        Flags (:class:`~lawfit.result.Flag`) and notes listed after the tables.
    title : str
        Heading of the HTML and LaTeX renderings.
    """

    def __new__(cls, text, tables=(), flags=(), notes=(), title=""):  # noqa: D102
        obj = super().__new__(cls, text)
        obj.tables = tuple(tables)
        obj.flags = tuple(flags)
        obj.notes = tuple(notes)
        obj.title = title
        return obj

    def as_text(self) -> str:
        """Plain text (same as ``str()``)."""
        return str(self)

    def as_html(self) -> str:
        """HTML: a heading, one table per part, then flags and notes as lists."""
        out = [f"<h4>{html.escape(self.title)}</h4>"] if self.title else []
        for caption, df in self.tables:
            if caption:
                out.append(f"<p>{html.escape(caption)}</p>")
            out.append(df.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        for cls_name, items in (("lawfit-flags", self.flags), ("lawfit-notes", self.notes)):
            if items:
                out.append(
                    f"<ul class='{cls_name}'>"
                    + "".join(f"<li>{html.escape(str(i))}</li>" for i in items)
                    + "</ul>"
                )
        return "\n".join(out)

    def _repr_html_(self) -> str:
        return self.as_html()

    def as_latex(self) -> str:
        """LaTeX: one ``table`` per part (``DataFrame.to_latex``), flags as ``itemize``."""
        out = []
        for caption, df in self.tables:
            out.append(
                df.to_latex(
                    index=False,
                    float_format=lambda v: f"{v:.4g}",
                    caption=_latex_escape(caption or self.title) or None,
                )
            )
        if self.flags:
            out += [r"\begin{itemize}"]
            out += [rf"\item {_latex_escape(str(f))}" for f in self.flags]
            out += [r"\end{itemize}"]
        return "\n".join(out)


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
    ):
        text = text.replace(a, b)
    return text


class ResultProtocol:
    """Mixin: ``to_dataset``, ``save`` and the summary wrapper for a result type.

    A class using it provides ``summary()`` (returning ``self._summary_text(text)``),
    ``flags`` and ``notes``, and either a ``cells`` table (its main table) or its own
    ``to_dataframe()``; it may override :meth:`_tables` to list more than the main table.
    """

    _summary_title = ""

    def to_dataframe(self) -> pd.DataFrame:
        """Return the result's main table: a copy of its per-cell (or per-run) ``cells``.

        Returns
        -------
        pandas.DataFrame
            One row per cell or run.
        """
        return self.cells.copy()

    def _tables(self) -> list[tuple[str, pd.DataFrame]]:
        """Captioned tables of the result (default: the main table only)."""
        return [("", self.to_dataframe())]

    def _summary_text(self, text: str) -> SummaryText:
        return SummaryText(
            text,
            tables=self._tables(),
            flags=getattr(self, "flags", ()),
            notes=getattr(self, "notes", ()) or (),
            title=self._summary_title or type(self).__name__,
        )

    def to_dataset(self):
        """Return the main table as an :class:`xarray.Dataset` (dim ``row``).

        ``attrs`` hold ``result_type``, ``flags`` (JSON list of dicts) and ``notes``
        (JSON list).
        """
        import xarray as xr

        df = self.to_dataframe().reset_index()
        if "index" in df.columns and df["index"].equals(pd.Series(range(len(df)))):
            df = df.drop(columns="index")
        ds = xr.Dataset.from_dataframe(df.rename_axis("row"))
        ds.attrs.update(
            {
                "result_type": type(self).__name__,
                "flags": json.dumps([f.to_dict() for f in getattr(self, "flags", ())]),
                "notes": json.dumps([str(n) for n in (getattr(self, "notes", ()) or ())]),
            }
        )
        return ds

    def to_record(self) -> ResultRecord:
        """Tables, summary, flags and notes of this result as a :class:`ResultRecord`."""
        return ResultRecord(
            result_type=type(self).__name__,
            tables=tuple(self._tables()),
            summary_text=str(self.summary()),
            flags=tuple(getattr(self, "flags", ())),
            notes=tuple(str(n) for n in (getattr(self, "notes", ()) or ())),
        )

    def save(self, path) -> None:
        """Write the result's record (tables, summary, flags, notes) as plain JSON.

        Read it back with :func:`lawfit.load` (a :class:`ResultRecord`).
        """
        self.to_record().save(path)


@dataclass(frozen=True)
class ResultRecord(ResultProtocol):
    """What a saved non-fit result keeps: its tables, summary text, flags and notes.

    Attributes
    ----------
    result_type : str
        Class name of the saved result.
    tables : tuple of (str, pandas.DataFrame)
        Captioned tables; the first is the main table (``to_dataframe``).
    summary_text : str
        The result's text summary.
    flags : tuple of Flag
    notes : tuple of str
    """

    result_type: str
    tables: tuple
    summary_text: str
    flags: tuple = ()
    notes: tuple = ()

    def to_dataframe(self) -> pd.DataFrame:
        """Return the main table (a copy)."""
        return self.tables[0][1].copy() if self.tables else pd.DataFrame()

    def _tables(self):
        return [(c, df.copy()) for c, df in self.tables]

    def summary(self) -> SummaryText:
        """Return the saved summary (text, HTML, LaTeX)."""
        return self._summary_text(self.summary_text)

    def to_record(self) -> ResultRecord:
        """Return self (already a record)."""
        return self

    def to_dict(self) -> dict:
        """Plain-JSON form (see :meth:`save`)."""
        return {
            "format": RECORD_FORMAT,
            "result_type": self.result_type,
            "tables": [
                {"caption": c, "frame": _frame_to_json(df.reset_index(drop=True))}
                for c, df in self.tables
            ],
            "summary": self.summary_text,
            "flags": [f.to_dict() for f in self.flags],
            "notes": list(self.notes),
        }

    def save(self, path) -> None:
        """Write as plain JSON; read back with :func:`lawfit.load`."""
        with open(os.fspath(path), "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> ResultRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            result_type=d["result_type"],
            tables=tuple((t["caption"], _frame_from_json(t["frame"])) for t in d["tables"]),
            summary_text=d["summary"],
            flags=tuple(Flag.from_dict(f) for f in d["flags"]),
            notes=tuple(d["notes"]),
        )
