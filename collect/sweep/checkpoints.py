"""Checkpoints of running cells: written while they train, read back after a kill.

A checkpoint (``state_path(..., "partial")``) lets a killed or time-limited run continue a cell
from its last saved step; a finished cell's leftover checkpoint is stale and discarded.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from collect.config import CellKey, SweepConfig
from collect.store import cell_path, read_state, state_path, write_state


def _partial_state(config: SweepConfig, out_dir: Path, key: CellKey) -> dict | None:
    """Return the checkpoint a killed run of this cell left, if it fits these settings."""
    path = state_path(out_dir, key, "partial")
    if not path.exists():
        return None
    payload = read_state(out_dir, key, "partial")
    if (
        payload is None
        or payload["meta"].get("fingerprint") != config.fingerprint()
        or int(payload["state"].get("step", -1)) > config.train.max_steps
    ):
        warnings.warn(
            f"{path} is unreadable or belongs to other settings; running this cell from its start",
            stacklevel=2,
        )
        return None
    return payload


def _checkpointer(config, out_dir, key, prior: float, extended) -> Callable | None:
    """Return the callback :func:`run_cell` calls with a state every ``checkpoint_minutes``."""
    if not config.checkpoint_minutes:
        return None
    return _state_writer(config, out_dir, key, prior, extended)


def _state_writer(config, out_dir, key, prior: float, extended) -> Callable:
    """Return a function that writes a running cell's training state as its checkpoint."""
    started = time.perf_counter()

    def save(state: dict) -> None:
        meta = {
            "fingerprint": config.fingerprint(),
            "wall_time": prior + time.perf_counter() - started,
        }
        if extended is not None:
            meta["extended_from"] = extended
        write_state(out_dir, key, state, meta, kind="partial")

    return save


def discard_stale_checkpoints(out_dir: Path, keys: Iterable[CellKey]) -> list[CellKey]:
    """Delete the checkpoints of finished cells; return the keys whose checkpoint went.

    A run writes a finished cell (atomically), then deletes its checkpoint: a kill between the
    two leaves both on disk. The cell file is complete, so the cell counts as finished and its
    checkpoint is stale. Cells still running have a checkpoint but no cell file: untouched.
    """
    stale = [
        k
        for k in keys
        if cell_path(out_dir, k).exists() and state_path(out_dir, k, "partial").exists()
    ]
    for key in stale:
        state_path(out_dir, key, "partial").unlink(missing_ok=True)
    return stale
