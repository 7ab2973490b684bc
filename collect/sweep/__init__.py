"""Run a sweep: every pending cell, grouped so each model and task is prepared once.

The package is laid out by responsibility (:mod:`collect.sweep.runner` says how a sweep runs):

- ``runner``: :func:`run_sweep` (copy, resume or train every pending cell) and
  :func:`run_chunk` (one cluster job's cells).
- ``preparation``: before anything trains: the sweep directory (:func:`prepare_dir`), its
  precision, the checks that need the model (:func:`validate_for_model`), warm-start
  settings and the pending cells (:func:`pending_cells`).
- ``extension``: budget extension (``extend_from``): :func:`extension_source`,
  :func:`extension_plan` and reading an old cell's saved training state.
- ``checkpoints``: a running cell's checkpoint: written, read back after a kill, discarded
  once the cell is finished (:func:`discard_stale_checkpoints`).
- ``batching``: which cells train together (:func:`batch_units`, :func:`cells_per_batch`).
- ``training``: the worker machinery: claim a cell, train it alone or in a batch, write it.
- ``workers``: several worker processes of one command on one directory (:func:`run_workers`).
"""

from collect.sweep.batching import (
    AUTO_BATCH_MAX_CELLS,
    AUTO_BATCH_TOKENS,
    Batching,
    batch_units,
    cells_per_batch,
    check_batch_cells,
)
from collect.sweep.checkpoints import discard_stale_checkpoints
from collect.sweep.extension import (
    EARLY_STOPS,
    ExtensionSource,
    check_same_lr,
    check_same_stops,
    extension_plan,
    extension_source,
)
from collect.sweep.preparation import (
    check_precision,
    pending_cells,
    prepare_dir,
    validate_for_model,
)
from collect.sweep.runner import run_chunk, run_sweep
from collect.sweep.workers import run_workers

__all__ = [
    "AUTO_BATCH_MAX_CELLS",
    "AUTO_BATCH_TOKENS",
    "EARLY_STOPS",
    "Batching",
    "ExtensionSource",
    "batch_units",
    "cells_per_batch",
    "check_batch_cells",
    "check_precision",
    "check_same_lr",
    "check_same_stops",
    "discard_stale_checkpoints",
    "extension_plan",
    "extension_source",
    "pending_cells",
    "prepare_dir",
    "run_chunk",
    "run_sweep",
    "run_workers",
    "validate_for_model",
]
