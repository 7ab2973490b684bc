"""The one interface every lawfit result shares (see :class:`ResultProtocol`).

Every result type (:class:`~lawfit.FitResult`, :class:`~lawfit.FitResults`,
``ComparisonResult``, ``CapacityPrediction``, ``BitsResult``, ``GradientBudget``,
``MemftSavings``, ``BudgetSensitivity``, ``PhaseTransitionResult``, ``FormSensitivity``,
``LackOfFit``, ...) offers:

- ``summary()``: text (``str()``), ``.as_html()`` and ``.as_latex()``;
- ``to_dataframe()``: the tidy main table;
- ``to_dataset()``: the same as an :class:`xarray.Dataset` (flags and notes in attrs);
- ``save(path)`` / :func:`lawfit.load`: plain JSON (no pickle); every result loads back
  as an object of its own type with equal fields (:func:`encode` / :func:`decode`: one
  generic, type-tagged codec for the fields of any lawfit dataclass; a class with its
  own ``to_dict`` / ``from_dict``, such as :class:`~lawfit.FitResult`, uses those). Files
  of the earlier :class:`ResultRecord` format still load, as records;
- ``flags``: a tuple of :class:`~lawfit.result.Flag` (code, message, severity).
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError

__all__ = [
    "Flag",
    "SummaryText",
    "ResultProtocol",
    "ResultRecord",
    "RECORD_FORMAT",
    "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION",
    "encode",
    "decode",
    "result_from_dict",
]

RECORD_FORMAT = "lawfit.ResultRecord"
#: ``format`` of a result saved by :meth:`ResultProtocol.save` (any result type)
RESULT_FORMAT = "lawfit.Result"
#: newest version of :data:`RESULT_FORMAT` this lawfit writes and reads
RESULT_FORMAT_VERSION = 1


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


# ------------------------------------------------------------------ generic codec
# Every value is encoded as plain JSON; anything that is not a JSON string, int, bool,
# null or list is a one-key object whose key names its type ("__float__", "__tuple__",
# "__mapping__", "__ndarray__", "__frame__", "__dataclass__", "__object__", "__na__"), so
# decoding is unambiguous (a plain dict is always stored as "__mapping__").


def _type_path(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def saved_as(module: str, *classes: type) -> None:
    """Make saved files name each class as one of ``module`` (``"module:qualname"``).

    A module split into a package calls it in the package's ``__init__`` with the package's
    own name for the classes it re-exports, so that files saved before and after the split
    name the same type and load in either version.

    Parameters
    ----------
    module
        The importable module that re-exports ``classes``.
    *classes
        The result classes whose saved type names stay ``module:ClassName``.
    """
    for cls in classes:
        cls.__module__ = module


def _resolve_type(path: str):
    """Return the lawfit class named by ``module:qualname`` (a clear error otherwise)."""
    module, _, qualname = str(path).partition(":")
    if module != "lawfit" and not module.startswith("lawfit."):
        raise LawfitError(
            f"the file names the type {path!r}, which is not a lawfit type; "
            "lawfit.load only rebuilds lawfit's own result types."
        )
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise LawfitError(
            f"unknown result type {path!r}: this lawfit has no such class (the file was "
            "probably written by another lawfit version). Load it with the lawfit that wrote "
            "it, or upgrade lawfit (pip install -U lawfit)."
        ) from None
    if not isinstance(obj, type):
        raise LawfitError(f"{path!r} in the file is not a class; not a saved lawfit result.")
    return obj


def _encode_column(s: pd.Series) -> dict:
    kind = getattr(s.dtype, "kind", "O") if isinstance(s.dtype, np.dtype) else "O"
    if kind == "b":
        values = [bool(v) for v in s.tolist()]
    elif kind in "iu":
        values = [int(v) for v in s.tolist()]
    elif kind == "f":
        values = [encode(float(v)) for v in s.tolist()]
    else:  # object, strings, extension and datetime dtypes: element by element
        values = [encode(v) for v in s.astype(object).tolist()]
    return {"name": encode(s.name), "dtype": str(s.dtype), "values": values}


def _decode_column(c: dict) -> pd.Series:
    values = [decode(v) for v in c["values"]]
    dtype = c["dtype"]
    if dtype == "object":
        return pd.Series(values, dtype=object)
    try:
        return pd.Series(values, dtype=dtype)
    except (TypeError, ValueError):
        return pd.Series(values).astype(dtype)


def _encode_frame(df: pd.DataFrame) -> dict:
    index = df.index
    default = (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )
    idx = None
    if not default:
        levels = [index.get_level_values(i) for i in range(index.nlevels)]
        idx = {
            "names": [encode(n) for n in index.names],
            "levels": [_encode_column(pd.Series(lv, name=None)) for lv in levels],
        }
    return {
        "columns": [_encode_column(df.iloc[:, j].rename(c)) for j, c in enumerate(df.columns)],
        "columns_dtype": str(df.columns.dtype),
        "n": int(len(df)),
        "index": idx,
        "attrs": encode(dict(df.attrs)),
    }


def _decode_frame(d: dict) -> pd.DataFrame:
    cols = [_decode_column(c) for c in d["columns"]]
    names = [decode(c["name"]) for c in d["columns"]]
    if d["index"] is None:
        index = pd.RangeIndex(d["n"])
    else:
        levels = [_decode_column(c) for c in d["index"]["levels"]]
        inames = [decode(n) for n in d["index"]["names"]]
        index = (
            pd.Index(levels[0], name=inames[0])
            if len(levels) == 1
            else pd.MultiIndex.from_arrays(levels, names=inames)
        )
    df = pd.DataFrame(
        {j: c.to_numpy() if c.dtype == object else c.array for j, c in enumerate(cols)},
        index=pd.RangeIndex(d["n"]),
    )
    df.columns = pd.Index(names, dtype=d.get("columns_dtype", "object"))
    df.index = index
    df.attrs.update(decode(d["attrs"]))
    return df


def encode(value):
    """Encode a result's field value as plain JSON (inverse: :func:`decode`).

    Handles None, bool, int, str, float (NaN and inf too), numpy scalars and arrays,
    tuples, lists, mappings (any keys), pandas frames and series (index, dtypes and
    attrs kept), lawfit dataclasses (by their fields) and lawfit classes with
    ``to_dict`` / ``from_dict`` (such as :class:`~lawfit.FitResult`).

    Raises
    ------
    LawfitError
        For a value of any other type (say which).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if value is pd.NA or value is pd.NaT:
        return {"__na__": "NaT" if value is pd.NaT else "NA"}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return {
            "__ndarray__": {
                "dtype": value.dtype.str,
                "shape": list(value.shape),
                "values": [encode(v) for v in value.ravel().tolist()],
            }
        }
    if isinstance(value, pd.DataFrame):
        return {"__frame__": _encode_frame(value)}
    if isinstance(value, pd.Series):
        return {"__series__": _encode_frame(value.to_frame())}
    if isinstance(value, Mapping):
        return {"__mapping__": [[encode(k), encode(v)] for k, v in value.items()]}
    cls = type(value)
    if cls.__module__.split(".")[0] == "lawfit":
        if hasattr(value, "to_dict") and hasattr(cls, "from_dict"):
            return {"__object__": {"type": _type_path(cls), "data": value.to_dict()}}
        if dataclasses.is_dataclass(value):
            return {"__dataclass__": {"type": _type_path(cls), "fields": _encode_fields(value)}}
    raise LawfitError(
        f"cannot save a value of type {cls.__module__}.{cls.__qualname__}: "
        "lawfit.save stores numbers, strings, arrays, tables, mappings and "
        "lawfit's own result types."
    )


