"""Step 16 - the cost of writing a recallable memory: training FLOPs to first exact recall.

    python analysis/16_recall_cost.py [DATA] [--also OTHER ...] [--reference REF] [--markdown]

The carrier analysis (09_carriers.py) counts the FLOPs of every step until a cell stopped,
and its carriers stop for different reasons: a LoRA cell when every target token passes
p = 0.5, a KV prefix at the convergence stop, long after it may have recalled its target.
Cells that record ``first_exact_step`` (the first step at which the teacher-forced argmax
was right at every target token, which is exact greedy recall) say when each carrier first
held a recallable memory. For every cell this prints the step, the estimated FLOPs up to it
(``collect.cost``: the cached prefix once, then that many training steps) and the bits
recalled per PFLOP so spent (NaN where it never recalled), then per task, carrier size and
length the mean over target sequences with its 95 % t-interval, and a closing sentence
naming, at each task and matched number of trainable scalars and target length, the carrier
that got there first (of those that recalled),
with the per-sequence FLOP ratios and their geometric mean's paired t-interval (the
sequences are the replicates).

``--also`` adds the cells of other datasets that recorded their first exact step, such as
the carrier sweep's (data/carriers_converged.nc) once it holds a carrier the recall-cost sweep
lacks; a cell DATA holds is taken from DATA. Of their cells that hold no step, those the file
says never reached exact recall (``first_exact`` "never") are listed too; those collected
before the step was recorded ("unknown": it may have passed unseen) are not.

``--reference`` names a dataset holding the same cells collected earlier (default
data/carriers_converged.nc): the script checks that each cell's ΔL came out the same, the
sweep being deterministic given its seeds, and prints the largest relative difference.

DATA defaults to data/carrier_recall_cost.nc (sweeps/carrier_recall_cost.toml).
"""

from __future__ import annotations

import os
import sys
import warnings

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_figures")
)
from _common import ROOT, header, parser, read_dataset  # noqa: E402
from carriers import (  # noqa: E402
    _interval,
    carrier_cells,
    format_interval,
    paired_ratio_text,
)

from collect.cost import add_flops  # noqa: E402

DEFAULT_DATA = os.path.join(ROOT, "data", "carrier_recall_cost.nc")
DEFAULT_REFERENCE = os.path.join(ROOT, "data", "carriers_converged.nc")


