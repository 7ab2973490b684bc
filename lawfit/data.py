"""The data contract as code: the one place where :mod:`lawfit` reads fit data.

:func:`as_frame` turns an :class:`xarray.Dataset` in the contract's shape (see
``docs/CONVENTIONS.md``) or a tidy :class:`pandas.DataFrame` into a tidy frame of
*usable* cells plus a frame of the cells it excluded (and why). Every bad input
raises :class:`lawfit.errors.LawfitError` with what was expected, what was got and
how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError

__all__ = ["as_frame", "check_identifiable", "GROUP_DIMS", "CELL_DIMS", "open_dataset",
           "migrate_objective"]

#: Dims that identify a *setting*; size > 1 requires ``by=`` or ``.sel``.
GROUP_DIMS = ("model", "task", "random_ratio", "objective", "modules")
#: Dims of a cell (one training run).
CELL_DIMS = GROUP_DIMS + ("rank", "length", "seed")
_INNER_DIMS = ("token", "step")
_NUMERIC_INPUTS = ("rank", "length", "n_params")


def migrate_objective(ds):
    """Rename the training-objective dim ``method`` of older files to ``objective``.

    Files written before the contract named it ``objective`` (DESIGN.md §3) call it
    ``method``, which collides with the ``method=`` keyword of ``Dataset.sel``. A
    dataset that already has ``objective`` (or neither) is returned unchanged.
    """
    if "method" in ds.dims and "objective" not in ds.dims:
        return ds.rename({"method": "objective"})
    return ds


def open_dataset(path):
    """Open a NetCDF file as an :class:`xarray.Dataset` (with a clear error).

    An older file's ``method`` dim is renamed ``objective`` (:func:`migrate_objective`).
    """
    import xarray as xr

    if not os.path.exists(path):
        raise LawfitError(f"expected the path of a NetCDF (.nc) file; {os.fspath(path)!r} "
                          "does not exist. Check the path.")
    try:
        ds = xr.load_dataset(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise LawfitError(f"could not read {os.fspath(path)!r} as NetCDF: {exc}. "
                          "Expected a dataset written by `collect` (xarray .to_netcdf).") from exc
    return migrate_objective(ds)


def _as_list(by) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _from_dataset(ds, variables, by, inputs):
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise LawfitError(f"expected an xarray.Dataset or a pandas.DataFrame; got "
                          f"{type(ds).__name__}.")
    ds = migrate_objective(ds)
    if len(ds.data_vars) == 0 and len(ds.dims) == 0:
        raise LawfitError("the dataset is empty (no variables, no dims); expected at least "
                          "'loss_reduction' over 'rank' and 'length'.")
    coord_inputs = [i for i in inputs if i not in ds.data_vars]
    missing_dims = [d for d in coord_inputs if d not in ds.coords and d not in ds.dims]
    if missing_dims:
        raise LawfitError(
            f"the dataset lacks the dim(s)/coordinate(s) {missing_dims} needed by the form's "
            f"inputs {tuple(inputs)}; it has dims {sorted(ds.dims)} and variables "
            f"{sorted(ds.data_vars)}. Rename or add them (contract: docs/CONVENTIONS.md)."
        )
    wanted = list(dict.fromkeys(list(variables) + [i for i in inputs if i in ds.data_vars]))
    missing = [v for v in wanted if v not in ds.data_vars]
    if missing:
        raise LawfitError(
            f"the dataset lacks the variable(s) {missing}; it has {sorted(ds.data_vars)}. "
            "Expected the contract's cell variables (loss_reduction = loss_before - loss_after)."
        )
    optional = [v for v in ("status", "loss_after", "n_params") if v in ds.data_vars
                and v not in wanted]
    sub = ds[wanted + optional]
    bad_inner = [d for d in sub.dims if d in _INNER_DIMS]
    if bad_inner:
        sub = sub.drop_dims(bad_inner, errors="ignore")
        lost = [v for v in wanted if v not in sub.data_vars]
        if lost:
            raise LawfitError(f"variable(s) {lost} have token/step dims; expected cell variables "
                              "(one value per cell). Reduce them first, e.g. .mean('token').")
    for d in sub.dims:
        idx = sub.indexes.get(d)
        if idx is not None and not idx.is_unique:
            dup = idx[idx.duplicated()].unique().tolist()[:5]
            raise LawfitError(
                f"coordinate {d!r} has duplicated values {dup}; every coordinate value must be "
                f"unique. Merge or drop duplicates, e.g. ds.drop_duplicates({d!r})."
            )
    by = _as_list(by)
    for b in by:
        if b not in sub.dims and b not in sub.coords:
            raise LawfitError(f"by={by} names {b!r}, which is not a dim of the dataset; dims are "
                              f"{sorted(sub.dims)}.")
    var_input_dims = {d for i in inputs if i in ds.data_vars for d in ds[i].dims}
    inner_ok = set(coord_inputs) | var_input_dims | {"rank", "length", "seed", "run"} | set(by)
    multi = [d for d in sub.dims if d not in inner_ok and sub.sizes[d] > 1]
    if multi:
        vals = {d: sub[d].values.tolist()[:4] for d in multi}
        raise LawfitError(
            f"the dataset has grouping dim(s) of size > 1 not named in by=: {vals}. One law "
            f"per setting: pass by={multi!r} to fit each group, or select one first, e.g. "
            f"ds.sel({multi[0]}={vals[multi[0]][0]!r})."
        )
    for d in list(sub.dims):
        if d not in inner_ok and sub.sizes[d] == 1:
            sub = sub.squeeze(d, drop=True)
    for d in ("rank", "length", "seed", *coord_inputs):
        if d in sub.coords and sub[d].ndim == 0:  # selected down to one value, e.g. .sel(rank=1)
            sub = sub.expand_dims(d)
    if any(sub.sizes[d] == 0 for d in sub.dims):
        raise LawfitError(f"the dataset is empty: dim sizes {dict(sub.sizes)}. Expected at "
                          "least one cell.")
    df = sub.to_dataframe().reset_index()
    keep = [c for c in df.columns if c in set(sub.dims) | set(sub.data_vars) | set(by)
            | set(coord_inputs)]
    return df[keep]


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
    if capacity not in ("rank", "n_params"):
        raise LawfitError(f"capacity must be 'rank' or 'n_params'; got {capacity!r}.")
    if inputs is None:
        inputs = ("n_params" if capacity == "n_params" else "rank", "length")
    inputs = tuple(inputs)
    by = _as_list(by)
    variables = list(variables)
    if isinstance(data, pd.DataFrame):
        if "method" in data.columns and "objective" not in data.columns:
            data = data.rename(columns={"method": "objective"})
        if data.shape[0] == 0:
            raise LawfitError("the DataFrame is empty (0 rows); expected one row per cell with "
                              f"columns {list(inputs) + variables}.")
        missing = [c for c in list(inputs) + variables + by if c not in data.columns]
        if missing:
            raise LawfitError(
                f"the DataFrame lacks column(s) {missing}; it has {list(data.columns)}. "
                f"Expected a tidy frame with columns {list(inputs) + variables}."
            )
        df = data.reset_index(drop=True).copy()
        multi = [c for c in GROUP_DIMS if c in df.columns and c not in by
                 and df[c].nunique(dropna=False) > 1]
        if multi:
            raise LawfitError(
                f"the DataFrame has grouping column(s) with more than one value not named in "
                f"by=: {multi}. Pass by={multi!r} to fit each group, or filter the rows first."
            )
        key = list(dict.fromkeys(c for c in list(inputs) + ["seed", "run"] + by
                                 if c in df.columns))
        dup = df.duplicated(subset=key, keep=False)
        if dup.any():
            ex = df.loc[dup, key].head(3).to_dict("records")
            raise LawfitError(
                f"duplicated cells: {int(dup.sum())} rows share the same {key}, e.g. {ex}. "
                "Each cell must appear once; add a 'seed' column for replicates."
            )
    else:
        df = _from_dataset(data, variables, by, inputs)
    if df.shape[0] == 0:
        raise LawfitError("the data is empty: no cells. Expected at least one cell with "
                          f"{list(inputs) + variables}.")
    for c in [i for i in inputs] + variables:
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            ex = df[c].head(3).tolist()
            raise LawfitError(
                f"{c!r} must be numeric; got dtype {df[c].dtype} (e.g. {ex}). Convert it, "
                f"e.g. ds[{c!r}] = ds[{c!r}].astype(int) / df[{c!r}].astype(float)."
            )
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
        raise LawfitError(f"every cell was excluded ({counts}); expected at least some cells "
                          "with status 'ok'.")
    for c in list(inputs) + variables:
        v = frame[c].to_numpy(float)
        bad = ~np.isfinite(v)
        if bad.any():
            ex = frame.loc[bad].drop(columns=[x for x in ("status",) if x in frame]).head(3)
            raise LawfitError(
                f"{int(bad.sum())} cell(s) with status 'ok' have NaN/inf in {c!r}, e.g. "
                f"{ex.to_dict('records')}. A failed cell must carry status != 'ok' "
                "(diverged/oom/failed/not_run); fix the status or drop those cells."
            )
    for c in inputs:
        if c in _NUMERIC_INPUTS or c in ("rank", "length"):
            v = frame[c].to_numpy(float)
            if np.any(v <= 0):
                raise LawfitError(
                    f"{c!r} must be positive (the law uses its logarithm); got "
                    f"{sorted(set(v[v <= 0].tolist()))[:5]}. Drop those cells."
                )
    return frame, excl.reset_index(drop=True)


def check_identifiable(frame: pd.DataFrame, inputs: Sequence[str], n_params: int,
                       where: str = "") -> None:
    """Raise if the design cannot identify the form's parameters.

    Each input needs at least two distinct values (one length cannot identify
    ``beta``; one rank cannot identify ``alpha``) and there must be more points
    than parameters.
    """
    for c in inputs:
        u = np.unique(frame[c].to_numpy(float))
        if u.size < 2:
            what = {"length": "beta", "rank": "alpha", "n_params": "alpha"}.get(c, "its exponent")
            raise LawfitError(
                f"{where}only a single {c} ({u.tolist()}) in the data: cannot identify {what}. "
                f"Expected at least 2 distinct values of {c!r} (better 4+); add cells or fix "
                f"the selection."
            )
    n = frame.shape[0]
    if n <= n_params:
        raise LawfitError(f"{where}{n} usable point(s) for {n_params} parameters; expected more "
                          "points than parameters. Add cells or use exclude=None.")
