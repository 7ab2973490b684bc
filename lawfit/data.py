"""The data contract as code: the one place where :mod:`lawfit` reads fit data.

:func:`as_frame` turns an :class:`xarray.Dataset` in the contract's shape (see
``docs/CONVENTIONS.md``) or a tidy :class:`pandas.DataFrame` into a tidy frame of
*usable* cells plus a frame of the cells it excluded (and why). Every bad input
raises :class:`lawfit.errors.LawfitError` with what was expected, what was got and
how to fix it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "collected_lengths",
    "ok_cells",
    "as_frame",
    "as_dataset",
    "load_data",
    "check_identifiable",
    "design_identifies",
    "GROUP_DIMS",
    "CELL_DIMS",
    "open_dataset",
    "check_schema_version",
    "memorized_mask",
    "exclusion_flags",
    "migrate_objective",
    "REPLICATE_DIMS",
    "n_targets",
    "DTYPE_BYTES",
    "with_n_bytes",
    "LN2",
]

#: loss_after (nats/token) at or below which a cell counts as memorized: the target's
#: tokens have probability 1/2 on average (the contract's rule; :func:`memorized_mask`).
LN2 = math.log(2.0)

#: Dims that identify a *setting*; size > 1 requires ``by=`` or ``.sel``.
GROUP_DIMS = ("model", "task", "random_ratio", "objective", "modules")
#: Replicate dims: the adapter's initialisation and the target content (which sequence).
REPLICATE_DIMS = ("seed", "data_seed")
#: Dims of a cell (one training run).
CELL_DIMS = GROUP_DIMS + ("rank", "length") + REPLICATE_DIMS
_INNER_DIMS = ("token", "step")
_NUMERIC_INPUTS = ("rank", "length", "n_params", "n_bytes")


#: Newest major ``schema_version`` of the data contract this lawfit reads.
SCHEMA_MAJOR = 1


def _describe(obj) -> str:
    return f"{type(obj).__name__} {obj!r}"[:120]


def _check_path(path) -> str:
    """Return the path as a str if it names an existing file; else raise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise LawfitError(
            f"expected the path of a NetCDF (.nc) or CSV file; {path!r} does not "
            "exist. Check the path."
        )
    if os.path.isdir(path):
        raise LawfitError(
            f"expected the path of a NetCDF (.nc) or CSV file; {path!r} is a "
            "folder. Pass the file inside it, e.g. data/smollm2_cpu.nc."
        )
    return path


def check_schema_version(ds, source: str = "the dataset") -> None:
    """Refuse a dataset written under a newer major ``schema_version`` than this lawfit reads."""
    raw = ds.attrs.get("schema_version")
    if raw is None:
        return
    try:
        major = int(str(raw).split(".")[0])
    except ValueError:
        raise LawfitError(
            f"{source} has schema_version {raw!r}; expected a version such as "
            "'1.0'. Fix the attribute or re-collect the data."
        ) from None
    if major > SCHEMA_MAJOR:
        raise LawfitError(
            f"{source} has schema_version {raw!r}, newer than this lawfit reads "
            f"(major {SCHEMA_MAJOR}); its fields may mean something else. "
            "Upgrade lawfit (pip install -U lawfit)."
        )


def migrate_objective(ds):
    """Rename the training-objective dim ``method`` of older files to ``objective``.

    Files written before the contract named it ``objective`` (DESIGN.md §3) call it
    ``method``, which collides with the ``method=`` keyword of ``Dataset.sel``. A
    dataset that already has ``objective`` (or neither) is returned unchanged.
    """
    if isinstance(ds, pd.DataFrame):
        if "method" in ds.columns and "objective" not in ds.columns:
            return ds.rename(columns={"method": "objective"})
        return ds
    if "method" in ds.dims and "objective" not in ds.dims:
        return ds.rename({"method": "objective"})
    return ds


