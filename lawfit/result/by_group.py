"""The results of a ``by=`` fit: :class:`FitResults`, one :class:`FitResult` per group.

A read-only mapping from group values to each group's result, with the tables,
predictions, summaries and flags of every group together, and its plain-JSON form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import pandas as pd

from lawfit.errors import LawfitError
from lawfit.protocol import Flag, ResultProtocol, _clean
from lawfit.result._common import resolve_confidence_level
from lawfit.result.fit_result import FitResult


class FitResults(ResultProtocol, Mapping):
    """One :class:`FitResult` per group of a ``by=`` fit (read-only mapping).

    Keys are tuples of group values in ``by`` order; a single value also works for
    one grouping dim (``res["llama"]``), and ``res.sel(model="llama")`` by name.
    """

    def __init__(self, results: Mapping[tuple, FitResult], by: tuple[str, ...]):
        self._results = dict(results)
        self.by = tuple(by)

    def _key(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if key in self._results:
            return key
        for k in self._results:  # tolerate numpy vs python scalars
            if len(k) == len(key) and all(str(a) == str(b) for a, b in zip(k, key, strict=True)):
                return k
        raise KeyError(f"no group {key} in by={self.by}; groups: {list(self._results)}")

    def __getitem__(self, key) -> FitResult:
        return self._results[self._key(key)]

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def sel(self, **kw) -> FitResult:
        """Select one group by name, e.g. ``res.sel(model="llama", task="phonebook")``."""
        missing = [b for b in self.by if b not in kw]
        if missing or set(kw) - set(self.by):
            raise LawfitError(f"sel needs exactly the grouping names {self.by}; got {list(kw)}.")
        return self[tuple(kw[b] for b in self.by)]

    def to_dataframe(
        self,
        method: str | None = None,
        confidence_level: float | None = None,
        *,
        level: float | None = None,
    ) -> pd.DataFrame:
        """Tidy parameter table of every group (group columns + param rows)."""
        if level is not None:
            confidence_level = resolve_confidence_level(confidence_level, 0.95, level)
        frames = []
        for key, r in self._results.items():
            df = r.to_dataframe(method, confidence_level).reset_index()
            for b, v in zip(self.by, key, strict=True):
                df.insert(0, b, v)
            df["r2"] = r.r2
            df["n_obs"] = r.n_obs
            frames.append(df)
        out = pd.concat(frames, ignore_index=True)
        cols = list(self.by) + [c for c in out.columns if c not in self.by]
        return out[cols[: len(self.by)] + [c for c in cols[len(self.by) :]]]

    def predict(self, data=None, **kwargs) -> pd.DataFrame:
        """Predict with every group's law; group columns first (see FitResult.predict)."""
        frames = []
        for key, r in self._results.items():
            df = r.predict(data, **kwargs)
            for b, v in zip(self.by[::-1], key[::-1], strict=True):
                df.insert(0, b, v)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def summary(self):
        """Summaries of every group, one after the other (text, HTML, LaTeX)."""
        return self._summary_text(
            "\n\n".join(
                f"{dict(zip(self.by, k, strict=True))}\n{r.summary()}"
                for k, r in self._results.items()
            )
        )

    @property
    def flags(self) -> tuple[Flag, ...]:
        """Every group's flags, each message prefixed with its group."""
        return tuple(
            Flag(f.code, f"{dict(zip(self.by, k, strict=True))}: {f.message}", f.severity)
            for k, r in self._results.items()
            for f in r.flags
        )

    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain-JSON form: the grouping names and every group's :meth:`FitResult.to_dict`."""
        return {
            "format": "lawfit.FitResults",
            "by": list(self.by),
            "groups": [
                {"key": _clean(list(k)), "result": r.to_dict()} for k, r in self._results.items()
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FitResults:
        """Inverse of :meth:`to_dict`."""
        return cls(
            {tuple(g["key"]): FitResult.from_dict(g["result"]) for g in d["groups"]},
            by=tuple(d["by"]),
        )

    def save(self, path) -> None:
        """Write every group's result to one JSON file."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1, allow_nan=False)

    def __repr__(self) -> str:
        return f"<FitResults by={self.by}: {len(self)} groups>"
