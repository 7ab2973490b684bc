"""Is `collect plan`'s memory estimate an upper bound on SmolLM2? Measured against real cells.

``collect.preflight.estimate_cell`` bounds a cell's peak memory by a formula checked on the
tiny test model only (``tests/collect/test_validation_plan.py``). This runs a few training
steps of real SmolLM2-135M cells, each in its own process (``collect run``, one thread), reads
the process's high-water mark (``VmHWM``) and compares how much it grew from a short target
to a long one with how much the estimate grew:

    python benchmarks/memory_estimate.py     # three placements, six cells: minutes on a free core

A ratio (estimated growth / measured growth) at or above 1 says the estimate bounds what the
longer target costs; the rows also give each cell's estimate beside the measured peak, which
includes the interpreter, torch and the loaded model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: (task, modules, rank, short length, long length): the shipped sweeps' placements
CASES = [
    ("long_context", "mlp_block@20", 4, 64, 1024),  # the law sweep's adapter, prefix cached
    ("phonebook", "mlp_block@20", 1, 64, 512),  # prompts 3.5x the target tokens
    ("long_context", "memtok:2", 1, 64, 256),  # the whole model every step
]
_PEAK = (
    "import re, sys; from collect.cli import main; main(sys.argv[1:]); "
    "status = open('/proc/self/status').read(); "
    "print('VMHWM', re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1))"
)


def peak_bytes(task: str, modules: str, rank: int, length: int, steps: int, out: Path) -> int:
    """Peak resident memory of a ``steps``-step ``collect run`` of one cell, in a subprocess."""
    argv = ["run", "--model", "smollm2", "--task", task, "--modules", modules]
    argv += ["--ranks", str(rank), "--lengths", str(length), "--max-steps", str(steps)]
    argv += ["--out", str(out / f"{task}-{modules}-{length}"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *argv], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"collect run {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return 1024 * int(done.stdout.split("VMHWM")[-1])


def estimate_bytes(task: str, modules: str, rank: int, length: int) -> tuple[float, int]:
    """``estimate_cell``'s memory bound and batch tokens for the same cell."""
    from collect.config import config_from_dict
    from collect.models import load_skeleton
    from collect.preflight import estimate_cell

    grid = {"tasks": [task], "modules": [modules], "ranks": [rank], "lengths": [length]}
    config = config_from_dict({"defaults": {"models": ["smollm2"], "seeds": [0], **grid}})
    est = estimate_cell(load_skeleton("smollm2"), config.cells()[0], config)
    return est.memory_bytes, est.batch_tokens


def main(argv: list[str] | None = None) -> int:
    """Measure every case of :data:`CASES` and print one row per cell pair."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per cell")
    args = parser.parse_args(argv)
    gib = 2.0**30
    print("| task | modules | rank | ℓ | batch tokens | estimate (GiB) | peak (GiB) |", end="")
    print(" estimated growth | measured growth | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for task, modules, rank, short, long in CASES:
            rows = []
            for length in (short, long):
                est, tokens = estimate_bytes(task, modules, rank, length)
                peak = peak_bytes(task, modules, rank, length, args.steps, Path(tmp))
                rows.append((length, tokens, est, peak))
            grown_est, grown = rows[1][2] - rows[0][2], rows[1][3] - rows[0][3]
            for i, (length, tokens, est, peak) in enumerate(rows):
                tail = f" {grown_est / gib:.2f} | {grown / gib:.2f} | {grown_est / grown:.2f} |"
                print(
                    f"| {task} | {modules} | {rank} | {length:,} | {tokens:,} | {est / gib:.2f} |"
                    f" {peak / gib:.2f} |" + (tail if i else " | | |")
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
