"""Step 1 - collect: how data/smollm2_cpu.nc was produced, and what it holds.

The collection (SmolLM2-135M-Instruct on 2 CPU cores, sweep sweeps/smollm2_cpu.toml) takes
hours, so by default this script only prints the commands and the dataset's provenance
(config, package versions, git revision, creation time, how many cells are collected per
setting and method). Pass --run to start (or resume) the collection itself: finished cells
are kept, a killed sweep resumes where it stopped.

    python analysis/01_collect.py [DATA.nc]
    python analysis/01_collect.py --budget 3000  # what finishing at a larger budget costs
    python analysis/01_collect.py data/law_cpu.nc --price sweeps/gemma_cpu.toml --out data/gemma_cpu
                                     # what a sweep's pending cells cost, at the speed
                                     # measured on the finished cells of data/law_cpu.nc
    python analysis/01_collect.py --run          # hours; resumes
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, header, merge_cmd, parser, read_dataset  # noqa: E402

SWEEP = "sweeps/smollm2_cpu.toml"  # the 600-step pilot this script documents
PILOT = os.path.join(ROOT, "data", "smollm2_cpu.nc")
MERGE_CMD = merge_cmd("smollm2_cpu")
COMMANDS = [  # = make collect SWEEP=smollm2_cpu: two workers share the directory by claiming cells
    f"collect run {SWEEP} --out data/smollm2_cpu &",
    f"collect run {SWEEP} --out data/smollm2_cpu",
    MERGE_CMD,
]


def _parse():
    ap = parser(__doc__, data=PILOT)
    ap.add_argument("--run", action="store_true", help="run the collection (hours)")
    ap.add_argument(
        "--budget",
        type=int,
        default=None,
        metavar="STEPS",
        help="cost what is left at this step budget instead of the sweep's",
    )
    ap.add_argument(
        "--price",
        metavar="SWEEP",
        default=None,
        help="cost the pending cells of this sweep file (FLOPs estimated per cell, "
        "seconds per FLOP measured on DATA's finished cells) and stop",
    )
    ap.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="with --price: the sweep's directory (finished cells are not costed)",
    )
    ap.add_argument(
        "--share-cells-with",
        metavar="DIR",
        action="append",
        default=[],
        help="with --price: another sweep's directory whose finished cells this sweep "
        "copies (collect run --share-cells-with): they are not costed",
    )
    return ap.parse_args()


def run_collection() -> None:
    """Two single-threaded workers on the shipped sweep, then the merge."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "collect", "run", SWEEP, "--out", "data/smollm2_cpu"]
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env) for _ in range(2)]
    for p in workers:
        p.wait()
    subprocess.run(MERGE_CMD.split(), cwd=ROOT, check=True)


#: dataset attributes printed as provenance
PROVENANCE = (
    "created",
    "git_revision",
    "schema_version",
    "fingerprint",
    "synthetic",
    "n_cells",
    "n_cells_done",
    "complete",
)


def print_provenance(ds, path: str) -> None:
    """The dataset's provenance attributes, versions and sweep config."""
    header(f"Provenance of {path}")
    for k in PROVENANCE:
        if k in ds.attrs:
            print(f"{k:>16}: {ds.attrs[k]}")
    for k in ("versions", "config"):
        if k in ds.attrs:
            try:
                txt = json.dumps(json.loads(ds.attrs[k]), indent=1)
            except ValueError:
                txt = str(ds.attrs[k])
            print(f"\n{k}:\n{txt[:3000]}")


def print_cells(ds, budget) -> None:
    """Dimensions, cells by setting and status, wall time and step costs."""
    header("Dimensions")
    print(", ".join(f"{d}={n}" for d, n in ds.sizes.items()))
    header("Cells by setting, method and status (grid cells outside the sweep are not_run)")
    st = ds["status"].to_dataframe().reset_index()
    keys = [d for d in ("task", "random_ratio", "objective", "method") if d in st]
    tab = st.groupby(keys)["status"].value_counts().unstack(fill_value=0)
    tab = tab[(tab.drop(columns=["not_run"], errors="ignore").sum(axis=1) > 0)]
    print(tab.to_string() if len(tab) else "(no collected cells yet)")
    wt = ds["wall_time"].values if "wall_time" in ds else np.array([])
    wt = wt[np.isfinite(wt)]
    if wt.size:
        print(
            f"\nwall time per collected cell: median {np.median(wt):.0f} s, "
            f"total {wt.sum() / 3600:.2f} h over {wt.size} cells"
        )
        step_costs(ds, budget)
    print("\nvariables: " + ", ".join(sorted(map(str, ds.data_vars))))