def _encode_fields(obj) -> dict:
    return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}


def decode(value):
    """Inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise LawfitError(f"not a value saved by lawfit (an object with keys {list(value)}).")
    ((tag, body),) = value.items()
    if tag == "__float__":
        return float(body)
    if tag == "__na__":
        return pd.NaT if body == "NaT" else pd.NA
    if tag == "__tuple__":
        return tuple(decode(v) for v in body)
    if tag == "__mapping__":
        return {_hashable(decode(k)): decode(v) for k, v in body}
    if tag == "__ndarray__":
        values = [decode(v) for v in body["values"]]
        return np.array(values, dtype=np.dtype(body["dtype"])).reshape(body["shape"])
    if tag == "__frame__":
        return _decode_frame(body)
    if tag == "__series__":
        return _decode_frame(body).iloc[:, 0]
    if tag == "__object__":
        return _resolve_type(body["type"]).from_dict(body["data"])
    if tag == "__dataclass__":
        return _build(_resolve_type(body["type"]), body["fields"])
    raise LawfitError(
        f"unknown tag {tag!r} in a saved lawfit value (written by a newer "
        "lawfit?). Upgrade lawfit (pip install -U lawfit)."
    )


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list | tuple) else key


def _build(cls, fields: dict):
    """``cls(**decoded fields)``; a clear error when the fields do not match the class."""
    if not dataclasses.is_dataclass(cls):
        raise LawfitError(f"{_type_path(cls)} is not a lawfit dataclass; cannot rebuild it.")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    extra = sorted(set(fields) - known)
    if extra:
        raise LawfitError(
            f"the saved {cls.__name__} has fields {extra} that this lawfit's "
            f"{cls.__name__} lacks (written by a newer lawfit?). Upgrade lawfit "
            "(pip install -U lawfit)."
        )
    return cls(**{k: decode(v) for k, v in fields.items()})


def result_from_dict(d: Mapping):
    """Rebuild a result from :meth:`ResultProtocol.to_dict` output, as its own type.

    Raises
    ------
    LawfitError
        Not a saved result, a newer format version, or a type this lawfit does not have.
    """
    if d.get("format") != RESULT_FORMAT:
        raise LawfitError(
            f"not a saved lawfit result (format={d.get('format')!r}; expected {RESULT_FORMAT!r})."
        )
    version = d.get("format_version")
    if not isinstance(version, int) or version > RESULT_FORMAT_VERSION:
        raise LawfitError(
            f"the saved result has format_version {version!r}, newer than this "
            f"lawfit reads ({RESULT_FORMAT_VERSION}). Upgrade lawfit "
            "(pip install -U lawfit)."
        )
    cls = _resolve_type(d.get("result_type", ""))
    if not issubclass(cls, ResultProtocol):
        raise LawfitError(f"{d.get('result_type')!r} is not a lawfit result type.")
    return _build(cls, d["fields"])


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
    ``flags`` and ``notes``, and its main table as the field named by ``_main_table``
    (``cells`` unless it says otherwise) or its own ``to_dataframe()``; it may override
    :meth:`_tables` to list more than the main table.
    """

    _summary_title = ""
    #: name of the field holding the result's main table (what ``to_dataframe`` returns)
    _main_table = "cells"

    def to_dataframe(self) -> pd.DataFrame:
        """Return the result's main table (a copy): per cell, run, budget, form, ...

        Returns
        -------
        pandas.DataFrame
            The table the class's docstring describes as its main one.
        """
        return getattr(self, self._main_table).copy()

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

    def to_dict(self) -> dict:
        """Plain-JSON form of the result: its type and every field (see :func:`encode`)."""
        if not dataclasses.is_dataclass(self):
            raise LawfitError(
                f"{type(self).__name__} is not a dataclass: it must define its "
                "own to_dict / from_dict to be saved."
            )
        return {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            "result_type": _type_path(type(self)),
            "fields": _encode_fields(self),
        }

    @classmethod
    def from_dict(cls, d: Mapping):
        """Rebuild from :meth:`to_dict` output (see :func:`result_from_dict`)."""
        res = result_from_dict(d)
        if not isinstance(res, cls):
            raise LawfitError(f"the saved result is a {type(res).__name__}, not a {cls.__name__}.")
        return res

    def save(self, path) -> None:
        """Write the result as plain JSON; :func:`lawfit.load` gives back the same type."""
        with open(os.fspath(path), "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1, allow_nan=False)


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
