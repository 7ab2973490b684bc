"""The tidy frame of usable cells a fit reads, plus the cells it excluded and why.

:func:`as_frame` reads a Dataset (:mod:`~lawfit.data.dataset_cells`) or a tidy DataFrame
(:mod:`~lawfit.data.frame_cells`) into one row per cell, then checks that the inputs and
variables are numeric (:func:`_check_numeric`), splits the cells by ``status``
(:func:`_split_by_status`), checks that the usable ones are finite
(:func:`_check_finite`) with positive inputs (:func:`_check_positive_inputs`) and
physical losses (:mod:`~lawfit.data.losses`). :func:`_default_inputs` gives a form's
inputs when the caller names none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit.data._common import _as_list
from lawfit.data.contract import _NUMERIC_INPUTS
from lawfit.data.dataset_cells import _from_dataset
from lawfit.data.frame_cells import _from_frame
from lawfit.data.losses import _exclude_loss_increase, check_losses
from lawfit.data.reading import load_data
from lawfit.errors import LawfitError


def _default_inputs(capacity: str, inputs: Sequence[str] | None) -> tuple[str, ...]:
    """Return the form's inputs: ``inputs``, or capacity and length by default.

    Parameters
    ----------
    capacity : {"rank", "n_params"}
        Capacity input of the default.
    inputs : sequence of str or None
        Inputs given by the caller.

    Returns
    -------
    tuple of str
        The inputs.

    Raises
    ------
    LawfitError
        Unknown ``capacity``.
    """
    if capacity not in ("rank", "n_params"):
        raise LawfitError(f"capacity must be 'rank' or 'n_params'; got {capacity!r}.")
    if inputs is None:
        inputs = ("n_params" if capacity == "n_params" else "rank", "length")
    return tuple(inputs)


def _check_numeric(df: pd.DataFrame, columns: list[str]) -> None:
    """Raise when a column is not numeric (bools refused).

    Parameters
    ----------
    df : pandas.DataFrame
        Tidy frame.
    columns : list of str
        Inputs and variables.

    Raises
    ------
    LawfitError
        The first non-numeric column, with examples and a conversion to use.
    """
    for c in columns:
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            ex = df[c].head(3).tolist()
            raise LawfitError(
                f"{c!r} must be numeric; got dtype {df[c].dtype} (e.g. {ex}). Convert it, "
                f"e.g. ds[{c!r}] = ds[{c!r}].astype(int) / df[{c!r}].astype(float)."
            )


def _split_by_status(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the cells into usable (status ``ok`` or no status) and excluded ones.

    Parameters
    ----------
    df : pandas.DataFrame
        Tidy frame, optionally with a ``status`` column.

    Returns
    -------
    frame : pandas.DataFrame
        Usable cells, fresh index.
    exclusions : pandas.DataFrame
        The other cells, with ``reason`` = ``"status=<status>"``.

    Raises
    ------
    LawfitError
        Every cell excluded.
    """
    if "status" in df.columns:
        status = df["status"].astype(str)
        ok = (status == "ok").to_numpy()
        reason = "status=" + status
    else:
        ok = np.ones(len(df), bool)
        reason = pd.Series([""] * len(df))
    excl = df.loc[~ok].copy()
    excl["reason"] = reason[~ok].to_numpy()
    frame = df.loc[ok].reset_index(drop=True)
    if frame.shape[0] == 0:
        counts = excl["reason"].value_counts().to_dict()
        raise LawfitError(
            f"every cell was excluded ({counts}); expected at least some cells with status 'ok'."
        )
    return frame, excl


