"""Warm starts: a rank-r adapter that begins from the converged rank-r/2 adapter (issue 10).

A protocol candidate of the protocol study (``[train] warm_start = "half_rank"``): a cell of
rank r starts from its own fresh initialisation with the first r // 2 directions replaced by
the adapter a finished rank-(r // 2) cell of the same target, placement, method and seed
reached (its saved state, ``OUT/cells/<slug>.state.pt``, which every cell stopped by its
budget keeps). The new directions keep their random ``A`` rows and zero ``B`` columns, so
the warm adapter starts out computing exactly what the rank-(r // 2) adapter computed; AdamW
starts afresh. Its ΔL is still measured against the base model: the warm start is applied
after ``loss_before`` is taken.

Rank-1 cells have nothing to start from and train from scratch. A cell records where it
started from in its file's ``warm_started_from`` attribute.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collect.config import CellKey
from collect.errors import CollectError
from collect.store import path_from, read_state, state_path


@dataclass(frozen=True)
class WarmSource:
    """A finished cell's adapter that a rank-r cell starts from."""

    directory: Path
    key: CellKey
    step: int  # the steps the source trained
    params: list  # its adapter tensors (CPU)

    def provenance(self, out_dir: Path) -> str:
        """JSON for the ``warm_started_from`` attribute of a cell written to ``out_dir``.

        ``directory`` is the source's directory relative to ``out_dir``.
        """
        return json.dumps(
            {
                "directory": path_from(out_dir, self.directory),
                "cell": self.key.slug(),
                "rank": self.key.rank,
                "steps": self.step,
            }
        )


def source_key(key: CellKey) -> CellKey | None:
    """Return the cell a rank-r cell warm-starts from (rank r // 2); None for rank 1."""
    if key.rank < 2:
        return None
    return dataclasses.replace(key, rank=key.rank // 2)


def find_source(key: CellKey, directories: Iterable[str | Path]) -> WarmSource | None:
    """Find the saved adapter ``key`` warm-starts from, in the first directory that has it.

    Returns None for a rank-1 cell and when no directory holds the source's state yet.
    """
    wanted = source_key(key)
    if wanted is None:
        return None
    for directory in directories:
        payload = read_state(Path(directory), wanted)
        if payload is not None:
            state = payload["state"]
            return WarmSource(Path(directory), wanted, int(state["step"]), state["params"])
    return None


def _saved_in(wanted: CellKey, directories: Sequence[str | Path]) -> Path | None:
    """Return the first directory holding ``wanted``'s saved state (.state.pt), or None."""
    for directory in directories:
        if state_path(Path(directory), wanted).exists():
            return Path(directory)
    return None


def missing_sources(
    keys: Sequence[CellKey], directories: Sequence[str | Path], pending: Iterable[CellKey]
) -> list[CellKey]:
    """Cells of ``keys`` whose source is neither saved in ``directories`` nor still to run.

    A source among ``pending`` (cells this run trains) counts as coming: the cell waits for
    it. Rank-1 cells need no source.
    """
    coming = set(pending)
    out = []
    for key in keys:
        wanted = source_key(key)
        if wanted is None or wanted in coming:
            continue
        if _saved_in(wanted, directories) is None:
            out.append(key)
    return out


def describe_source(
    key: CellKey, directories: Sequence[str | Path], pending: Collection[CellKey]
) -> str:
    """Say where ``key`` starts (``collect plan``): its source, or why it has none yet."""
    wanted = source_key(key)
    if wanted is None:
        return "from scratch (rank 1)"
    if (directory := _saved_in(wanted, directories)) is not None:
        return f"warm start from rank {wanted.rank} in {directory}"
    if wanted in pending:
        return f"warm start from rank {wanted.rank}, trained first in this run"
    return f"NO rank-{wanted.rank} source (the run refuses it)"


def check_sources(
    keys: Sequence[CellKey], directories: Sequence[str | Path], pending: Iterable[CellKey]
) -> None:
    """Refuse, before anything trains, warm-start cells that have nothing to start from.

    Raises
    ------
    CollectError
        Naming the first cells without a source and how to provide one.
    """
    missing = missing_sources(keys, directories, pending)
    if not missing:
        return
    names = ", ".join(source_key(k).slug() for k in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    searched = ", ".join(str(d) for d in directories)
    raise CollectError(
        f"[train] warm_start = 'half_rank': {len(missing)} cell(s) have no rank-r/2 adapter "
        f"to start from: expected the saved state (.state.pt) of {names}{more} in one of "
        f"{searched}; got none. Add those cells to this sweep, or point --warm-start-from at "
        "a sweep directory that finished them under the step budget (cells that memorized "
        "early keep no state)."
    )


def load_warm_start(params: Sequence[Any], source: Sequence[Any]) -> None:
    """Copy a smaller adapter's tensors into the leading slices of a fresh adapter's.

    Each source tensor must fit inside its counterpart, differing in one dimension (the
    rank) at most; the rest of each fresh tensor is left as initialised (random ``A`` rows,
    zero ``B`` columns, so the sum starts as the source's map).

    Raises
    ------
    CollectError
        If the tensors do not pair up that way (another placement or carrier).
    """
    import torch

    shapes = [tuple(p.shape) for p in params]
    given = [tuple(t.shape) for t in source]
    if len(shapes) != len(given) or not all(map(_fits, given, shapes)):
        raise CollectError(
            f"warm start: expected adapter tensors that fit inside {shapes}, differing in the "
            f"rank only; got {given}. Warm starts apply to weight-delta adapters of one "
            "placement (e.g. mlp_block@20), not to carriers."
        )
    with torch.no_grad():
        for param, saved in zip(params, source, strict=True):
            param[tuple(slice(0, n) for n in saved.shape)] = saved.to(param.device, param.dtype)


def _fits(small: tuple[int, ...], big: tuple[int, ...]) -> bool:
    if len(small) != len(big):
        return False
    differ = [(s, b) for s, b in zip(small, big, strict=True) if s != b]
    return len(differ) <= 1 and all(s < b for s, b in differ)
