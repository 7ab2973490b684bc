"""Which cells train together: a batch holds up to ``batch_cells`` cells of one target.

Cells of one group (:func:`_group`) share a task build; cells of one batch group also share a
single-layer ``mlp_block`` placement and train in one forward and backward
(:func:`collect.batched.run_cells_batched`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collect.batched import batchable
from collect.config import CellKey
from collect.errors import CollectError
from collect.probe import TrainConfig


def _group(key: CellKey) -> tuple:
    """Cells that train on the same targets (one task build serves them all)."""
    return (key.model, key.task, key.random_ratio, key.length, key.data_seed)


#: ``batch_cells = "auto"`` on a GPU: cells per batch, and the batch tokens a batch may hold
#: (one replica of the batch per cell). For SmolLM2 a target token costs about 1 MB in a
#: training step (float32 logits over 49,152 tokens, their log-softmax and gradient, and the
#: activations of the layers above the adapter), so 32,768 tokens take about 32 GB; a prompt
#: token (PhoneBook's names and chat template) costs only its activations, so counting it as
#: a whole token keeps the batch inside that.
AUTO_BATCH_MAX_CELLS = 16


AUTO_BATCH_TOKENS = 32768


def check_batch_cells(batch_cells: int | str) -> int | str:
    """Return ``batch_cells`` if it is ``"auto"`` or an integer >= 1; raise CollectError if not."""
    ok = batch_cells == "auto" or (
        isinstance(batch_cells, int) and not isinstance(batch_cells, bool) and batch_cells >= 1
    )
    if not ok:
        raise CollectError(
            f"batch_cells must be 'auto' or an integer >= 1 (1: one cell at a time), got "
            f"{batch_cells!r}."
        )
    return batch_cells


def cells_per_batch(
    batch_cells: int | str,
    device,
    key: CellKey,
    tokens: int = AUTO_BATCH_TOKENS,
    cell_tokens: Callable[[CellKey], int] | None = None,
) -> int:
    """How many cells like ``key`` to train together on ``device`` (1: one by one).

    ``"auto"`` batches on a CUDA device only, as many cells as ``tokens`` batch tokens allow
    (:data:`AUTO_BATCH_TOKENS`; a worker of several sharing one GPU gets its share, so that
    together they hold what one process would), at most :data:`AUTO_BATCH_MAX_CELLS`.
    ``cell_tokens(key)`` gives one cell's batch tokens, prompts included
    (:func:`collect.preflight.batch_tokens`; called only then; default ``key.length``): a
    PhoneBook cell's batch is about 4.5 times its target length. On the CPU a batch of four
    SmolLM2-sized cells was only 1.11x faster than the cells one after another
    (``benchmarks/bench_batched.py``, ``benchmarks/GPU_RUN.md``), and one by one keeps new
    CPU cells bit-identical to the ones already collected.
    """
    if batch_cells != "auto":
        return int(batch_cells)
    if getattr(device, "type", str(device)) != "cuda":
        return 1
    per_cell = key.length if cell_tokens is None else cell_tokens(key)
    return max(1, min(AUTO_BATCH_MAX_CELLS, tokens // max(per_cell, 1)))


def _batch_group(key: CellKey) -> tuple:
    """Cells that can share one batch: same target and same adapter placement."""
    return (*_group(key), key.modules)


def batch_units(
    keys: list[CellKey], size_of: Callable[[CellKey], int], train: TrainConfig
) -> list[list[CellKey]]:
    """Split ``keys`` into the units that train together, in the order of their first cell.

    A unit is one cell, or up to ``size_of(first)`` cells of one batch group
    (:func:`_batch_group`) whose placement batches (:func:`collect.batched.batchable`): the
    first pending cell of a group takes the next cells of its group along, wherever in the
    sweep's order they are.
    """
    left, units = list(keys), []
    while left:
        first = left.pop(0)
        size = size_of(first)
        if size <= 1 or not batchable(first.modules, train):
            units.append([first])
            continue
        mates = [k for k in left if _batch_group(k) == _batch_group(first)][: size - 1]
        left = [k for k in left if k not in mates]
        units.append([first, *mates])
    return units


@dataclass(frozen=True)
class Batching:
    """How a sweep run batches cells: up to ``cells`` together, ``compile_step`` or not.

    ``tokens`` is the target tokens an ``"auto"`` batch may hold (:func:`cells_per_batch`).
    """

    cells: int | str = 1
    compile_step: bool | str = False
    tokens: int = AUTO_BATCH_TOKENS