def recall_cells(ds) -> pd.DataFrame:
    """One row per ok cell with its first exact step, FLOPs to it and bits recalled per PFLOP.

    Raises
    ------
    SystemExit
        When the dataset records no ``first_exact_step`` (cells collected before it was).
    """
    if "first_exact_step" not in ds:
        sys.exit(
            "error: the dataset has no first_exact_step (its cells were collected before it "
            "was recorded). Collect sweeps/carrier_recall_cost.toml (see its header)."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = carrier_cells(ds)
    cells, notes = add_flops(cells, ds)
    for n in notes:
        print(f"note: {n}")
    reached = cells["first_exact_step"].notna()
    cells["flops_to_recall"] = (
        cells["flops"] - (cells["steps"] - cells["first_exact_step"]) * cells["flops_per_step"]
    ).where(reached)
    cells["recalled_per_pflop"] = cells["bits_recalled"] / cells["flops_to_recall"] * 1e15
    return cells


#: the coordinates that name one cell
CELL_KEYS = ("model", "task", "random_ratio", "objective", "modules", "rank", "length", "seed")


def known_first_exact(cells: pd.DataFrame) -> pd.Series:
    """Whether each cell's first exact step is known: reached, or known never reached.

    Files merged before ``first_exact`` was recorded know only the cells that reached it.
    """
    if "first_exact" in cells:
        return cells["first_exact"].isin(["reached", "never"])
    return cells["first_exact_step"].notna()


def gathered_cells(ds, others=()) -> pd.DataFrame:
    """:func:`recall_cells` of ``ds``, plus the cells of ``others`` known to have reached
    exact recall or not (:func:`known_first_exact`).

    A cell both hold is taken from ``ds``; ``data_seed`` joins the key where present.
    """
    cells = recall_cells(ds)
    for other in others:
        extra = recall_cells(other)
        extra = extra[known_first_exact(extra)]
        key = [c for c in (*CELL_KEYS, "data_seed") if c in cells and c in extra]
        known = cells.set_index(key).index
        cells = pd.concat([cells, extra[~extra.set_index(key).index.isin(known)]])
    return cells.reset_index(drop=True)


def replication(ds, reference) -> pd.DataFrame:
    """Each ok cell's ΔL beside the same cell's ΔL in ``reference`` and their relative gap."""

    def ok_dl(d, name):
        frame = d[["loss_reduction", "status"]].to_dataframe().reset_index()
        frame = frame[frame["status"] == "ok"].drop(columns="status")
        return frame.rename(columns={"loss_reduction": name})

    ours, ref = ok_dl(ds, "dl"), ok_dl(reference, "reference_dl")
    on = [c for c in ours.columns if c in ref.columns and c not in ("dl", "reference_dl")]
    both = ours.merge(ref[[*on, "reference_dl"]], on=on, how="left")
    both["relative_gap"] = (both["dl"] - both["reference_dl"]) / both["reference_dl"]
    return both


def summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per task, carrier size and length: first exact step and recall cost over sequences."""
    rows = []
    keys = ["task", "carrier", "modules", "rank", "n_params", "length"]
    for key, g in cells.groupby(keys):
        step, _, step_ci, n = _interval(g["first_exact_step"].to_numpy(float))
        gflops, _, gflops_ci, _ = _interval(g["flops_to_recall"].to_numpy(float) / 1e9)
        per, _, per_ci, _ = _interval(g["recalled_per_pflop"].to_numpy(float))
        rows.append(
            dict(
                zip(keys, key, strict=True),
                targets=len(g),
                reached=n,
                unknown=int((~known_first_exact(g)).sum()),
                steps_run=float(g["steps"].mean()),
                first_exact_step=format_interval(step, step_ci),
                gflop_to_recall=format_interval(gflops, gflops_ci),
                recalled_per_pflop=format_interval(per, per_ci),
            )
        )
    return pd.DataFrame(rows)


def verdict(cells: pd.DataFrame) -> list[str]:
    """Per task, matched size and length: the carrier that first recalled exactly, by how much.

    Like with like: per task, only the target sequences on which every carrier of that size
    and length that ever recalled reached exact recall are compared, each carrier's FLOPs
    and steps averaged over them. The per-sequence ratios follow (paired: each on one
    target), with how many sequences the cheaper carrier on average was cheaper on.
    """
    out = []
    for (task, n_params, length), g in cells.groupby(["task", "n_params", "length"]):
        flops = g.pivot_table(index="data_seed", columns="modules", values="flops_to_recall")
        flops = flops.dropna(axis=1, how="all")  # a carrier that never recalled: no cost
        shared = flops.dropna()
        if flops.shape[1] < 2 or shared.empty:
            continue
        steps = g.pivot_table(index="data_seed", columns="modules", values="first_exact_step")
        mean = shared.mean().sort_values() / 1e9
        step = steps.loc[shared.index].mean()
        best, second = mean.index[0], mean.index[1]
        out.append(
            f"{task}, at {int(n_params):,} trainable scalars and l = {int(length)}: {best} "
            f"first recalls its targets exactly after {mean[best]:.3g} GFLOP "
            f"(step {step[best]:.0f}), "
            f"{mean[second] / mean[best]:.2g}x fewer than {second} ({mean[second]:.3g} GFLOP, "
            f"step {step[second]:.0f}); means over the {len(shared)} target sequence(s) on which "
            f"both reached it, FLOPs estimated; {_paired(shared, best, second)}"
        )
    return out


def _paired(flops: pd.DataFrame, best: str, second: str) -> str:
    """Per target sequence, ``second``'s FLOPs over ``best``'s, how often ``best`` won, and
    their geometric mean with its paired 95 % interval."""
    return paired_ratio_text(flops[second] / flops[best], f"{best} cheaper")


def main() -> None:
    ap = parser(__doc__, data=DEFAULT_DATA)
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="OTHER",
        help="another dataset whose cells that reached exact recall join DATA's (repeatable)",
    )
    ap.add_argument("--reference", default=DEFAULT_REFERENCE, help="the same cells, earlier")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = ap.parse_args()
    ds = read_dataset(args.data)
    cells = gathered_cells(ds, [read_dataset(path) for path in args.also])
    show = (
        (lambda t: t.to_markdown(index=False))
        if args.markdown
        else (lambda t: t.to_string(index=False))
    )
    header("Training FLOPs to first exact recall, per cell")
    cols = [
        "task",
        "modules",
        "rank",
        "n_params",
        "length",
        "data_seed",
        "steps",
        "stop_reason",
        "first_exact_step",
        "bits_recalled",
        "flops_to_recall",
        "recalled_per_pflop",
    ]
    print(show(cells[[c for c in cols if c in cells]]) + "\n")
    header("Per task, carrier size and length (mean ± 95 % t-interval over target sequences)")
    table = summary(cells)
    print(show(table) + "\n")
    for line in verdict(cells):
        print(line)
    if os.path.exists(args.reference):
        rep = replication(ds, read_dataset(args.reference))
        header(f"Replication: the same cells in {os.path.relpath(args.reference, ROOT)}")
        print(show(rep) + "\n")
        gap = rep["relative_gap"].abs().max()
        print(
            f"largest relative gap in dL: {gap:.2e} over {rep['reference_dl'].notna().sum()} cells"
        )


if __name__ == "__main__":
    main()
