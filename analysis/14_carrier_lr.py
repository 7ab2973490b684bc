"""Protocol study for the carriers: does a larger lr converge memory tokens and KV prefixes?

The carrier sweep trains every carrier under the LoRA protocol (AdamW at a constant lr of
1e-2, chosen by ``analysis/08_protocol_study.py`` on LoRA cells), and at its 3,000-step budget
every memory-token cell was still gaining over 1 % of its ΔL per last 10 % of steps. If that
is the lr, the carriers are compared at an lr that favours one of them. Each protocol here is
one sweep over the same probe cells (memory tokens ``memtok:4@20`` at ℓ = 128, the KV prefix
``kv:1@27`` at ℓ = 256, and the LoRA cell the lr was chosen on, ``mlp_block@20`` rank 1 at
ℓ = 128; sequence 0) at another lr, with the carrier sweep's convergence stop; the lr-1e-2
cells are the converged law and carrier sweeps' (or, before they reach them, the
fixed-budget carrier sweep's, stopped at 3,000 steps and marked so).

Per probe cell and lr: ΔL where the cell stopped and why, the best ΔL by step 3,000 (the
fixed sweep's budget), the first step at which the convergence test (1 % over the last 10 %)
passed (``lawfit.budget.first_converged_step``; the sweep never stops before 3,000), and the
share of the best ΔL any lr reached. Then per carrier the cheapest lr (fewest steps run)
within 1 % of the best on every probe cell all lrs finished.

    collect run sweeps/protocol/carrier_lr_1e-1.toml --out data/protocol/carrier_lr_1e-1
    collect run sweeps/protocol/carrier_lr_3e-2.toml --out data/protocol/carrier_lr_3e-2
    python analysis/14_carrier_lr.py             # the table and the choice per carrier
    python analysis/14_carrier_lr.py --markdown  # for docs/capacity_bits.md
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, best_dl, cell_progress, cheapest_within, header, markdown  # noqa: E402

#: the probe cells: the sweep files name them, at every lr the same
PROBE_SWEEP = "sweeps/protocol/carrier_lr_1e-1.toml"
#: lr -> (sweep file, cell directory) in the order searched; relative to the repository root
PROTOCOLS = {
    "1e-2": [
        ("sweeps/law_cpu_converged.toml", "data/law_cpu_converged"),  # its LoRA cells
        ("sweeps/carriers_cpu_converged.toml", "data/carriers_cpu_converged"),
        ("sweeps/carriers_cpu.toml", "data/carriers_cpu"),  # 3,000 steps, marked "budget"
    ],
    "3e-2": [("sweeps/protocol/carrier_lr_3e-2.toml", "data/protocol/carrier_lr_3e-2")],
    "1e-1": [("sweeps/protocol/carrier_lr_1e-1.toml", "data/protocol/carrier_lr_1e-1")],
}
TOLERANCE = 0.01
#: the fixed carrier sweep's budget, where every memory-token cell was still improving
FIXED_BUDGET = 3000


def _row(lr: str, key, places) -> dict:
    """One probe cell under one lr: the first place that finished it, else where it stands.

    ``places``: (loaded sweep config, cell directory) pairs, in the order searched.
    """
    from lawfit.budget import first_converged_step

    row = {"lr": lr, "carrier": key.modules, "length": key.length, "data_seed": key.data_seed}
    states = []
    for config, out in places:
        state, ds, checkpoint = cell_progress(os.path.join(ROOT, out), key, config.fingerprint())
        if ds is None:
            states.append(f"{state} at step {checkpoint['step']}" if checkpoint else state)
            continue
        cfg = config.train
        return {
            **row,
            "state": "done",
            "delta_L": float(ds["loss_reduction"]),
            "steps": int(ds["steps"]),
            "stop": str(ds.attrs.get("stop_reason", "")),
            f"dL_by_{FIXED_BUDGET}": best_dl(ds, FIXED_BUDGET),
            "converged_at": float(
                first_converged_step(ds, window=cfg.converge_window, tol=cfg.converge_tol)
            ),
            "hours": float(ds["wall_time"]) / 3600,
            "where": out,
        }
    return {**row, "state": states[0] if states else "pending"}


def study_table(protocols=PROTOCOLS, probe_sweep: str = PROBE_SWEEP) -> pd.DataFrame:
    """One row per (lr, probe cell), with the share of the cell's best ΔL over all lrs."""
    from collect.config import load_config

    keys = list(load_config(os.path.join(ROOT, probe_sweep)).cells())
    found = {  # each sweep file read once; directories not collected yet are skipped
        lr: [
            (load_config(os.path.join(ROOT, sweep)), out)
            for sweep, out in places
            if os.path.isdir(os.path.join(ROOT, out, "cells"))
        ]
        for lr, places in protocols.items()
    }
    table = pd.DataFrame([_row(lr, key, found[lr]) for lr in protocols for key in keys])
    for col in ("delta_L", "steps"):
        if col not in table:
            table[col] = np.nan
    cell = ["carrier", "length", "data_seed"]
    table["share_of_best"] = table["delta_L"] / table.groupby(cell)["delta_L"].transform("max")
    return table.rename(columns={"lr": "protocol"})


def choices(table: pd.DataFrame) -> dict[str, tuple[str | None, str]]:
    """Per carrier, the cheapest lr within the tolerance of the best ΔL on its probe cells."""
    return {
        carrier: cheapest_within(rows, ["length", "data_seed"], TOLERANCE)
        for carrier, rows in table.groupby("carrier", sort=False)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    table = study_table()
    shown = table.rename(columns={"protocol": "lr"}).drop(columns=["where"], errors="ignore")
    for col, digits in (("delta_L", 3), (f"dL_by_{FIXED_BUDGET}", 3), ("share_of_best", 3)):
        if col in shown:
            shown[col] = shown[col].round(digits)
    if "hours" in shown:
        shown["hours"] = shown["hours"].round(2)
    header("ΔL (nats/token) each lr reached on each probe cell")
    print(markdown(shown) if args.markdown else shown.to_string(index=False))
    header(f"Choice per carrier (within {TOLERANCE:.0%} of the best ΔL, fewest steps)")
    for carrier, (chosen, why) in choices(table).items():
        print(f"{carrier}: lr {chosen}: {why}" if chosen else f"{carrier}: none yet: {why}")


if __name__ == "__main__":
    main()
