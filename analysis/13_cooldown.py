"""Protocol study, cool-down: are the law sweep's 3,000-step cells converged?

Each cell of ``sweeps/protocol/cooldown.toml`` is a law-sweep cell (constant lr 1e-2 for 3,000
steps) continued from its saved state for 300 steps while the lr decays linearly to 0
(``schedule = "cooldown"``; up to step 3,000 it is the law sweep's run). Per cell: ΔL of the
law sweep at 3,000 steps, the best ΔL its logged curve reached, and ΔL after the cool-down.
Then the law (ΔL = C·r^α·ℓ^(−β) + b) fitted on the same cells before and after the cool-down:
if the constant lr leaves more ΔL on the table at some lengths than at others, β moves.

    collect run sweeps/protocol/cooldown.toml --out data/protocol/cooldown \\
        --extend-from data/law_cpu_fixed
    python analysis/13_cooldown.py              # the table and both fits
    python analysis/13_cooldown.py --markdown   # for docs/protocol.md
    python analysis/13_cooldown.py --plot docs/img/protocol_cooldown.png   # gain by length
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, best_dl, cell_progress, markdown  # noqa: E402

COOLED = ("sweeps/protocol/cooldown.toml", "data/protocol/cooldown")
CONSTANT = ("sweeps/law_cpu_fixed.toml", "data/law_cpu_fixed")
#: scalar variables a law fit reads from each cell
FIT_COLUMNS = ["loss_before", "loss_after", "loss_reduction", "status", "n_params"]


def _config_and_dir(pair):
    from collect.config import load_config

    sweep, out = (os.path.join(ROOT, path) for path in pair)  # absolute paths stay as given
    return load_config(sweep), out


def study_table(cooled=COOLED, constant=CONSTANT) -> tuple[pd.DataFrame, list]:
    """One row per cool-down cell beside its law-sweep cell; and the cell pairs finished.

    ``cooled`` and ``constant`` are (sweep file, cell directory) pairs, relative to the
    repository root or absolute.
    """
    from collect.store import read_cell

    cool_config, cool_dir = _config_and_dir(cooled)
    const_config, const_dir = _config_and_dir(constant)
    rows, pairs = [], []
    for key in cool_config.cells():
        row = {"rank": key.rank, "length": key.length, "data_seed": key.data_seed}
        before = read_cell(const_dir, key, const_config.fingerprint())
        if before is None:
            rows.append({**row, "state": "no law-sweep cell"})
            continue
        state, after, checkpoint = cell_progress(cool_dir, key, cool_config.fingerprint())
        if after is not None:
            step = int(after["steps"])
        else:  # the step its checkpoint resumes from, 0 before it starts
            step = int(checkpoint["step"]) if checkpoint else 0
        row.update(state=state, step=step, dL_constant=float(before["loss_reduction"]))
        row["dL_best_constant"] = best_dl(before)
        if after is not None:
            row["dL_cooled"] = float(after["loss_reduction"])
            row["gain_pct"] = 100 * (row["dL_cooled"] / row["dL_constant"] - 1)
            row["gain_over_best_pct"] = 100 * (row["dL_cooled"] / row["dL_best_constant"] - 1)
            row["how"] = after.attrs.get("extension", "from scratch")
            pairs.append((key, before, after))
        rows.append(row)
    return pd.DataFrame(rows), pairs


def _frame(cells: list) -> pd.DataFrame:
    """Tidy frame of (cell key, cell dataset) pairs, with the columns a law fit reads."""
    rows = []
    for key, ds in cells:
        row = {c: ds[c].values.item() for c in FIT_COLUMNS if c in ds}
        row.update(rank=key.rank, length=key.length, seed=key.seed, data_seed=key.data_seed)
        rows.append(row)
    return pd.DataFrame(rows)


def law_before_and_after(pairs: list) -> pd.DataFrame | None:
    """α, β and α − β fitted on the same cells at 3,000 steps and after the cool-down."""
    import lawfit

    if len(pairs) < 6:
        return None
    out = []
    for label, cells in (
        ("constant lr", [(key, const) for key, const, _ in pairs]),
        ("cooled down", [(key, cool) for key, _, cool in pairs]),
    ):
        frame = _frame(cells)
        unit = "data_seed" if frame["data_seed"].nunique() >= 3 else "cell"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = lawfit.fit(frame, "power_law", unit=unit, rng=0)
        except lawfit.LawfitError as exc:
            print(f"{label}: law not fitted: {exc}")
            continue
        cluster = None if unit == "cell" else unit
        how = "profile" if cluster is None else "cluster"
        ci = res.conf_int(how, **({} if cluster is None else {"cluster": cluster}))
        diff = res.contrast({"alpha": 1, "beta": -1}, cluster=cluster)
        row = {"cells": label, "n": res.n_obs, "interval": f"{how} ({unit})"}
        for p in ("alpha", "beta"):
            row[p] = f"{res.params[p]:.3f} [{ci.loc[p, 'low']:.3f}, {ci.loc[p, 'high']:.3f}]"
        row["alpha - beta"] = (
            f"{diff['estimate']:.3f} [{diff['low']:.3f}, {diff['high']:.3f}], p = "
            f"{diff['pvalue']:.2g}"
        )
        row["R2"] = round(float(res.r2), 4)
        out.append(row)
    return pd.DataFrame(out)


def plot(table: pd.DataFrame, path: str) -> None:
    """The cool-down's gain against target length, one marker per rank, the 1 % line drawn."""
    from lawfit.plotting.style import new_figure, paper_style

    done = table[table["state"] == "done"]
    with paper_style():
        fig, ax = new_figure("single", 2.4)
        markers = dict(zip(sorted(done["rank"].unique()), "osD^v", strict=False))
        for i, (rank, cells) in enumerate(done.groupby("rank")):
            ax.scatter(
                cells["length"],
                cells["gain_pct"],
                marker=markers[rank],
                color=f"C{i}",
                s=22,
                zorder=3,
                label=f"rank {rank}",
            )
        ax.axhline(1.0, color="0.4", lw=0.8, ls="--", label="1 % (the study's tolerance)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(done["length"].unique()), map(str, sorted(done["length"].unique())))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("target length ℓ (tokens)")
        ax.set_ylabel("ΔL gained by the cool-down (%)")
        ax.legend(frameon=False, fontsize="small", loc="upper left")
        fig.savefig(path, dpi=200, bbox_inches="tight")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--plot", metavar="PNG", help="draw the gain against length there")
    for name, (sweep, out) in (("cooled", COOLED), ("constant", CONSTANT)):
        ap.add_argument(
            f"--{name}",
            nargs=2,
            metavar=("SWEEP", "DIR"),
            default=(sweep, out),
            help=f"the {name} sweep file and its cell directory (default: {sweep} {out})",
        )
    args = ap.parse_args()
    show = markdown if args.markdown else (lambda t: t.to_string(index=False))
    table, pairs = study_table(args.cooled, args.constant)
    if args.plot:
        plot(table, args.plot)
    for col in [c for c in table if c.startswith("dL") or c.endswith("pct")]:
        table[col] = table[col].round(3 if col.startswith("dL") else 2)
    print(show(table))
    print(
        "\ndL_constant: the constant-lr cell at its budget (the law sweep: 3,000 steps); "
        "dL_best_constant: the best ΔL of its logged curve; dL_cooled: after the cool-down (the "
        "study: 300 more steps, lr decayed linearly to 0); gain_pct: dL_cooled against "
        "dL_constant; step: the cooled cell's last step (of its checkpoint while running)."
    )
    done = table[table.get("state", pd.Series(dtype=str)) == "done"]
    if len(done):
        by_length = done.groupby("length")["gain_pct"].agg(["count", "mean", "min", "max"])
        print("\ngain of the cool-down by length (%):")
        print(show(by_length.round(2).reset_index()))
    law = law_before_and_after(pairs)
    if law is None:
        print(f"\nlaw: {len(pairs)} cooled cells so far; the before/after fit needs 6.")
    else:
        print("\nthe law on the same cells, before and after the cool-down:")
        print(show(law))


if __name__ == "__main__":
    main()
