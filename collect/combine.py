"""One dataset from the merged datasets of several sweeps (``collect combine``).

A comparison may need cells collected under different training settings: memory tokens at
the lr that converges them, beside LoRA adapters at the lr of the law sweep. ``collect
merge`` refuses to mix settings within one sweep directory, so each protocol is its own
sweep, and this module puts their merged datasets into one contract dataset. Two model
families, each collected by a sweep of its own, join the same way, along ``model`` (what
``lawfit fit --by model`` and the report's "Across models" section read). A cell comes
from the first dataset, in the order given, that finished it; each cell records which dataset
it came from (``source``) and the ``[train]`` settings it ran under (``protocol``), so the
mix is never hidden.

Only datasets that can share a grid are combined: the same step budget and logging interval
(the budget diagnostics read one ``max_steps``), and the same targets wherever two of them
hold the same (model, task, length, target sequence).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Sequence

import numpy as np
import xarray as xr

from collect.config import DIMS, SweepConfig
from collect.errors import CollectError
from collect.store import CELL_TEXT, DERIVED_TEXT, OPTIONAL_SCALARS

#: the merged dataset's cell dims (``method`` is ``objective`` there)
CELL_DIMS = tuple("objective" if d == "method" else d for d in DIMS)
#: fill values of cells a dataset does not hold, per variable (NaN for the rest)
FILL = {"status": "not_run", "entry": -1, "n_params": -1, "n_bytes": -1}


def _budget(ds: xr.Dataset, name: str) -> tuple[int, int]:
    train = json.loads(ds.attrs.get("config", "{}")).get("train", {})
    if "max_steps" not in train:
        raise CollectError(f"{name} is not a merged collect dataset (no attrs['config']).")
    return int(train["max_steps"]), int(train.get("log_every", 1))


def _check_budgets(datasets: Sequence[xr.Dataset], names: Sequence[str]) -> None:
    budgets = {name: _budget(ds, name) for ds, name in zip(datasets, names, strict=True)}
    if len(set(budgets.values())) > 1:
        shown = ", ".join(f"{n}: max_steps {b}, log_every {e}" for n, (b, e) in budgets.items())
        raise CollectError(
            f"collect combine needs one step budget and logging interval; got {shown}. "
            "Combine sweeps run with the same [train] max_steps and log_every (extend the "
            "smaller one with `collect run --extend-from`)."
        )


def _check_targets(aligned: Sequence[xr.Dataset], names: Sequence[str]) -> None:
    """Refuse datasets whose targets differ where two of them hold the same target."""
    labelled = list(zip(aligned, names, strict=True))
    for (a, first_name), (b, name) in itertools.combinations(labelled, 2):
        first, other = a["entry"], b["entry"]
        differ = (first >= 0) & (other >= 0) & (first != other)
        if bool(differ.any()):
            where = differ.any("token")
            first_hit = np.argwhere(where.values)[0]
            at = ", ".join(
                f"{d}={where[d].values[i]}" for d, i in zip(where.dims, first_hit, strict=True)
            )
            raise CollectError(
                f"{first_name} and {name} memorized different targets at {at}: they were "
                "collected under different [data] settings (source, data_seed), so their "
                "cells measure different content. Combine only sweeps of the same targets."
            )


def _overlay(top: xr.Dataset, below: xr.Dataset) -> xr.Dataset:
    """``top``'s finished cells over ``below`` (aligned datasets, same variables)."""
    ok = top["status"] == "ok"
    out = below.copy()
    for name, var in top.data_vars.items():
        if set(CELL_DIMS) <= set(var.dims):
            out[name] = var.where(ok, below[name])
        else:  # per target (entry) or per adapter (n_params, n_bytes): fill what is missing
            out[name] = below[name].where(below[name] >= 0, var)
        out[name].attrs = dict(var.attrs)
    return out


def combine(datasets: Sequence[xr.Dataset], names: Sequence[str]) -> xr.Dataset:
    """Combine merged sweep datasets; a cell comes from the first that finished it.

    Parameters
    ----------
    datasets : sequence of xarray.Dataset
        Merged datasets of ``collect merge``/``collect run``, highest precedence first.
    names : sequence of str
        A distinct label for each (its path), recorded in the ``source`` variable.

    Returns
    -------
    xarray.Dataset
        The contract dataset over the union of the grids, with per-cell ``source`` and
        ``protocol`` text ("" where no dataset finished the cell), the attribute
        ``combined_from`` (per dataset: name, fingerprint, protocol, cells taken), and
        ``attrs["protocol"]`` holding only the settings all datasets share.

    Raises
    ------
    CollectError
        Fewer than two datasets, different step budgets or logging intervals, or different
        targets at the same coordinates.
    """
    if len(datasets) < 2 or len(names) != len(datasets) or len(set(names)) < len(names):
        raise CollectError(
            f"collect combine needs two or more datasets, one distinct name each; got "
            f"{len(datasets)} datasets and the names {list(names)}."
        )
    _check_budgets(datasets, names)
    datasets = _with_optional(datasets)
    labelled = [_with_provenance(ds, name) for ds, name in zip(datasets, names, strict=True)]
    fill = {**FILL, **{n: "" for n in (*CELL_TEXT, "source", "protocol")}}  # text: ""
    aligned = xr.align(*labelled, join="outer", fill_value=fill)
    _check_targets(aligned, names)
    out = aligned[-1]
    for ds in reversed(aligned[:-1]):
        out = _overlay(ds, out)
    out.attrs = _combined_attrs(datasets, names, out)
    return out


