"""Helpers every part of :mod:`lawfit.result` shares.

The saved format's name and version (``_FORMAT``, ``_FORMAT_VERSION``), the
:class:`ExtrapolationWarning` that :meth:`~lawfit.result.FitResult.predict` emits,
:func:`resolve_confidence_level` (the current ``confidence_level`` keyword and its
deprecated name ``level``), and the frame and array helpers of the frozen result and its
JSON: :func:`_frozen_frame` (read-only columns), :func:`_arr_to_json` (array to plain
lists, NaN/inf as null) and :func:`_unclean` (the way back).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit.bootstrap import _read_only
from lawfit.errors import LawfitError

_FORMAT = "lawfit.FitResult"
_FORMAT_VERSION = 2


class ExtrapolationWarning(UserWarning):
    """A prediction lies outside the ranges of the inputs the law was fitted on."""


def resolve_confidence_level(confidence_level, default, level=None) -> float:
    """Pick and check a confidence level; ``level`` is the deprecated old keyword.

    Parameters
    ----------
    confidence_level : float or None
        The value passed under the current name.
    default : float
        Used when neither is given.
    level : float or None
        The value passed under the old name (emits a ``DeprecationWarning``).
    """
    if level is not None:
        warnings.warn(
            "the keyword 'level' is deprecated; use 'confidence_level' (same meaning).",
            DeprecationWarning,
            stacklevel=3,
        )
        if confidence_level is not None:
            raise LawfitError("pass confidence_level only (level is its deprecated old name).")
        confidence_level = level
    return V.confidence_level(default if confidence_level is None else confidence_level)


def _frozen_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` whose numeric columns are backed by read-only arrays."""
    cols = {}
    for c in df.columns:
        values = df[c].to_numpy()
        cols[c] = _read_only(values) if values.dtype != object else values.copy()
    return pd.DataFrame(cols, index=df.index.copy(), copy=False)


def _arr_to_json(a):
    if a is None:
        return None
    a = np.asarray(a)
    if a.dtype == bool:
        return a.tolist()
    return np.where(np.isfinite(a), a, np.nan).astype(object).tolist() if a.size else []


def _unclean(a, dtype=float):
    if a is None:
        return None
    return (
        np.array([np.nan if v is None else v for v in np.ravel(a).tolist()], dtype=dtype).reshape(
            np.shape(a)
        )
        if np.size(a)
        else np.array(a, dtype=dtype)
    )
