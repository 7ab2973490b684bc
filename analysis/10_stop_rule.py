"""Stop-rule study: what each plateau rule would have stopped at, on full-budget trajectories.

The first law sweep (``sweeps/law_cpu.toml``) stopped a cell once the best loss of the last
``patience`` steps improved on the best before them by less than ``min_delta`` (relative),
unless more tokens crossed p > 0.5 in those steps (``collect.probe.plateaued`` and
``above_rising``). Whether that rule stops too early is measured here on the cells of the
fixed-budget law sweep (``sweeps/law_cpu_fixed.toml``): the same protocol with the rule off, to
the full 3,000 steps, the loss logged at every step. Replaying each candidate rule on those
trajectories (with the functions the training loop uses) gives the step it would have stopped
at and the ΔL it would have recorded, against the ΔL at the budget.

A check comes first: the first law sweep's rule, replayed on the logged curve it saw (every
10th step for the p > 0.5 share), must reproduce the stop step and ΔL that sweep recorded for
the same cell (``data/law_cpu``), since both runs are the same computation up to that step.

The convergence stop that replaced these rules (``[train] converge_from``; session 21) is
replayed the same way on the converged law sweep (``data/law_cpu_converged.nc``): had its floor
been lower than 3,000 steps, where would each cell have stopped, how much ΔL would it have
recorded, and where would the law's exponents be (``lawfit.budget.at_convergence_stop``, fitted
on the same cells at every floor, cluster-robust over the target sequences)?

    python analysis/10_stop_rule.py             # the tables, and the check against data/law_cpu
    python analysis/10_stop_rule.py --markdown  # the tables for docs/protocol.md
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, header, markdown  # noqa: E402

FULL = ("sweeps/law_cpu_fixed.toml", "data/law_cpu_fixed")
LAW = ("sweeps/law_cpu.toml", "data/law_cpu")
#: (patience in steps, min_delta): the law sweep's rule first
RULES = [(50, 1e-3), (100, 1e-3), (200, 1e-3), (300, 1e-3), (500, 1e-3), (200, 3e-4), (500, 3e-4)]
LAW_LOG_EVERY = 10
CONVERGED = "data/law_cpu_converged.nc"
#: floors (converge_from) replayed; the last is the converged sweep's own
FLOORS = (1000, 1500, 2000, 2500, 3000)


def replay(
    loss: np.ndarray, frac: np.ndarray, patience: int, min_delta: float, log_every: int = 1
) -> int:
    """The step at which the plateau rule stops a trajectory (its last step if it never does).

    ``loss[s]`` and ``frac[s]`` are the mean loss and the share of tokens above p = 0.5 seen at
    step ``s`` (before that step's update); the p > 0.5 share counts only at multiples of
    ``log_every``, as in a run that logs that often.
    """
    from collect.probe import above_rising, plateaued

    steps = [s for s in range(len(loss)) if s % log_every == 0]
    for step in range(len(loss)):
        logged = [s for s in steps if s <= step]
        if plateaued(list(loss[: step + 1]), patience, min_delta) and not above_rising(
            logged, list(frac[logged]), step, patience
        ):
            return step
    return len(loss) - 1


def trajectories(sweep: str, out_dir: str) -> list[tuple]:
    """(key, loss_before, per-step loss, per-step p > 0.5 share) of each finished cell."""
    from collect.config import load_config
    from collect.store import read_cell

    config = load_config(os.path.join(ROOT, sweep))
    found = []
    for key in config.cells():
        ds = read_cell(os.path.join(ROOT, out_dir), key, config.fingerprint())
        if ds is None or str(ds["status"].values) != "ok":
            continue
        steps = ds["loss_curve"]["step"].values
        if not np.array_equal(steps, np.arange(len(steps))):
            raise SystemExit(f"{key.slug()}: the loss is not logged at every step")
        found.append(
            (key, float(ds["loss_before"]), ds["loss_curve"].values, ds["frac_above_curve"].values)
        )
    return found


def study(cells: list[tuple]) -> pd.DataFrame:
    """One row per (cell, rule): stop step, ΔL there, its share of ΔL at the budget and best."""
    rows = []
    for key, before, loss, frac in cells:
        at_budget, best = before - loss[-1], before - loss.min()
        for patience, delta in RULES:
            stop = replay(loss, frac, patience, delta, log_every=LAW_LOG_EVERY)
            rows.append(
                {
                    "rank": key.rank,
                    "length": key.length,
                    "data_seed": key.data_seed,
                    "patience": patience,
                    "min_delta": delta,
                    "stop_step": stop,
                    "delta_L": round(before - loss[stop], 3),
                    "share_of_budget": round((before - loss[stop]) / at_budget, 4),
                    "share_of_best": round((before - loss[stop]) / best, 4),
                    "delta_L_at_budget": round(at_budget, 3),
                    "budget_steps": len(loss) - 1,
                }
            )
    return pd.DataFrame(rows)


def check_against_law_sweep(cells: list[tuple]) -> pd.DataFrame:
    """The law sweep's rule replayed here against what the law sweep recorded, per cell."""
    from collect.config import load_config
    from collect.store import read_cell

    config = load_config(os.path.join(ROOT, LAW[0]))
    train, rows = config.train, []
    for key, before, loss, frac in cells:
        ds = read_cell(os.path.join(ROOT, LAW[1]), key, config.fingerprint())
        if ds is None:
            continue
        stop = replay(loss, frac, train.patience, train.min_delta, log_every=train.log_every)
        rows.append(
            {
                "rank": key.rank,
                "length": key.length,
                "data_seed": key.data_seed,
                "replayed_stop": stop,
                "recorded_stop": int(ds["steps"]),
                "replayed_delta_L": round(before - loss[stop], 4),
                "recorded_delta_L": round(float(ds["loss_reduction"]), 4),
            }
        )
    return pd.DataFrame(rows)


def _interval(fit, contrast: dict) -> str:
    est = fit.contrast(contrast, cluster="data_seed")
    return f"{est['estimate']:.3f} [{est['low']:.3f}, {est['high']:.3f}]"


def floor_study(path: str = CONVERGED, floors=FLOORS) -> pd.DataFrame:
    """Per convergence-stop floor: steps, ΔL lost against the recorded cells, and the law.

    One row per floor: the unmemorized SFT cells that would have stopped earlier than they
    did, the least, worst and median shortfall of their ΔL against the ΔL recorded, the mean steps
    over those cells, and α, β, α − β (CR2 over the target sequences) fitted on the cells
    unmemorized at every floor.
    """
    import lawfit
    from lawfit.budget import at_convergence_stop, same_cells

    ds = lawfit.data.open_dataset(os.path.join(ROOT, path))
    ds = ds.sel(task="long_context", random_ratio=1.0, objective="sft")
    replayed = same_cells({f: at_convergence_stop(ds, start=f) for f in floors})
    kept = (ds["status"] == "ok") & (ds["loss_after"] > np.log(2))
    rows = []
    for floor, data in replayed.items():
        short = 100 * (1 - data["loss_reduction"] / ds["loss_reduction"]).where(kept)
        fit = lawfit.fit(data, bootstrap=0, rng=0)
        rows.append(
            {
                "floor": floor,
                "cells": int(kept.sum()),
                "stopped_earlier": int(((data["steps"] < ds["steps"]) & kept).sum()),
                "mean_steps": round(float(data["steps"].where(kept).mean()), 0),
                "least_shortfall_pct": round(float(short.min()), 2),
                "worst_shortfall_pct": round(float(short.max()), 2),
                "median_shortfall_pct": round(float(short.median()), 2),
                "fitted": fit.n_obs,
                "alpha": _interval(fit, {"alpha": 1}),
                "beta": _interval(fit, {"beta": 1}),
                "alpha - beta": _interval(fit, {"alpha": 1, "beta": -1}),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = ap.parse_args()
    show = (lambda f: print(markdown(f))) if args.markdown else print
    cells = trajectories(*FULL)
    if not cells:
        raise SystemExit(
            f"no finished cell in {FULL[1]} yet: collect run {FULL[0]} --out {FULL[1]}"
        )
    header("The law sweep's rule replayed on the same cells (must match what it recorded)")
    show(check_against_law_sweep(cells))
    header("Each rule on the full-budget trajectories")
    table = study(cells)
    show(table)
    header("Per rule: the worst share of the budget's ΔL, and the steps it spends")
    summary = table.groupby(["patience", "min_delta"]).agg(
        worst_share=("share_of_budget", "min"), mean_steps=("stop_step", "mean")
    )
    show(summary.reset_index())
    header("The convergence stop from a lower floor, replayed on the converged law sweep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's notes on few clusters: known here
        show(floor_study())


if __name__ == "__main__":
    main()
