"""The data contract as code: the one place where :mod:`lawfit` reads fit data.

:func:`as_frame` turns an :class:`xarray.Dataset` in the contract's shape (see
``docs/CONVENTIONS.md``) or a tidy :class:`pandas.DataFrame` into a tidy frame of
*usable* cells plus a frame of the cells it excluded (and why). Every bad input
raises :class:`lawfit.errors.LawfitError` with what was expected, what was got and
how to fix it.

The package holds one module per part of the contract: ``contract`` (its dims, its
token-level variables, ``SCHEMA_MAJOR`` and ``LN2``), ``reading`` (paths, NetCDF and CSV
files, Datasets and DataFrames: :func:`load_data`, :func:`as_dataset`,
:func:`open_dataset`, the schema check, the ``method`` → ``objective`` migration, and
:func:`read_saved_json` for saved results), ``tidy_frame`` (:func:`as_frame` and the checks
of the cells it returns), ``dataset_cells`` and ``frame_cells`` (the cells of a Dataset
and of a tidy DataFrame, after the checks of their shape), ``replicates``
(:func:`n_targets`, :func:`target_unit`, :func:`target_cluster`, :func:`with_runs`),
``losses`` (the physical checks of the losses, the cells they exclude,
:func:`memorized_mask`),
``identifiability`` (:func:`check_identifiable`, :func:`design_identifies`),
``storage_bytes`` (:func:`with_n_bytes` and ``DTYPE_BYTES``), ``collected``
(:func:`ok_cells`, :func:`collected_lengths`) and ``_common`` (two small helpers they
share). Every public name is re-exported here.
"""

from __future__ import annotations

# every public name stays importable from here, as when this was one module; __all__ lists
# the names it listed then
from lawfit.data.collected import collected_lengths, ok_cells
from lawfit.data.contract import CELL_DIMS, GROUP_DIMS, LN2, REPLICATE_DIMS
from lawfit.data.contract import SCHEMA_MAJOR as SCHEMA_MAJOR
from lawfit.data.dataset_cells import require_variables as require_variables
from lawfit.data.identifiability import check_identifiable, design_identifies
from lawfit.data.losses import LOSS_INCREASE as LOSS_INCREASE
from lawfit.data.losses import check_losses as check_losses
from lawfit.data.losses import exclusion_flags, memorized_mask, memorized_threshold
from lawfit.data.reading import (
    as_dataset,
    check_schema_version,
    load_data,
    migrate_objective,
    open_dataset,
)
from lawfit.data.reading import read_saved_json as read_saved_json
from lawfit.data.replicates import n_targets, target_cluster
from lawfit.data.replicates import target_unit as target_unit
from lawfit.data.replicates import with_runs as with_runs
from lawfit.data.storage_bytes import DTYPE_BYTES, with_n_bytes
from lawfit.data.tidy_frame import as_frame

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
    "memorized_threshold",
    "exclusion_flags",
    "migrate_objective",
    "REPLICATE_DIMS",
    "n_targets",
    "target_cluster",
    "DTYPE_BYTES",
    "with_n_bytes",
    "LN2",
]
