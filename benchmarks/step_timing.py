"""What the CPU step benchmarks share: one SmolLM2 cell run with every step's time stamped.

``bench_collect.py``, ``bench_malloc.py`` and ``bench_argmax.py`` time training steps of the
same kind of cell under settings they compare; :func:`timed_cell` runs the cell and records
when each logged step's loss was known.
"""

from __future__ import annotations

import statistics
import time

from collect.probe import TrainConfig, run_cell


def timed_cell(
    model,
    tokenizer,
    entries,
    *,
    task: str,
    modules: str,
    rank: int,
    train: TrainConfig,
    device,
    pack: bool = True,
):
    """Run one SFT cell (seed 0); return its result, the model and ``(step, time)`` stamps.

    ``train.log_every`` should be 1 for a stamp at every step.
    """
    stamps: list[tuple[int, float]] = []
    result, model = run_cell(
        model,
        tokenizer,
        entries,
        task=task,
        method="sft",
        modules=modules,
        rank=rank,
        seed=0,
        train=train,
        device=device,
        pack=pack,
        progress=lambda step, *_: stamps.append((step, time.perf_counter())),
    )
    return result, model, stamps


def median_step_seconds(stamps: list[tuple[int, float]], warm_up: int = 2) -> float:
    """Median seconds between consecutive stamps, after the first ``warm_up`` steps."""
    times = [t for _, t in stamps[warm_up:]]
    return statistics.median(b - a for a, b in zip(times, times[1:], strict=False))
