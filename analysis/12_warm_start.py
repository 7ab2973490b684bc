"""Protocol study, warm starts: does rank r started from rank r/2 converge in fewer steps?

Each cell of ``sweeps/protocol/warm_start.toml`` starts from the converged rank-r/2 adapter of
the law sweep (same target, placement and seed; ``collect.warmstart``) and trains with the law
sweep's settings for at most 1,500 steps. It is compared with the same cell of the law sweep,
trained from scratch for 3,000 steps: ΔL at each budget, and the first step at which each
curve comes within the protocol study's 1 % of the scratch cell's 3,000-step ΔL. ΔL along a
curve is loss_before minus the logged training loss of that step (SFT, no dropout: the mean
target loss). A running cell is read from its checkpoint.

    python analysis/12_warm_start.py              # the table
    python analysis/12_warm_start.py --markdown   # for docs/protocol.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, markdown  # noqa: E402

WARM = ("sweeps/protocol/warm_start.toml", "data/protocol/warm_start")
SCRATCH = ("sweeps/law_cpu_fixed.toml", "data/law_cpu_fixed")
TOLERANCE = 0.01


def _curve(ds) -> tuple[np.ndarray, np.ndarray]:
    """Steps and ΔL along a finished cell's logged training curve."""
    dl = float(ds["loss_before"]) - ds["loss_curve"].values
    return ds["step"].values, dl


def first_step_within(steps: np.ndarray, dl: np.ndarray, goal: float) -> float:
    """The first logged step whose ΔL reaches ``goal``; NaN if none does."""
    hit = np.flatnonzero(dl >= goal)
    return float(steps[hit[0]]) if hit.size else float("nan")


def _warm_curve(out_dir: str, key, fingerprint: str, loss_before: float):
    """Steps, ΔL, state and attributes of a warm cell: finished, running, or None."""
    from collect.store import read_cell, read_state

    ds = read_cell(out_dir, key, fingerprint)
    if ds is not None and str(ds["status"].values) == "ok":
        steps, dl = _curve(ds)
        return steps, dl, "done", float(ds["loss_reduction"]), dict(ds.attrs)
    partial = read_state(out_dir, key, "partial")
    if partial is None:
        return None
    state = partial["state"]
    dl = loss_before - np.asarray(state["loss_curve"])
    return np.asarray(state["curve_steps"]), dl, "running", float("nan"), {}


def study_table() -> pd.DataFrame:
    """One row per warm-start cell, beside the same cell trained from scratch."""
    from collect.config import load_config
    from collect.store import read_cell

    warm_config = load_config(os.path.join(ROOT, WARM[0]))
    scratch_config = load_config(os.path.join(ROOT, SCRATCH[0]))
    warm_dir, scratch_dir = (os.path.join(ROOT, d) for d in (WARM[1], SCRATCH[1]))
    rows = []
    for key in warm_config.cells():
        row = {"rank": key.rank, "length": key.length, "data_seed": key.data_seed}
        scratch = read_cell(scratch_dir, key, scratch_config.fingerprint())
        if scratch is None:
            rows.append({**row, "state": "no scratch cell"})
            continue
        s_steps, s_dl = _curve(scratch)
        goal = (1 - TOLERANCE) * float(scratch["loss_reduction"])
        row.update(
            dL_scratch=float(scratch["loss_reduction"]),
            scratch_steps=int(scratch["steps"]),
            scratch_steps_to_99=first_step_within(s_steps, s_dl, goal),
        )
        found = _warm_curve(warm_dir, key, warm_config.fingerprint(), float(scratch["loss_before"]))
        if found is None:
            rows.append({**row, "state": "pending"})
            continue
        w_steps, w_dl, state, dl_final, attrs = found
        source = json.loads(attrs.get("warm_started_from", "{}") or "{}")
        row.update(
            state=state,
            warm_steps=int(w_steps[-1]),
            dL_warm=dl_final,
            dL_warm_start=float(w_dl[0]),
            warm_steps_to_99=first_step_within(w_steps, w_dl, goal),
            source_steps=source.get("steps", np.nan),
        )
        row["share_of_scratch"] = row["dL_warm"] / row["dL_scratch"]
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    table = study_table()
    for col in ("dL_scratch", "dL_warm", "dL_warm_start", "share_of_scratch"):
        if col in table:
            table[col] = table[col].round(4)
    print(markdown(table) if args.markdown else table.to_string(index=False))
    print(
        f"\nsteps_to_99: first logged step within {TOLERANCE:.0%} of the scratch cell's "
        "3,000-step ΔL (NaN: not reached); dL_warm_start: ΔL at the warm cell's step 0, the "
        "source adapter's; a warm start costs its source's steps too unless the sweep trains "
        "the source anyway (the law sweep does)."
    )


if __name__ == "__main__":
    main()