def _check_finite(frame: pd.DataFrame, columns: list[str]) -> None:
    """Raise when a usable cell has NaN or inf in one of ``columns``.

    Parameters
    ----------
    frame : pandas.DataFrame
        Cells with status ``ok``.
    columns : list of str
        The form's inputs and the required variables.

    Raises
    ------
    LawfitError
        The first column with a non-finite value, with up to three cells.
    """
    for c in columns:
        v = frame[c].to_numpy(float)
        bad = ~np.isfinite(v)
        if bad.any():
            ex = frame.loc[bad].drop(columns=[x for x in ("status",) if x in frame]).head(3)
            raise LawfitError(
                f"{int(bad.sum())} cell(s) with status 'ok' have NaN/inf in {c!r}, e.g. "
                f"{ex.to_dict('records')}. A failed cell must carry status != 'ok' "
                "(diverged/oom/failed/not_run); fix the status or drop those cells."
            )


def _check_positive_inputs(frame: pd.DataFrame, inputs: tuple[str, ...]) -> None:
    """Raise when a numeric input the law takes the logarithm of is <= 0.

    Parameters
    ----------
    frame : pandas.DataFrame
        Usable cells.
    inputs : tuple of str
        Input columns of the form.

    Raises
    ------
    LawfitError
        The first input with a non-positive value.
    """
    for c in inputs:
        if c in _NUMERIC_INPUTS or c in ("rank", "length"):
            v = frame[c].to_numpy(float)
            if np.any(v <= 0):
                raise LawfitError(
                    f"{c!r} must be positive (the law uses its logarithm); got "
                    f"{sorted(set(v[v <= 0].tolist()))[:5]}. Drop those cells."
                )


def as_frame(
    data,
    *,
    variables: Sequence[str] = ("loss_reduction",),
    by: str | Sequence[str] | None = None,
    capacity: str = "rank",
    inputs: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate fit data and return it as a tidy frame plus the excluded cells.

    Parameters
    ----------
    data : xarray.Dataset or pandas.DataFrame
        A dataset in the contract's shape (any dim may be absent or of size 1) or a
        tidy frame with one row per cell and columns ``rank``, ``length``,
        ``loss_reduction`` (optionally ``seed``, ``status``, ``loss_after``, ...).
    variables : sequence of str
        Data variables that must be present and finite in usable cells.
    by : str or sequence of str, optional
        Grouping dims/columns (one fit per group). Grouping dims of size > 1 not
        named here are an error.
    capacity : {"rank", "n_params"}
        Which capacity input the default inputs use.
    inputs : sequence of str, optional
        Inputs of the form (default ``("rank", "length")`` with ``rank`` replaced by
        ``n_params`` when ``capacity="n_params"``).

    Returns
    -------
    frame : pandas.DataFrame
        Usable cells (status ``ok``), one row each, with the inputs, the variables,
        the grouping columns and, where available, ``seed``, ``loss_after``.
    exclusions : pandas.DataFrame
        Excluded cells with a ``reason`` column (e.g. ``status=diverged``).

    Raises
    ------
    LawfitError
        Empty data; missing dims/variables; wrong dtypes; non-positive inputs;
        duplicated coordinates; NaN/inf in an ``ok`` cell; grouping dims needing
        ``by=``; every cell excluded.
    """
    inputs = _default_inputs(capacity, inputs)
    by = _as_list(by)
    variables = list(variables)
    data = load_data(data)
    if isinstance(data, pd.DataFrame):
        df = _from_frame(data, variables, by, inputs)
    else:
        df = _from_dataset(data, variables, by, inputs)
    if df.shape[0] == 0:
        raise LawfitError(
            "the data is empty: no cells. Expected at least one cell with "
            f"{list(inputs) + variables}."
        )
    _check_numeric(df, list(inputs) + variables)
    frame, excl = _split_by_status(df)
    _check_finite(frame, list(inputs) + variables)
    _check_positive_inputs(frame, inputs)
    check_losses(frame)
    frame, lost = _exclude_loss_increase(frame)
    excl = pd.concat([e for e in (excl, lost) if len(e)], ignore_index=True) if len(lost) else excl
    return frame, excl.reset_index(drop=True)
