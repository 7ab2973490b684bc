"""Reading inputs: paths, NetCDF and CSV files, Datasets, DataFrames and saved results.

:func:`load_data` reads any input (a path, a Dataset or a DataFrame) and
:func:`as_dataset` always returns a Dataset (a tidy frame indexed by its contract dims);
:func:`open_dataset` opens a NetCDF file. Each refuses a newer major ``schema_version``
(:func:`check_schema_version`) and renames an older file's ``method`` dim
``objective`` (:func:`migrate_objective`). :func:`read_saved_json` reads a result saved
as JSON by lawfit.
"""

from __future__ import annotations

import os

import pandas as pd

from lawfit.data._common import _describe
from lawfit.data.contract import _INNER_DIMS, _INNER_VARS, CELL_DIMS, SCHEMA_MAJOR
from lawfit.errors import LawfitError


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
    ``length``, ``seed``, ``token``, ...), for the token-level analyses. Its rows are the
    cells collected (``status`` "ok" unless the table has a ``status`` column); the other
    cells of the grid their coordinates span read ``status`` "not_run".
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
    # a cell the table does not list was not collected: "not_run", never an "ok" cell of NaNs
    listed = data if "status" in data.columns else data.assign(status="ok")
    ds = listed.set_index(dims).to_xarray()
    for name in list(ds.data_vars):
        inner = [d for d in _INNER_DIMS if d in ds[name].dims]
        if inner and name not in _INNER_VARS:  # a cell variable repeated on every token row
            ds[name] = _constant_along(ds[name], inner)
    ds["status"] = ds["status"].where(ds["status"].notnull(), "not_run").astype(object)
    return ds


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
