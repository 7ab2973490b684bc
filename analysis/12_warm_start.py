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
    python analysis/12_warm_start.py --plot docs/img/warm_start.png   # the curves
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, cell_progress, markdown  # noqa: E402

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
    state, ds, checkpoint = cell_progress(out_dir, key, fingerprint)
    if state == "done":
        steps, dl = _curve(ds)
        return steps, dl, "done", float(ds["loss_reduction"]), dict(ds.attrs)
    if state == "pending":
        return None
    dl = loss_before - np.asarray(checkpoint["loss_curve"])
    return np.asarray(checkpoint["curve_steps"]), dl, "running", float("nan"), {}


def study_table(curves: dict | None = None) -> pd.DataFrame:
    """One row per warm-start cell, beside the same cell trained from scratch.

    ``curves``, if given, receives each cell's ``(scratch, warm)`` (steps, ΔL) curves.
    """
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
        if curves is not None:
            curves[(key.rank, key.length, key.data_seed)] = ((s_steps, s_dl), (w_steps, w_dl))
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


def plot(curves: dict, table: pd.DataFrame, path: str) -> None:
    """ΔL against training steps, scratch and warm, one panel per cell, the 1 % band drawn."""
    from lawfit.plotting.style import new_figure, paper_style

    with paper_style():
        fig, axes = new_figure("double", 2.3, ncols=max(len(curves), 1), squeeze=False)
        for ax, (cell, (scratch, warm)) in zip(axes[0], sorted(curves.items()), strict=False):
            rank, length, seq = cell
            row = table.set_index(["rank", "length", "data_seed"]).loc[cell]
            ax.plot(*scratch, color="0.45", lw=1, label="from scratch")
            ax.plot(*warm, color="C0", lw=1.2, label="from the converged rank r/2")
            ax.axhspan(
                (1 - TOLERANCE) * row["dL_scratch"],
                row["dL_scratch"],
                color="C1",
                alpha=0.25,
                lw=0,
                label="within 1 % of scratch at 3,000",
            )
            ax.set_title(f"rank {rank}, ℓ = {length:,}, sequence {seq}")
            ax.set_xlabel("training steps")
        axes[0][0].set_ylabel("ΔL (nats/token)")
        axes[0][0].legend(loc="lower right", frameon=False)
        fig.savefig(path, dpi=200, bbox_inches="tight")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--plot", metavar="PNG", help="draw the curves there")
    args = ap.parse_args()
    curves: dict = {}
    table = study_table(curves)
    if args.plot:
        plot(curves, table, args.plot)
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
