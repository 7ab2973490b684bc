"""Protocol study: which training protocol reaches a converged ΔL most cheaply (issue 10).

Each protocol is one sweep over the same probe cells (long-context random tokens, rank 1 at
ℓ = 128, 256, 512 and rank 2 at ℓ = 512, seed 0, first target sequence), collected into its
own directory (the fixed-budget law sweep's directory holds its probe cells among others).
For every probe cell the script prints the ΔL each protocol reached, its steps and why it
stopped, and the share of the best ΔL any protocol reached on that cell. The chosen
protocol is the cheapest (fewest training steps over the probe cells) that comes within the
tolerance (1 %) of the best on every probe cell all protocols have finished; cells still
running are listed as pending, and no choice is made before every protocol has at least one
finished cell in common.

    python analysis/08_protocol_study.py            # reads the sweep directories under data/
    python analysis/08_protocol_study.py --markdown # the table for docs/protocol.md
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, cheapest_within, header, markdown  # noqa: E402

#: protocol label -> (sweep file, sweep directory), or a list of them (one protocol collected
#: in several directories), relative to the repository root
PROTOCOLS = {
    "constant lr 1e-2 to a plateau": ("sweeps/budget_probe.toml", "data/budget_probe"),
    "constant, then lr/10 at the plateau, to a 2nd plateau": (
        "sweeps/protocol/plateau_decay.toml",
        "data/protocol/plateau_decay",
    ),
    "the paper's: linear decay over 2,000 steps, dropout 0.1": (
        "sweeps/protocol/paper.toml",
        "data/protocol/paper",
    ),
    "the paper's decay without its dropout": (
        "sweeps/protocol/paper_no_dropout.toml",
        "data/protocol/paper_no_dropout",
    ),
    "constant lr 1e-2 for a fixed 3,000 steps (the law sweep's, session 6)": (
        "sweeps/law_cpu_fixed.toml",
        "data/law_cpu_fixed",
    ),
    "the same 3,000 steps, then 300 with the lr decayed to 0 (a cool-down, session 18)": (
        "sweeps/protocol/cooldown.toml",
        "data/protocol/cooldown",
    ),
    "constant lr 1e-2, convergence stop from 3,000 steps (the law sweep's, session 21)": [
        ("sweeps/law_cpu_converged.toml", "data/law_cpu_converged"),
        # the same protocol (one fingerprint) from a second initialisation seed (session 24)
        ("sweeps/protocol/init_seeds.toml", "data/protocol/init_seeds"),
    ],
    "constant lr 3e-2, the same convergence stop (session 24)": (
        "sweeps/protocol/lr_3e-2.toml",
        "data/protocol/lr_3e-2",
    ),
}
PROBE_CELLS = [(1, 128), (1, 256), (1, 512), (2, 512)]
TOLERANCE = 0.01


def protocol_cells(sweep: str, out_dir: str) -> pd.DataFrame:
    """ΔL, steps, stop reason and compute time of a protocol's finished probe cells."""
    from collect.config import load_config
    from collect.store import cell_path, read_cell

    config = load_config(os.path.join(ROOT, sweep))
    rows = []
    for key in config.cells():
        probe = (key.rank, key.length) in PROBE_CELLS and key.data_seed == 0
        if not probe or key.method != "sft":  # the law sweep has more cells than the probe
            continue
        path = cell_path(os.path.join(ROOT, out_dir), key)
        ds = read_cell(os.path.join(ROOT, out_dir), key, config.fingerprint())
        if ds is None or str(ds["status"].values) != "ok":
            rows.append(
                {"rank": key.rank, "length": key.length, "seed": key.seed, "state": "pending"}
            )
            continue
        rows.append(
            {
                "rank": key.rank,
                "length": key.length,
                "seed": key.seed,
                "state": "done",
                "delta_L": float(ds["loss_reduction"]),
                "steps": int(ds["steps"]),
                "stop": str(ds.attrs.get("stop_reason", "")),
                "hours": float(ds["wall_time"]) / 3600,
                "file": os.path.relpath(path, ROOT),
            }
        )
    return pd.DataFrame(rows)


def all_cells(protocols=PROTOCOLS) -> pd.DataFrame:
    """Every probe cell of every protocol collected so far, any initialisation seed."""
    parts = []
    for label, places in protocols.items():
        for sweep, out_dir in [places] if isinstance(places, tuple) else places:
            if not os.path.exists(os.path.join(ROOT, out_dir, "sweep.json")):
                continue
            frame = protocol_cells(sweep, out_dir)
            frame.insert(0, "protocol", label)
            parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def study_table(cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (protocol, probe cell) from seed 0, with the share of the cell's best ΔL."""
    cells = all_cells() if cells is None else cells
    table = cells[cells["seed"] == 0].drop(columns="seed").reset_index(drop=True)
    if "delta_L" not in table:
        table["delta_L"] = np.nan
    best = table.groupby(["rank", "length"])["delta_L"].transform("max")
    table["share_of_best"] = table["delta_L"] / best
    return table


def seed_spread(cells: pd.DataFrame) -> pd.DataFrame:
    """Probe cells run from several initialisation seeds under one protocol: ΔL per seed.

    ``spread_pct`` is (largest − smallest) / mean ΔL over the seeds finished, in per cent:
    the gap two runs of one protocol show, against which a gap between protocols is read.
    """
    done = cells[cells["state"] == "done"]
    cell = ["protocol", "rank", "length"]
    many = done.groupby(cell)["seed"].transform("nunique") > 1
    if not many.any():
        return pd.DataFrame()
    wide = done[many].pivot_table(index=cell, columns="seed", values="delta_L")
    wide.columns = [f"dL_seed_{s}" for s in wide.columns]
    values = wide.to_numpy(float)
    wide["spread_pct"] = 100 * (np.nanmax(values, 1) - np.nanmin(values, 1)) / np.nanmean(values, 1)
    return wide.reset_index()


def choose(table: pd.DataFrame) -> tuple[str | None, str]:
    """The cheapest protocol within the tolerance on every cell all protocols finished."""
    return cheapest_within(table, ["rank", "length"], TOLERANCE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    cells = all_cells()
    table = study_table(cells)
    shown = table[
        [
            "protocol",
            "rank",
            "length",
            "state",
            "delta_L",
            "share_of_best",
            "steps",
            "stop",
            "hours",
        ]
    ].copy()
    for col, digits in (("delta_L", 3), ("share_of_best", 3), ("hours", 2)):
        shown[col] = shown[col].round(digits)
    header("ΔL (nats/token) each protocol reached on each probe cell")
    print(markdown(shown) if args.markdown else shown.to_string(index=False))
    chosen, why = choose(table)
    header("Choice")
    print(f"{chosen or 'none yet'}: {why}")
    spread = seed_spread(cells)
    header("The spread between initialisation seeds (one protocol, one cell)")
    if spread.empty:
        print("no probe cell has finished from two seeds under one protocol yet")
    else:
        spread = spread.round(3)
        print(markdown(spread) if args.markdown else spread.to_string(index=False))


if __name__ == "__main__":
    main()