def main():
    args = _parse()
    if args.price:
        data = read_dataset(args.data, hint="--price measures its speed on DATA's finished cells.")
        price_sweep(data, args.price, args.out, args.budget, args.share_cells_with)
        return
    header("Collection commands (run from the repository root)")
    print("OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1  # one thread per worker on 2 cores")
    for c in COMMANDS:
        print("  " + c)
    if args.run:
        run_collection()
    if args.synthetic:
        print("\n(--synthetic: nothing to describe; synthetic data are generated in memory)")
        return
    if not os.path.exists(args.data):
        cells = os.path.join(ROOT, "data", "smollm2_cpu", "cells")
        n = len(os.listdir(cells)) if os.path.isdir(cells) else 0
        print(
            f"\nno dataset at {args.data} yet ({n} finished cell files under {cells}); "
            f"merge them with:\n  {MERGE_CMD}"
        )
        return
    ds = read_dataset(args.data)
    print_provenance(ds, args.data)
    print_cells(ds, args.budget)


def step_cost_table(ds):
    """Median seconds per training step of the dataset's ok cells, by task and length."""
    cells = ds[["wall_time", "steps", "status"]].to_dataframe().reset_index()
    done = cells[cells["status"] == "ok"]
    return (
        (done["wall_time"] / done["steps"].clip(lower=1))
        .groupby([done["task"], done["length"]])
        .median()
    )


def flop_hours(keys, config, steps, rate, *, once=True):
    """Single-core hours of ``keys``, each running ``steps(key)`` steps, at ``rate`` s/FLOP.

    FLOPs are ``collect.cost``'s estimate of the lean loop (``once``: count the cached prefix,
    which a resumed cell does not compute again).
    """
    from collect.cost import sweep_cell_flops

    flops = sum(sweep_cell_flops(k, config, steps(k), once=once) for k in keys)
    return flops * rate / 3600


def price_sweep(ds, sweep, out_dir=None, budget=None, share_with=()):
    """Print what the pending cells of ``sweep`` cost, per block of cells and in all.

    Cells that a directory of ``share_with`` finished under the same settings are copied,
    not trained (``collect run --share-cells-with``): they cost nothing and are counted apart.

    Each cell's FLOPs are estimated from its model, carrier and length (``collect.cost``:
    the lean loop's forward and backward passes, the cached prefix once) and turned into
    hours with the seconds per estimated FLOP measured on the finished cells of ``ds``, so
    another model (Gemma's 5x larger head) or carrier (memory tokens through every layer)
    is priced by what it computes. Each cell is costed at the steps it has left to the budget
    (all of them, or from its checkpoint: the upper figure, an unmemorized cell that runs to
    its cap) and at 30 % of that (one that stops early).
    """
    from collect.config import load_config
    from collect.sharing import not_finished_elsewhere
    from collect.sweep import pending_cells

    rate = seconds_per_flop(ds)
    config = load_config(sweep)
    budget = budget or config.train.max_steps
    keys = config.cells()
    todo = pending_cells(config, out_dir) if out_dir and os.path.isdir(out_dir) else keys
    if share_with and not out_dir:
        sys.exit("--share-cells-with needs --out (the sweep's own directory).")
    todo, copied = not_finished_elsewhere(config, todo, out_dir, share_with or ())
    header(f"Cost of {sweep}: {len(todo)} of {len(keys)} cells pending, {budget}-step cap")
    if copied:
        print(f"{copied} more pending cell(s) finished in {', '.join(share_with)}: copied, free")
    lo, hi = np.percentile(1e-9 / rate, [0, 100])
    print(
        f"speed measured on {rate.size} finished cells of the data: "
        f"{1e-9 / np.median(rate):.1f} GFLOP/s per worker (cells range {lo:.1f}-{hi:.1f})\n"
    )

    from collect.store import checkpoint_step

    resumed = os.path.isdir(out_dir) if out_dir else False
    done = {k: checkpoint_step(out_dir, k) if resumed else 0 for k in todo}

    def left(k):  # a checkpointed cell resumes where it stopped
        return max(budget - done[k], 0)

    per_cell = {k: flop_hours([k], config, left, np.median(rate)) for k in todo}

    def hours(cells):
        return sum(per_cell[k] for k in cells)

    rows = {}
    for k in todo:
        rows.setdefault((k.model, k.task, k.method, k.modules, k.rank), []).append(k)
    for (model, task, method, modules, rank), group in rows.items():
        lengths = sorted({k.length for k in group})
        h = hours(group)
        print(
            f"  {model:<12} {task:<13} {method:<9} {modules:<16} rank {rank:<3} lengths "
            f"{lengths}, {len(group)} cells: {0.3 * h:5.1f}-{h:5.1f} h"
        )
    total = hours(todo)
    print(
        f"\nin all: about {0.3 * total:.0f}-{total:.0f} single-core hours "
        f"({0.15 * total:.0f}-{total / 2:.0f} h of wall time on two workers)"
    )


