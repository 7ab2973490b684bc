"""Step 1 - collect: how data/smollm2_cpu.nc was produced, and what it holds.

The collection (SmolLM2-135M-Instruct on 2 CPU cores, sweep sweeps/smollm2_cpu.toml) takes
hours, so by default this script only prints the commands and the dataset's provenance
(config, package versions, git revision, creation time, how many cells are collected per
setting and method). Pass --run to start (or resume) the collection itself: finished cells
are kept, a killed sweep resumes where it stopped.

    python analysis/01_collect.py [DATA.nc]
    python analysis/01_collect.py --budget 3000  # what finishing at a larger budget costs
    python analysis/01_collect.py --price sweeps/law_cpu.toml --out data/law_cpu
                                                 # what another sweep's pending cells cost
    python analysis/01_collect.py --run          # hours; resumes
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import MERGE_CMD, ROOT, header, parser  # noqa: E402

SWEEP = "sweeps/smollm2_cpu.toml"
COMMANDS = [  # = make collect: two workers share the directory by claiming cells
    f"collect run {SWEEP} --out data/smollm2_cpu &",
    f"collect run {SWEEP} --out data/smollm2_cpu",
    MERGE_CMD,
]


def main():
    ap = parser(__doc__)
    ap.add_argument("--run", action="store_true", help="run the collection (hours)")
    ap.add_argument("--budget", type=int, default=None, metavar="STEPS",
                    help="cost what is left at this step budget instead of the sweep's")
    ap.add_argument("--price", metavar="SWEEP", default=None,
                    help="cost the pending cells of this sweep file (step costs measured on "
                         "DATA) and stop")
    ap.add_argument("--out", metavar="DIR", default=None,
                    help="with --price: the sweep's directory (finished cells are not costed)")
    args = ap.parse_args()
    if args.price:
        import xarray as xr

        price_sweep(xr.load_dataset(args.data), args.price, args.out, args.budget)
        return
    header("Collection commands (run from the repository root)")
    print("OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1  # one thread per worker on 2 cores")
    for c in COMMANDS:
        print("  " + c)
    if args.run:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        shards = [subprocess.Popen([sys.executable, "-m", "collect", "run", SWEEP, "--out",
                                    "data/smollm2_cpu"], cwd=ROOT, env=env)
                  for i in range(2)]
        for p in shards:
            p.wait()
        subprocess.run(MERGE_CMD.split(), cwd=ROOT, check=True)
    if args.synthetic:
        print("\n(--synthetic: nothing to describe; synthetic data are generated in memory)")
        return
    if not os.path.exists(args.data):
        cells = os.path.join(ROOT, "data", "smollm2_cpu", "cells")
        n = len(os.listdir(cells)) if os.path.isdir(cells) else 0
        print(f"\nno dataset at {args.data} yet ({n} finished cell files under {cells}); "
              f"merge them with:\n  {MERGE_CMD}")
        return
    import xarray as xr

    ds = xr.load_dataset(args.data)
    header(f"Provenance of {args.data}")
    for k in ("created", "git_revision", "schema_version", "fingerprint", "synthetic",
              "n_cells", "n_cells_done", "complete"):
        if k in ds.attrs:
            print(f"{k:>16}: {ds.attrs[k]}")
    for k in ("versions", "config"):
        if k in ds.attrs:
            try:
                txt = json.dumps(json.loads(ds.attrs[k]), indent=1)
            except ValueError:
                txt = str(ds.attrs[k])
            print(f"\n{k}:\n{txt[:3000]}")
    header("Dimensions")
    print(", ".join(f"{d}={n}" for d, n in ds.sizes.items()))
    header("Cells by setting, method and status (grid cells outside the sweep are not_run)")
    st = ds["status"].to_dataframe().reset_index()
    keys = [d for d in ("task", "random_ratio", "objective", "method") if d in st]
    tab = st.groupby(keys)["status"].value_counts().unstack(fill_value=0)
    tab = tab[(tab.drop(columns=["not_run"], errors="ignore").sum(axis=1) > 0)]
    print(tab.to_string() if len(tab) else "(no collected cells yet)")
    if "wall_time" in ds:
        wt = ds["wall_time"].values
        wt = wt[np.isfinite(wt)]
        if wt.size:
            print(f"\nwall time per collected cell: median {np.median(wt):.0f} s, "
                  f"total {wt.sum() / 3600:.2f} h over {wt.size} cells")
            step_costs(ds, args.budget)
    print("\nvariables: " + ", ".join(sorted(map(str, ds.data_vars))))


def step_cost_lines(ds):
    """Seconds per training step against target length, a line per task.

    Medians over the dataset's ok SFT and MemFT cells (one thread), then a least-squares line
    through the medians of each length: a step's cost grows with the tokens it runs.
    """
    cells = ds[["wall_time", "steps", "status"]].to_dataframe().reset_index()
    done = cells[cells["status"] == "ok"]
    per_step = (done["wall_time"] / done["steps"].clip(lower=1)).groupby(
        [done["task"], done["length"]]).median()
    lines = {task: np.polyfit(per_step.loc[task].index.to_numpy(float),
                              per_step.loc[task].to_numpy(), 1)
             for task in per_step.index.get_level_values("task").unique()}
    return per_step, lines


def cell_hours(keys, lines, budget):
    """Single-core hours of ``keys`` when each runs ``budget`` steps."""
    return sum(budget * np.polyval(lines[k.task], k.length) for k in keys) / 3600


def price_sweep(ds, sweep, out_dir=None, budget=None):
    """Print what the pending cells of ``sweep`` cost, per block of cells and in all.

    Each cell is costed at the step budget (the upper figure: an unmemorized cell that runs
    to its cap) and at 30 % of it (a cell that memorizes or plateaus early).
    """
    from collect.config import load_config
    from collect.sweep import pending_cells

    _, lines = step_cost_lines(ds)
    config = load_config(sweep)
    budget = budget or config.train.max_steps
    keys = config.cells()
    todo = pending_cells(config, out_dir) if out_dir and os.path.isdir(out_dir) else keys
    header(f"Cost of {sweep}: {len(todo)} of {len(keys)} cells pending, {budget}-step cap")
    rows = {}
    for k in todo:
        group = (k.task, k.method, k.rank)
        rows.setdefault(group, []).append(k)
    for (task, method, rank), group in rows.items():
        hours = cell_hours(group, lines, budget)
        lengths = sorted({k.length for k in group})
        print(f"  {task:<13} {method:<9} rank {rank:<3} lengths {lengths}, "
              f"{len(group)} cells: {0.3 * hours:5.1f}-{hours:5.1f} h")
    hours = cell_hours(todo, lines, budget)
    print(f"\nin all: about {0.3 * hours:.0f}-{hours:.0f} single-core hours "
          f"({0.15 * hours:.0f}-{hours / 2:.0f} h of wall time on two workers)")


def step_costs(ds, budget=None):
    """Median seconds per training step by task and length, and the cost of what is left.

    What is left is the sweep's pending cells (:func:`collect.sweep.pending_cells` on the
    shipped sweep directory). Each is costed at the budget times its task's step cost (a
    line in the target length through the measured medians); cells that memorize stop
    earlier, so the lower figure assumes they stop at 30 % of the budget. With ``budget``
    larger than the sweep's, the collected cells that stopped at the sweep's budget are
    costed too: the extra steps where a saved state lets them resume (``collect run
    --extend-from``), every step where they have none.
    """
    from collect.config import load_config
    from collect.store import state_path
    from collect.sweep import pending_cells

    per_step, lines = step_cost_lines(ds)
    header("Seconds per training step (median over collected cells, one thread)")
    print(per_step.unstack("length").round(2).to_string())
    out_dir = os.path.join(ROOT, "data", "smollm2_cpu")
    if not os.path.isdir(out_dir):
        return
    config = load_config(os.path.join(ROOT, SWEEP))
    swept = config.train.max_steps
    budget = budget or swept
    todo = pending_cells(config, out_dir)
    hours = cell_hours(todo, lines, budget)
    print(f"\n{len(todo)} cells of {SWEEP} left: about {0.3 * hours:.0f}-{hours:.0f} "
          f"single-core hours at a {budget}-step budget (stopping at 30 % of it, or running "
          "all of it)")
    if budget > swept:
        pending = set(todo)
        at_cap = [k for k in config.cells() if k not in pending and _stopped_at(ds, k) == swept]
        resumable = [k for k in at_cap if state_path(out_dir, k).exists()]
        extra = sum((budget - swept if k in resumable else budget)
                    * np.polyval(lines[k.task], k.length) for k in at_cap) / 3600
        print(f"plus {len(at_cap)} collected cells stopped at the {swept}-step budget "
              f"({len(resumable)} resumable from a saved state, {len(at_cap) - len(resumable)} "
              f"re-run): up to {extra:.0f} single-core hours")


def _stopped_at(ds, key):
    """Steps a collected cell ran (NaN when it is not in ``ds``)."""
    try:
        return float(ds["steps"].sel(dataclasses.asdict(key)))
    except KeyError:
        return float("nan")


if __name__ == "__main__":
    main()
