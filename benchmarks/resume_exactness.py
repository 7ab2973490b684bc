"""Does a cell cut by a time limit and resumed end where an uncut run ends, bit for bit?

    OMP_NUM_THREADS=1 python benchmarks/resume_exactness.py sweeps/resume_probe.toml \\
        --out runs/resume_probe --cut-minutes 0.7

It runs the sweep twice from scratch into ``OUT/straight`` and ``OUT/cut``: once without a
limit, once as a chain of ``--time-limit`` runs (:class:`collect.timelimit.Deadline`), each of
which checkpoints the running cell and stops, until the sweep is complete. Then it compares
every cell file of the two: each variable bit for bit (``wall_time`` aside) and, per cell, the
first logged step whose loss differs. It exits 1 when any cell differs or when no run was cut
inside a cell (then nothing was tested: lower ``--cut-minutes``).

The tests check this on a tiny random model (``tests/collect/test_time_limit.py``); this script
checks it on the real model, where the frozen model's arithmetic, the prefix cache and the
carriers' own state all have to survive the checkpoint. A difference at step 0 is not the
resume: both runs start from the same state, so it says the two processes computed the same
forward pass differently (threads, library versions).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from collect.config import SweepConfig, load_config
from collect.store import cell_path, checkpoint_step
from collect.sweep import run_sweep
from collect.timelimit import Deadline

#: per-cell variables that measure time, not the result
TIMING = ("wall_time",)


def run_with_cuts(
    config: SweepConfig,
    out: Path,
    minutes: float,
    *,
    max_rounds: int = 50,
    clock: Callable[[], float] | None = None,
) -> list[int]:
    """Run ``config`` into ``out`` as a chain of time-limited runs until it is complete.

    Returns
    -------
    list of int
        The step each cut cell's checkpoint held after each round that left one (empty when
        no round was cut inside a cell).
    """
    cuts: list[int] = []
    for _ in range(max_rounds):
        kwargs = {} if clock is None else {"clock": clock, "poll_seconds": 0.0}
        deadline = Deadline(minutes, **kwargs)
        ds = run_sweep(config, out, progress=False, merge_to=out / "dataset.nc", deadline=deadline)
        cuts += [s for s in (checkpoint_step(out, k) for k in config.cells()) if s > 0]
        if ds.attrs.get("complete") == "true":
            return cuts
    raise RuntimeError(f"{out} was not complete after {max_rounds} time-limited runs")


def _first_differing_step(a: xr.Dataset, b: xr.Dataset) -> float:
    """The first logged step whose loss differs (NaN: none, or no curve to compare)."""
    if "loss_curve" not in a or "loss_curve" not in b:
        return float("nan")
    x, y = np.ravel(a["loss_curve"].values), np.ravel(b["loss_curve"].values)
    n = min(len(x), len(y))
    unequal = np.nonzero(~((x[:n] == y[:n]) | (np.isnan(x[:n]) & np.isnan(y[:n]))))[0]
    if len(unequal) == 0:
        return float("nan") if len(x) == len(y) else float(n)
    return float(np.ravel(a["loss_curve"][a["loss_curve"].dims[0]].values)[unequal[0]])


def compare_cells(config: SweepConfig, first: Path, second: Path) -> pd.DataFrame:
    """One row per cell: the variables that differ between two runs and where the loss parts."""
    rows = []
    for key in config.cells():
        a = xr.load_dataset(cell_path(first, key))
        b = xr.load_dataset(cell_path(second, key))
        names = sorted((set(a.data_vars) | set(b.data_vars)) - set(TIMING))
        differing = [v for v in names if v not in a or v not in b or not a[v].equals(b[v])]
        dl_a, dl_b = (float(np.ravel(d["loss_reduction"].values)[0]) for d in (a, b))
        rows.append(
            {
                "cell": key.slug(),
                "identical": not differing,
                "differing": ", ".join(differing),
                "first_differing_step": _first_differing_step(a, b),
                "loss_reduction": dl_a,
                "relative_difference": (dl_b - dl_a) / abs(dl_a) if dl_a else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[2], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", help="sweep file (.toml/.yaml/.json)")
    parser.add_argument("--out", required=True, type=Path, help="new folder for both runs")
    parser.add_argument(
        "--cut-minutes",
        type=float,
        default=0.7,
        help="time limit of each run of the cut chain (default 0.7; it must fall inside cells)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.sweep)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"error: {args.out} is not empty; both runs must start from scratch")
    run_sweep(config, args.out / "straight", progress=False)
    cuts = run_with_cuts(config, args.out / "cut", args.cut_minutes)
    table = compare_cells(config, args.out / "straight", args.out / "cut")
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(table.to_string(index=False))
    print(f"cut inside a cell {len(cuts)} time(s), at steps {cuts}")
    same = int(table["identical"].sum())
    print(f"{same} of {len(table)} cells identical to the uncut run")
    return 0 if cuts and same == len(table) else 1


if __name__ == "__main__":
    raise SystemExit(main())