def _with_optional(datasets: Sequence[xr.Dataset]) -> list[xr.Dataset]:
    """Give each dataset the per-cell variables another has and it lacks.

    A dataset merged before a number was recorded (``first_exact_step``) then combines
    with a newer one: its cells read NaN there, never a value of another dataset's cell.
    One merged before a text was recorded (``first_exact``) gets it derived from its cells'
    other variables (:data:`collect.store.DERIVED_TEXT`).
    """
    have = [n for n in OPTIONAL_SCALARS if any(n in ds for ds in datasets)]
    out = []
    for ds in datasets:
        missing = [n for n in have if n not in ds]
        underived = [n for n in DERIVED_TEXT if n not in ds]
        if missing or underived:
            ds = ds.copy()
            for n in missing:
                ds[n] = (tuple(ds["status"].dims), np.full(ds["status"].shape, np.nan))
            for n in underived:
                ds[n] = DERIVED_TEXT[n](ds)
        out.append(ds)
    return out


def _with_provenance(ds: xr.Dataset, name: str) -> xr.Dataset:
    """``ds`` with per-cell ``source`` and ``protocol`` text where it finished a cell."""
    # text as objects: aligning fixed-width strings would cut longer values to the first width
    ds = ds.copy()
    for var in [v for v in ds.variables if ds[v].dtype.kind == "U"]:
        ds[var] = ds[var].astype(object)
    ok = ds["status"] == "ok"
    ds["source"] = xr.where(ok, name, "")
    ds["protocol"] = xr.where(ok, str(ds.attrs.get("protocol", "")), "")
    return ds


def _shared_settings(datasets) -> dict:
    """Return the ``[train]`` settings every dataset ran under (the others: per cell)."""
    settings = [json.loads(ds.attrs.get("protocol", "{}") or "{}") for ds in datasets]
    return {k: v for k, v in settings[0].items() if all(s.get(k, v) == v for s in settings)}


def _planned_cells(ds: xr.Dataset) -> set:
    """Return the cells a merged dataset's sweep planned (done or not), from its grid."""
    grids = json.loads(ds.attrs["config"])["grids"]
    config = SweepConfig(name="", grids=tuple({k: tuple(v) for k, v in g.items()} for g in grids))
    return set(config.cells())


#: a merged dataset's counts over its own cells: kept per dataset in ``combined_from``
PER_DATASET_COUNTS = ("n_cells", "n_cells_done", "prefix_cached_cells", "prompt_packed_cells")


def _entropy_bases(datasets) -> str:
    """Every dataset's ``entropy_basis`` (one entry per model, task and random ratio)."""
    bases: dict[str, str] = {}
    for ds in datasets:
        for label, basis in json.loads(ds.attrs.get("entropy_basis", "{}") or "{}").items():
            bases.setdefault(label, basis)
    return json.dumps(bases)


def _combined_attrs(datasets, names, out: xr.Dataset) -> dict:
    """Return the first dataset's attributes with the combination's counts and provenance.

    What describes one dataset's own cells (its counts) moves into its ``combined_from``
    entry; what each dataset says of its models (``entropy_basis``) is joined.
    """
    taken = Counter(out["source"].values.ravel().tolist())
    planned = set().union(*(_planned_cells(ds) for ds in datasets))
    attrs = {k: v for k, v in datasets[0].attrs.items() if k not in PER_DATASET_COUNTS}
    attrs.update(
        combined_from=json.dumps(
            [
                {
                    "name": name,
                    "fingerprint": ds.attrs.get("fingerprint", ""),
                    "protocol": json.loads(ds.attrs.get("protocol", "{}") or "{}"),
                    "cells_taken": int(taken.get(name, 0)),
                    **{k: int(ds.attrs[k]) for k in PER_DATASET_COUNTS if k in ds.attrs},
                }
                for ds, name in zip(datasets, names, strict=True)
            ]
        ),
        entropy_basis=_entropy_bases(datasets),
        fingerprint="+".join(str(ds.attrs.get("fingerprint", "")) for ds in datasets),
        protocol=json.dumps(_shared_settings(datasets)),
        n_cells=len(planned),
        n_cells_done=int((out["status"] == "ok").sum()),
        complete=str(int((out["status"] == "ok").sum()) == len(planned)).lower(),
    )
    done = out["status"] == "ok"
    for name, label in CELL_TEXT.items():
        attrs[label] = json.dumps(dict(Counter(out[name].values[done.values].tolist())))
    return attrs
