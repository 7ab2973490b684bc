"""The cells of a contract Dataset, one row each, after every check of its shape.

:func:`_from_dataset` turns an :class:`xarray.Dataset` into a tidy frame for
:func:`~lawfit.data.as_frame`: it refuses what is not a non-empty Dataset
(:func:`_check_dataset`), missing variables (:func:`require_variables`) or dims and
token-level variables (:func:`_cell_variables`), duplicated coordinate values
(:func:`_check_unique_coords`) and grouping dims of size > 1 not named in ``by=``
(:func:`_one_setting_per_group`), after dropping grouping values that hold no cell and
accepting a dim nested in the ``by`` groups (:func:`_without_empty_values`: two models
joined by ``collect combine``, each with its own adapter placement).
"""

from __future__ import annotations

from lawfit.data._common import _as_list
from lawfit.data.contract import _INNER_DIMS, REPLICATE_DIMS
from lawfit.data.reading import migrate_objective
from lawfit.data.replicates import with_runs
from lawfit.errors import LawfitError


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
    sub, nested = _one_setting_per_group(sub, inner_ok | set(by), coord_inputs, by)
    df = _only_held_values(sub.to_dataframe().reset_index(), sub, nested, by)
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


def _held(sub):
    """Where a cell holds a measurement: any of ``sub``'s numeric variables is set there."""
    held = None
    for var in sub.data_vars.values():
        if var.dtype.kind in "fc":
            held = var.notnull() if held is None else held | var.notnull()
    return held


def _without_empty_values(sub, by: set, inner: set):
    """Drop grouping-dim values that hold no cell; keep dims nested in the ``by`` groups.

    Datasets joined along ``model`` (``collect combine``) span every value of every dim,
    so the values of ``modules`` another model's sweep used hold nothing in this model's
    cells (SmolLM2's block adapter at layer 20, Gemma's at layer 12). Those values are
    dropped, and a dim whose cells take one value per group of ``by`` is not a second
    setting within a group. Returns ``sub`` and the dims found nested.
    """
    held = _held(sub)
    if held is None:
        return sub, set()
    nested = set()
    for d in [d for d in held.dims if d not in by | inner and sub.sizes[d] > 1]:
        keep = held.any([x for x in held.dims if x != d]).values
        if 0 < keep.sum() < keep.size:
            sub, held = sub.isel({d: keep}), held.isel({d: keep})
        groups = [g for g in by if g in held.dims]
        if groups and sub.sizes[d] > 1:
            per_group = held.any([x for x in held.dims if x not in (d, *groups)])
            if bool((per_group.sum(d) <= 1).all()):
                nested.add(d)
    return sub, nested


def _only_held_values(df, sub, nested: set, by: list):
    """Drop the rows of a nested dim's values that hold no cell within their group."""
    if not nested:
        return df
    dims = [*(d for d in by if d in sub.dims), *sorted(nested)]
    held_any = _held(sub).any([x for x in sub.dims if x not in dims])
    per = held_any.transpose(*dims).to_dataframe("held")
    held = set(per.index[per["held"]])
    return df[[row in held for row in df[dims].itertuples(index=False, name=None)]]


def _one_setting_per_group(sub, inner_ok: set, coord_inputs: list, by=()):
    """Refuse grouping dims of size > 1 not in ``by``; squeeze those of size 1.

    Returns the cells and the dims nested in the ``by`` groups (one value per group).
    """
    sub, nested = _without_empty_values(sub, set(by), inner_ok)
    multi = [d for d in sub.dims if d not in inner_ok | nested and sub.sizes[d] > 1]
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
    return sub, nested