def open_dataset(path):
    """Open a NetCDF file as an :class:`xarray.Dataset` (with a clear error).

    An older file's ``method`` dim is renamed ``objective`` (:func:`migrate_objective`).
    """
    import xarray as xr

    path = _check_path(path)
    try:
        ds = xr.load_dataset(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise LawfitError(
            f"could not read {path!r} as NetCDF ({type(exc).__name__}: {exc}); "
            "the file may be truncated or of another format. Expected a dataset "
            "written by `collect` (xarray .to_netcdf)."
        ) from exc
    check_schema_version(ds, repr(path))
    return migrate_objective(ds)


def read_saved_json(path, newest_version: int) -> dict:
    """Read a result saved as JSON by lawfit; refuse anything else with a clear error.

    Parameters
    ----------
    path : str or path-like
        The file written by ``save``.
    newest_version : int
        Newest ``format_version`` this lawfit reads.

    Returns
    -------
    dict
        The decoded JSON object.
    """
    import json

    if not isinstance(path, str | os.PathLike):
        raise LawfitError(
            f"expected the path of a JSON file written by result.save(); got "
            f"{_describe(path)}. Pass the path as a str."
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise LawfitError(
            f"expected the path of a JSON file written by result.save(); {path!r} "
            f"{what}. Check the path."
        )
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LawfitError(
            f"{path!r} is not a JSON file written by result.save() ({exc}). "
            "A dataset (.nc) is read by lawfit.fit, not lawfit.load."
        ) from None
    if not isinstance(d, dict) or not str(d.get("format", "")).startswith("lawfit."):
        raise LawfitError(
            f"{path!r} is JSON but not a saved lawfit result (expected a 'format' "
            "of 'lawfit.FitResult' or 'lawfit.FitResults'). Pass a file written "
            "by result.save()."
        )
    version = d.get("format_version", 1)
    if not isinstance(version, int) or version > newest_version:
        raise LawfitError(
            f"{path!r} has format_version {version!r}, newer than this lawfit reads "
            f"({newest_version}). Upgrade lawfit (pip install -U lawfit)."
        )
    return d


def load_data(data):
    """Read any input (a path, a Dataset or a DataFrame) as a Dataset or a DataFrame.

    Parameters
    ----------
    data : str, os.PathLike, xarray.Dataset or pandas.DataFrame
        A NetCDF file (``.nc``, read as a Dataset), a CSV file (``.csv``, read as a
        tidy DataFrame), or the object itself.

    Returns
    -------
    xarray.Dataset or pandas.DataFrame

    Raises
    ------
    LawfitError
        Anything else (None, a list, a folder, a missing or unreadable file, a
        dataset with a newer ``schema_version``).
    """
    import xarray as xr

    if isinstance(data, xr.Dataset):
        check_schema_version(data)
        return migrate_objective(data)
    if isinstance(data, pd.DataFrame):
        return migrate_objective(data)
    if isinstance(data, xr.DataArray):
        raise LawfitError(
            f"expected an xarray.Dataset; got the DataArray {data.name!r}. Pass "
            "the whole dataset, or data_array.to_dataset()."
        )
    if isinstance(data, str | os.PathLike):
        path = _check_path(data)
        if path.lower().endswith(".csv"):
            try:
                return migrate_objective(pd.read_csv(path))
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                raise LawfitError(
                    f"could not read {path!r} as CSV ({exc}); expected a tidy "
                    "table with one row per cell."
                ) from exc
        return open_dataset(path)
    raise LawfitError(
        f"expected an xarray.Dataset (the data contract, docs/CONVENTIONS.md), a tidy "
        f"pandas.DataFrame, or the path of a .nc/.csv file; got {_describe(data)}. Pass "
        "the dataset or its path."
    )


def as_dataset(data):
    """Like :func:`load_data`, but always an :class:`xarray.Dataset`.

    A tidy DataFrame becomes a Dataset indexed by its contract dims (``rank``,
    ``length``, ``seed``, ``token``, ...), for the token-level analyses.
    """
    data = load_data(data)
    if not isinstance(data, pd.DataFrame):
        return data
    dims = [c for c in CELL_DIMS + _INNER_DIMS if c in data.columns]
    if not dims:
        raise LawfitError(
            f"the DataFrame has none of the contract's dims {list(CELL_DIMS)} as "
            f"columns; it has {list(data.columns)}. Add them, or pass a Dataset."
        )
    if data.duplicated(subset=dims).any():
        raise LawfitError(
            f"the DataFrame has several rows for the same {dims}; expected one "
            "row per cell (and token). Drop the duplicates."
        )
    ds = data.set_index(dims).to_xarray()
    for name in list(ds.data_vars):
        inner = [d for d in _INNER_DIMS if d in ds[name].dims]
        if inner and name not in _INNER_VARS:  # a cell variable repeated on every token row
            ds[name] = _constant_along(ds[name], inner)
    return ds


#: Variables that live on the token or step dim (the rest are one value per cell).
_INNER_VARS = ("p_before", "p_after", "greedy_correct", "entry", "loss_curve", "frac_above_curve")


def _constant_along(var, dims):
    """Drop ``dims`` from a cell variable that a tidy frame repeated along them."""
    first = var.isel({d: 0 for d in dims})
    same = (var == first) | var.isnull()
    if not bool(same.all()):
        raise LawfitError(
            f"{var.name!r} varies along {dims} within a cell; expected one value "
            f"per cell (or list it among the token variables {_INNER_VARS})."
        )
    return first.drop_vars(dims, errors="ignore")


def _as_list(by) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _from_dataset(ds, variables, by, inputs):
    """One row per cell of a contract dataset, after every check of its shape."""
    ds = _check_dataset(ds)
    coord_inputs = [i for i in inputs if i not in ds.data_vars]
    sub = _cell_variables(ds, variables, inputs, coord_inputs)
    _check_unique_coords(sub)
    by = _as_list(by)
    for b in by:
        if b not in sub.dims and b not in sub.coords:
            raise LawfitError(
                f"by={by} names {b!r}, which is not a dim of the dataset; dims are "
                f"{sorted(sub.dims)}."
            )
    var_input_dims = {d for i in inputs if i in ds.data_vars for d in ds[i].dims}
    inner_ok = set(coord_inputs) | var_input_dims | {"rank", "length", *REPLICATE_DIMS, "run"}
    sub = _one_setting_per_group(sub, inner_ok | set(by), coord_inputs)
    df = sub.to_dataframe().reset_index()
    keep = [
        c
        for c in df.columns
        if c in set(sub.dims) | set(sub.data_vars) | set(by) | set(coord_inputs)
    ]
    return with_runs(df[keep])


def _check_dataset(ds):
    """Refuse what is not a non-empty Dataset; rename an old file's ``method`` dim."""
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise LawfitError(
            f"expected an xarray.Dataset or a pandas.DataFrame; got {type(ds).__name__}."
        )
    ds = migrate_objective(ds)
    if len(ds.data_vars) == 0 and len(ds.dims) == 0:
        raise LawfitError(
            "the dataset is empty (no variables, no dims); expected at least "
            "'loss_reduction' over 'rank' and 'length'."
        )
    return ds


def require_variables(ds, names) -> None:
    """Refuse a dataset that lacks any of the cell variables ``names``.

    Raises
    ------
    LawfitError
        Naming what is missing and what the dataset has.
    """
    missing = [v for v in names if v not in ds.data_vars]
    if missing:
        raise LawfitError(
            f"the dataset lacks the variable(s) {missing}; it has {sorted(ds.data_vars)}. "
            "Expected the contract's cell variables (loss_reduction = loss_before - loss_after)."
        )


def _cell_variables(ds, variables, inputs, coord_inputs):
    """Return the cell variables a fit reads (and the optional ones), without token dims."""
    missing_dims = [d for d in coord_inputs if d not in ds.coords and d not in ds.dims]
    if missing_dims:
        raise LawfitError(
            f"the dataset lacks the dim(s)/coordinate(s) {missing_dims} needed by the form's "
            f"inputs {tuple(inputs)}; it has dims {sorted(ds.dims)} and variables "
            f"{sorted(ds.data_vars)}. Rename or add them (contract: docs/CONVENTIONS.md)."
        )
    wanted = list(dict.fromkeys(list(variables) + [i for i in inputs if i in ds.data_vars]))
    require_variables(ds, wanted)
    optional = [
        v
        for v in ("status", "loss_after", "loss_before", "n_params")
        if v in ds.data_vars and v not in wanted
    ]
    sub = ds[wanted + optional]
    bad_inner = [d for d in sub.dims if d in _INNER_DIMS]
    if bad_inner:
        sub = sub.drop_dims(bad_inner, errors="ignore")
        lost = [v for v in wanted if v not in sub.data_vars]
        if lost:
            raise LawfitError(
                f"variable(s) {lost} have token/step dims; expected cell variables "
                "(one value per cell). Reduce them first, e.g. .mean('token')."
            )
    return sub


def _check_unique_coords(sub) -> None:
    """Refuse a coordinate with duplicated values (cells would be ambiguous)."""
    for d in sub.dims:
        idx = sub.indexes.get(d)
        if idx is not None and not idx.is_unique:
            dup = idx[idx.duplicated()].unique().tolist()[:5]
            raise LawfitError(
                f"coordinate {d!r} has duplicated values {dup}; every coordinate value must be "
                f"unique. Merge or drop duplicates, e.g. ds.drop_duplicates({d!r})."
            )


def _one_setting_per_group(sub, inner_ok: set, coord_inputs: list):
    """Refuse grouping dims of size > 1 not in ``by``; squeeze those of size 1."""
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
    for d in ("rank", "length", *REPLICATE_DIMS, *coord_inputs):
        if d in sub.coords and sub[d].ndim == 0:  # selected down to one value, e.g. .sel(rank=1)
            sub = sub.expand_dims(d)
    if any(sub.sizes[d] == 0 for d in sub.dims):
        raise LawfitError(
            f"the dataset is empty: dim sizes {dict(sub.sizes)}. Expected at least one cell."
        )
    return sub


def n_targets(ds) -> int:
    """Count the target sequences (``data_seed`` values) with at least one ok cell.

    Cells on one target sequence share its content and are not independent, so a bootstrap
    that should speak for other content resamples whole sequences once there are 2 or more
    (``unit="data_seed"``). A dataset without a ``data_seed`` dim has one sequence.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset (``status`` marks the ok cells; without it every cell counts).

    Returns
    -------
    int
        The count.
    """
    if "data_seed" not in ds.dims:
        return 1
    if "status" not in ds:
        return int(ds.sizes["data_seed"])
    ok = ds["status"] == "ok"
    others = [d for d in ok.dims if d != "data_seed"]
    return int((ok.any(others) if others else ok).sum())


def target_unit(ds) -> str:
    """Return the bootstrap unit that speaks for other content: ``"data_seed"`` or ``"cell"``.

    ``"data_seed"`` (whole target sequences) when 2 or more sequences have ok cells
    (:func:`n_targets`), else ``"cell"``.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.

    Returns
    -------
    str
        The ``unit`` to pass to :func:`lawfit.fit` and the analyses built on it.
    """
    return "data_seed" if n_targets(ds) >= 2 else "cell"


def with_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Add a ``run`` column: one id per (``seed``, ``data_seed``) pair, when both are there.

    A run is one training of one adapter initialisation on one target sequence; the
    cluster bootstrap resamples runs with ``unit="run"`` and target sequences with
    ``unit="data_seed"``. A frame that has a ``run`` column, or lacks either seed, is
    returned as it is (``unit="run"`` then falls back to ``seed``).
    """
    if "run" in df.columns or not set(REPLICATE_DIMS) <= set(df.columns):
        return df
    pairs = pd.MultiIndex.from_frame(df[list(REPLICATE_DIMS)])
    return df.assign(run=pd.factorize(pairs)[0])


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


def _from_frame(
    data: pd.DataFrame, variables: list[str], by: list[str], inputs: tuple[str, ...]
) -> pd.DataFrame:
    """Check a tidy frame's columns, groups and cells; return a copy with ``run``.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per cell (an older ``method`` column is renamed ``objective``).
    variables : list of str
        Required variable columns.
    by : list of str
        Grouping columns named by the caller.
    inputs : tuple of str
        Input columns of the form.

    Returns
    -------
    pandas.DataFrame
        The rows with a fresh index and the ``run`` column of :func:`with_runs`.

    Raises
    ------
    LawfitError
        Empty frame, missing columns, unnamed grouping columns with several values,
        duplicated cells.
    """
    if "method" in data.columns and "objective" not in data.columns:
        data = data.rename(columns={"method": "objective"})
    if data.shape[0] == 0:
        raise LawfitError(
            "the DataFrame is empty (0 rows); expected one row per cell with "
            f"columns {list(inputs) + variables}."
        )
    missing = [c for c in list(inputs) + variables + by if c not in data.columns]
    if missing:
        raise LawfitError(
            f"the DataFrame lacks column(s) {missing}; it has {list(data.columns)}. "
            f"Expected a tidy frame with columns {list(inputs) + variables}."
        )
    df = with_runs(data.reset_index(drop=True).copy())
    multi = [
        c for c in GROUP_DIMS if c in df.columns and c not in by and df[c].nunique(dropna=False) > 1
    ]
    if multi:
        raise LawfitError(
            f"the DataFrame has grouping column(s) with more than one value not named in "
            f"by=: {multi}. Pass by={multi!r} to fit each group, or filter the rows first."
        )
    _check_unique_cells(df, inputs, by)
    return df


def _check_unique_cells(df: pd.DataFrame, inputs: tuple[str, ...], by: list[str]) -> None:
    """Raise when two rows share inputs, replicate, run and group.

    Parameters
    ----------
    df : pandas.DataFrame
        Tidy frame.
    inputs : tuple of str
        Input columns.
    by : list of str
        Grouping columns.

    Raises
    ------
    LawfitError
        Duplicated cells, with up to three examples.
    """
    key = list(dict.fromkeys(c for c in [*inputs, *REPLICATE_DIMS, "run", *by] if c in df.columns))
    dup = df.duplicated(subset=key, keep=False)
    if dup.any():
        ex = df.loc[dup, key].head(3).to_dict("records")
        raise LawfitError(
            f"duplicated cells: {int(dup.sum())} rows share the same {key}, e.g. {ex}. "
            "Each cell must appear once; add a 'seed' (initialisation) or 'data_seed' "
            "(target sequence) column for replicates."
        )


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


#: Reason recorded for an ``ok`` cell whose training raised the loss.
LOSS_INCREASE = "loss_reduction < 0: training raised the loss"
_LOSS_ATOL = 1e-5  # nats/token; float32 storage of losses of order 10 is good to ~1e-6
_LOSS_RTOL = 1e-5


def _examples(frame: pd.DataFrame, mask, cols) -> list[dict]:
    cols = [c for c in dict.fromkeys(("rank", "length", "seed", *cols)) if c in frame.columns]
    return frame.loc[mask, cols].head(3).to_dict("records")


def check_losses(frame: pd.DataFrame) -> None:
    """Physical sanity of the losses of usable cells; raise on an impossible value.

    Cross-entropies are >= 0, so ``loss_before`` and ``loss_after`` must be finite
    and >= 0 where present, ``loss_reduction`` must equal ``loss_before -
    loss_after`` (up to float32 rounding) and cannot exceed ``loss_before``.
    """
    if "loss_before" in frame.columns:
        v = frame["loss_before"].to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            raise LawfitError(
                f"{int(bad.sum())} cell(s) with status 'ok' have loss_before NaN, inf or < 0, "
                f"e.g. {_examples(frame, bad, ['loss_before'])}; a cross-entropy is finite and "
                ">= 0. Mark failed cells with status 'failed' or fix the data."
            )
    if "loss_after" in frame.columns:
        v = frame["loss_after"].to_numpy(float)
        bad = v < 0
        if bad.any():
            raise LawfitError(
                f"{int(bad.sum())} cell(s) have loss_after < 0, e.g. "
                f"{_examples(frame, bad, ['loss_after'])}; a cross-entropy is >= 0. Fix the "
                "data (were log-probabilities stored with the wrong sign?)."
            )
    if "loss_reduction" not in frame.columns or "loss_before" not in frame.columns:
        return
    dl = frame["loss_reduction"].to_numpy(float)
    lb = frame["loss_before"].to_numpy(float)
    if "loss_after" in frame.columns:
        la = frame["loss_after"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(la) & ~np.isclose(dl, lb - la, rtol=_LOSS_RTOL, atol=_LOSS_ATOL)
        if bad.any():
            raise LawfitError(
                f"{int(bad.sum())} cell(s) have loss_reduction != loss_before - loss_after, "
                f"e.g. {_examples(frame, bad, ['loss_before', 'loss_after', 'loss_reduction'])}"
                ". Expected ΔL = before - after (nats/token). Recompute it: "
                "ds['loss_reduction'] = ds.loss_before - ds.loss_after."
            )
    bad = dl > lb + _LOSS_ATOL + _LOSS_RTOL * np.abs(lb)
    if bad.any():
        raise LawfitError(
            f"{int(bad.sum())} cell(s) have loss_reduction > loss_before (loss_after would be "
            f"< 0), e.g. {_examples(frame, bad, ['loss_before', 'loss_reduction'])}. Expected "
            "ΔL <= loss_before. Fix the data."
        )


def _exclude_loss_increase(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set aside usable cells with ΔL < 0 (training made the loss worse), with the reason."""
    if "loss_reduction" not in frame.columns:
        return frame, frame.iloc[:0].assign(reason=[])
    neg = frame["loss_reduction"].to_numpy(float) < 0
    lost = frame.loc[neg].copy()
    lost["reason"] = LOSS_INCREASE
    kept = frame.loc[~neg].reset_index(drop=True)
    if kept.shape[0] == 0:
        raise LawfitError(
            f"every usable cell has loss_reduction < 0 (training raised the loss), e.g. "
            f"{_examples(frame, neg, ['loss_reduction'])}. Expected ΔL >= 0 after training. "
            "Check the collection (learning rate, grad_clip > 0) and re-run those cells."
        )
    return kept, lost


def exclusion_flags(exclusions: pd.DataFrame) -> list[str]:
    """Return flags for cells that :func:`as_frame` set aside as physically implausible."""
    if "reason" not in exclusions.columns:
        return []
    n = int((exclusions["reason"] == LOSS_INCREASE).sum())
    if not n:
        return []
    return [
        f"{n} cell(s) excluded with loss_reduction < 0 (training raised the loss; check "
        "the collection): see result.exclusions"
    ]


def memorized_mask(frame: pd.DataFrame, threshold: float, where: str = "") -> np.ndarray:
    """Cells with ``loss_after <= threshold``; raise where loss_after is NaN.

    A NaN would silently compare False and let a memorized cell into the fit.
    """
    la = frame["loss_after"].to_numpy(float)
    bad = ~np.isfinite(la)
    if bad.any():
        raise LawfitError(
            f"{where}{int(bad.sum())} usable cell(s) have loss_after NaN/inf, e.g. "
            f"{_examples(frame, bad, ['loss_after', 'loss_reduction'])}; the memorized-cell "
            "exclusion needs it. Fill loss_after (= loss_before - loss_reduction), mark those "
            "cells failed, or pass exclude=None to fit every cell."
        )
    return la <= threshold


def check_identifiable(
    frame: pd.DataFrame, inputs: Sequence[str], n_params: int, where: str = "", form=None
) -> None:
    """Raise if the design cannot identify the form's parameters.

    Each input needs at least two distinct values (one length cannot identify
    ``beta``; one rank cannot identify ``alpha``), unless ``form`` is given and its
    parameters are identified on this design all the same: a form of the ratio
    ``r/ℓ`` alone (``ratio_no_offset``) needs several ratios, not several ranks. That
    is decided by the rank of the form's Jacobian over the design
    (:func:`design_identifies`). There must also be more points than parameters, and
    more *distinct* design points than parameters: replicates of one point (seeds,
    target sequences) measure the noise, not the law's shape, so five cells at three
    (rank, length) points leave a four-parameter law undetermined. The bootstrap asks
    the same of each resample (:func:`lawfit.bootstrap.identifiable_rows`).
    """
    for c in inputs:
        u = np.unique(frame[c].to_numpy(float))
        if u.size < 2 and not (form is not None and design_identifies(form, frame)):
            what = {"length": "beta", "rank": "alpha", "n_params": "alpha", "n_bytes": "alpha"}.get(
                c, "its exponent"
            )
            raise LawfitError(
                f"{where}only a single {c} ({u.tolist()}) in the data: cannot identify {what}. "
                f"Expected at least 2 distinct values of {c!r} (better 4+); add cells or fix "
                f"the selection."
            )
    n = frame.shape[0]
    if n <= n_params:
        raise LawfitError(
            f"{where}{n} usable point(s) for {n_params} parameters; expected more "
            "points than parameters. Add cells or use exclude=None."
        )
    points = frame[list(inputs)].drop_duplicates()
    if points.shape[0] <= n_params:
        raise LawfitError(
            f"{where}{n} usable cells sit at only {points.shape[0]} distinct design point(s) "
            f"of ({', '.join(inputs)}) for {n_params} parameters: replicates measure the "
            "noise, not the law's shape, so a family of parameter values fits equally well. "
            "Expected more distinct points than parameters; add cells at new points."
        )


def design_identifies(form, frame: pd.DataFrame, tries: int = 3, tol: float = 1e-6) -> bool:
    """Tell whether ``form``'s parameters are locally identified on the design of ``frame``.

    The Jacobian of the form with respect to its parameters, over the design points
    (central differences, columns scaled to unit norm), must have full column rank at one
    of ``tries`` parameter points drawn inside the form's search ranges (or bounds). One
    rank with a law in ``r^α`` gives a column proportional to the scale's: rank deficient.
    """
    from lawfit.design import form_jacobian

    rng = np.random.default_rng(0)
    for _ in range(tries):
        theta = {p: rng.uniform(*_probe_range(form, p)) for p in form.params}
        with np.errstate(all="ignore"):
            J = form_jacobian(form, frame, theta)
        if not np.all(np.isfinite(J)):
            continue
        norms = np.linalg.norm(J, axis=0)
        if np.any(norms == 0):
            continue
        s = np.linalg.svd(J / norms, compute_uv=False)
        if s[-1] > tol * s[0]:
            return True
    return False


def _probe_range(form, p: str) -> tuple[float, float]:
    """Return a finite range inside a parameter's search range or bounds (Jacobian probes)."""
    lo, hi = form.search.get(p, form.bounds[p])
    if math.isfinite(lo) and math.isfinite(hi):
        return lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)
    if math.isfinite(lo):
        return lo + 0.5, lo + 2.0
    if math.isfinite(hi):
        return hi - 2.0, hi - 0.5
    return 0.5, 2.0


#: Bytes per stored scalar of the storage dtypes ``collect`` records (per-cell ``dtype``).
DTYPE_BYTES = {
    "float64": 8,
    "float32": 4,
    "bfloat16": 2,
    "float16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
}


def _dtype_bytes(name, where: str) -> float:
    """Bytes per scalar of a dtype name (``"torch.float32"`` or ``"float32"``); NaN for ""."""
    name = str(name).removeprefix("torch.")
    if not name:
        return np.nan
    if name not in DTYPE_BYTES:
        raise LawfitError(
            f"{where}: unknown storage dtype {name!r}; expected one of "
            f"{sorted(DTYPE_BYTES)}. Pass dtype=<one of them>."
        )
    return float(DTYPE_BYTES[name])


def with_n_bytes(ds, dtype: str | None = None):
    """Return ``ds`` with ``n_bytes`` (the carrier's bytes at storage precision), and a note.

    A dataset that records ``n_bytes`` is returned as it is. Otherwise ``n_bytes`` is derived
    as ``n_params`` × the bytes of the storage dtype: ``dtype`` when given, else the per-cell
    ``dtype`` text that ``collect`` records, else the sweep config's ``dtype`` attribute.

    Parameters
    ----------
    ds : xarray.Dataset or pandas.DataFrame
        Contract data with ``n_params``.
    dtype : str, optional
        Storage dtype of every carrier (e.g. ``"float32"``, ``"bfloat16"``).

    Returns
    -------
    data : xarray.Dataset or pandas.DataFrame
        The data with ``n_bytes``.
    note : str or None
        How ``n_bytes`` was derived (None when it was recorded).

    Raises
    ------
    LawfitError
        Without ``n_params``, or when an ok cell's storage dtype is unknown.
    """
    import json

    import xarray as xr

    data = load_data(ds)
    names = data.columns if isinstance(data, pd.DataFrame) else data.data_vars
    if "n_bytes" in names:
        return data, None
    if "n_params" not in names:
        raise LawfitError(
            "n_bytes needs 'n_params' (the exact trainable parameter count) to be "
            f"derived; the data has {sorted(map(str, names))}. Collect n_params."
        )
    if dtype is not None:
        per = _dtype_bytes(dtype, "dtype=")
        how = f"given dtype {dtype!r}"
    elif "dtype" in names:
        cell = data["dtype"]
        per = (
            cell.map(lambda v: _dtype_bytes(v, "the data's dtype"))
            if isinstance(data, pd.DataFrame)
            else xr.apply_ufunc(
                np.vectorize(lambda v: _dtype_bytes(v, "the data's dtype"), otypes=[float]), cell
            )
        )
        how = "the per-cell dtype"
        cfg = json.loads(data.attrs.get("config") or "{}") if hasattr(data, "attrs") else {}
        if cfg.get("dtype"):
            per = per.fillna(_dtype_bytes(cfg["dtype"], "the sweep config"))
            how += f" (the sweep config's {cfg['dtype']!r} where a cell has none)"
    else:
        raise LawfitError(
            "n_bytes cannot be derived: the data records no storage 'dtype' per "
            "cell. Pass dtype='float32' (or the carriers' storage dtype)."
        )
    n_bytes = data["n_params"] * per
    _check_bytes_known(data, n_bytes)
    note = f"n_bytes not recorded: derived as n_params × bytes per scalar of {how}"
    return data.assign(n_bytes=n_bytes), note


def _check_bytes_known(data, n_bytes) -> None:
    """Raise when an ok cell's n_bytes is unknown (its dtype was not recorded)."""
    import xarray as xr

    if isinstance(data, pd.DataFrame):
        known = np.isfinite(np.asarray(n_bytes, float))
        ok = (data["status"].astype(str) == "ok").to_numpy() if "status" in data else True
    else:
        status_ok = (data["status"] == "ok") if "status" in data else xr.ones_like(n_bytes, bool)
        nb, status_ok = xr.broadcast(n_bytes, status_ok)
        known, ok = np.isfinite(nb.values.astype(float)), status_ok.values
    bad = ~known & ok
    if np.any(bad):
        raise LawfitError(
            f"n_bytes cannot be derived for {int(np.sum(bad))} ok cell(s): their storage dtype "
            "was not recorded (dtype ''), and the sweep config names none. Pass "
            "dtype='float32' (or the carriers' storage dtype)."
        )


def ok_cells(ds: xr.Dataset) -> xr.DataArray:
    """Where a cell finished with a ``loss_reduction`` (and status ``ok``, if recorded)."""
    ok = ds["loss_reduction"].notnull()
    return ok & (ds["status"] == "ok") if "status" in ds else ok


def collected_lengths(ds: xr.Dataset) -> np.ndarray:
    """Sorted lengths holding at least one ok cell (a sweep plans lengths not yet run)."""
    ok = ok_cells(ds)
    held = ok.any([d for d in ok.dims if d != "length"]).values if ok.ndim > 1 else ok.values
    return np.unique(ds["length"].values[np.asarray(held, bool)])