def seconds_per_flop(ds) -> np.ndarray:
    """``collect.cost.seconds_per_flop``, or exit saying why the speed cannot be measured."""
    from collect.cost import seconds_per_flop as measured
    from collect.errors import CollectError

    try:
        return measured(ds)
    except CollectError as exc:
        sys.exit(str(exc))


def step_costs(ds, budget=None):
    """Median seconds per training step by task and length, and the cost of what is left.

    What is left is the sweep's pending cells (:func:`collect.sweep.pending_cells` on the
    shipped sweep directory), each costed by its estimated FLOPs at the budget and the seconds
    per FLOP measured on the dataset's finished cells (as ``--price`` does); cells that
    memorize stop earlier, so the lower figure assumes they stop at 30 % of the budget. With
    ``budget`` larger than the sweep's, the collected cells that stopped at the sweep's budget
    are costed too: the extra steps where a saved state lets them resume (``collect run
    --extend-from``), every step where they have none.
    """
    from collect.config import load_config
    from collect.store import state_path
    from collect.sweep import pending_cells

    header("Seconds per training step (median over collected cells, one thread)")
    print(step_cost_table(ds).unstack("length").round(2).to_string())
    out_dir = os.path.join(ROOT, "data", "smollm2_cpu")
    if not os.path.isdir(out_dir):
        return
    rate = np.median(seconds_per_flop(ds))
    config = load_config(os.path.join(ROOT, SWEEP))
    swept = config.train.max_steps
    budget = budget or swept
    todo = pending_cells(config, out_dir)
    hours = flop_hours(todo, config, lambda k: budget, rate)
    print(
        f"\n{len(todo)} cells of {SWEEP} left: about {0.3 * hours:.0f}-{hours:.0f} "
        f"single-core hours at a {budget}-step budget (stopping at 30 % of it, or running "
        "all of it)"
    )
    if budget > swept:
        pending = set(todo)
        at_cap = [k for k in config.cells() if k not in pending and _stopped_at(ds, k) == swept]
        resumable = [k for k in at_cap if state_path(out_dir, k).exists()]
        rerun = [k for k in at_cap if k not in resumable]
        extra = flop_hours(
            resumable, config, lambda k: budget - swept, rate, once=False
        ) + flop_hours(rerun, config, lambda k: budget, rate)
        print(
            f"plus {len(at_cap)} collected cells stopped at the {swept}-step budget "
            f"({len(resumable)} resumable from a saved state, {len(rerun)} "
            f"re-run): up to {extra:.0f} single-core hours"
        )


def _stopped_at(ds, key):
    """Steps a collected cell ran (NaN when it is not in ``ds``)."""
    where = dataclasses.asdict(key)
    where["objective"] = where.pop("method")  # the contract's name of the training method
    where = {d: v for d, v in where.items() if d in ds["steps"].dims}
    try:
        return float(ds["steps"].sel(where))
    except KeyError:
        return float("nan")


if __name__ == "__main__":
    main()
