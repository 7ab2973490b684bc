"""analysis/11_next_cells.py on a tiny collected sweep with cells still pending."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_next_cells_orders_a_sweeps_pending_cells(tmp_path, tiny_sweep):
    import json

    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    raw = tiny_sweep(
        defaults={"models": ["tiny-random"], "modules": ["mlp@2"], "seeds": [0]},
        train={"max_steps": 3, "log_every": 1},
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0], "ranks": [1], "lengths": [20]}],
    )
    out = tmp_path / "cells"
    run_sweep(config_from_dict(raw), out, progress=False, merge_to=tmp_path / "d.nc")
    # the same sweep, grown: 5 more cells pending, one of them certain to be memorized
    raw["grid"][0].update(ranks=[1, 2, 64], lengths=[20, 40])
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(raw))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    script = os.path.join(ROOT, "analysis", "11_next_cells.py")
    args = [str(tmp_path / "d.nc"), "--sweep", str(sweep), "--out", str(out)]
    theta = ["--theta", "C=3,alpha=0.6,beta=0.5,b=0,sigma=0.1", "--markdown"]
    run = subprocess.run(
        [sys.executable, script, *args, *theta],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("pending cells in the order"))
    table = [ln.strip("| ").split(" | ") for ln in lines[start + 3 :]]
    rows = table[: next(i for i, r in enumerate(table) if r == [""])]
    assert len(rows) == 5  # every pending cell, once
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    # rank 64 is predicted memorized (it adds nothing to the fit): last, with the reason
    assert [r[2] for r in rows[-2:]] == ["64", "64"]
    assert all("memorized" in r[6] for r in rows[-2:]) and rows[0][6] == ""
    assert "se_alpha (next_cells)" in run.stdout and "corr (sweep order)" in run.stdout
    bad = subprocess.run(
        [sys.executable, script, *args, "--theta", "C=3"], env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "--theta expects" in bad.stderr


def test_next_cells_orders_carriers_by_their_size_knob_and_skips_shared_cells(tmp_path, tiny_sweep):
    # a carrier sweep: the KV prefix sized by m (kv:1@1, kv:2@1, ...) is one law, not one
    # setting per spec; cells another sweep directory finished are copied, not pending.
    # 6 cells: kv:{1,2,4}@1 at l=20, 40; this directory holds l=40, the other kv:1@1 at 20
    import json

    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    grid = {"tasks": ["long_context"], "random_ratios": [1.0], "ranks": [1], "lengths": [20]}
    raw = tiny_sweep(
        defaults={"models": ["tiny-random"], "modules": ["kv:1@1"], "seeds": [0]},
        train={"max_steps": 3, "log_every": 1},
        grid=[grid],
    )
    run_sweep(config_from_dict(raw), tmp_path / "other", progress=False)
    mine = tmp_path / "cells"
    raw["grid"][0].update(lengths=[20, 40], modules=["kv:1@1", "kv:2@1", "kv:4@1"])
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(raw))
    first = config_from_dict({**raw, "grid": [{**raw["grid"][0], "lengths": [40]}]})
    run_sweep(first, mine, progress=False, merge_to=tmp_path / "d.nc")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    script = os.path.join(ROOT, "analysis", "11_next_cells.py")
    args = [str(tmp_path / "d.nc"), "--sweep", str(sweep), "--out", str(mine)]
    args += ["--share-cells-with", str(tmp_path / "other")]
    theta = ["--theta", "C=3,alpha=0.6,beta=0.5,b=0,sigma=0.1", "--markdown"]
    run = subprocess.run(
        [sys.executable, script, *args, *theta], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "1 pending cell(s) finished in" in out  # kv:1@1 at l=20: the other directory's
    assert out.count("Next cells:") == 1 and "kv@1 (2 pending)" in out and "sized by m" in out
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("pending cells in the order"))
    table = [ln.strip("| ").split(" | ") for ln in lines[start + 3 :]]
    rows = table[: next(i for i, r in enumerate(table) if r == [""])]
    got = sorted((float(r[2]), int(r[3])) for r in rows)  # (knob m, length)
    assert got == [(2.0, 20), (4.0, 20)]  # l=40 was collected here, kv:1@1 at 20 there
    # --propose: also cells one step beyond the grid (knob 8 = 2 x 4, knob 3 between 2 and 4,
    # length 80 = 2 x 40, sequence 1)
    run = subprocess.run(
        [sys.executable, script, *args, *theta, "--propose", "--top", "50"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("pending and proposed"))
    table = [ln.strip("| ").split(" | ") for ln in lines[start + 3 :]]
    rows = table[: next(i for i, r in enumerate(table) if r == [""])]
    points = {(float(r[2]), int(r[3]), r[-1]) for r in rows}
    assert {(2.0, 20, "True"), (4.0, 20, "True"), (8.0, 80, "False"), (1.0, 80, "False")} <= points
    assert (3.0, 40, "False") in points
    # and on the next unused target sequence (1): 5 knobs x 3 lengths x 2 sequences, minus
    # the 6 the sweep holds (all on sequence 0)
    assert {int(r[4]) for r in rows if r[-1] == "False"} == {0, 1}
    assert len(rows) == 2 + (5 * 3 * 2 - 6)


def test_proposed_sizes_between_neighbours_are_whole_log_scale_midpoints():
    """The issue's ranks {1, 2, 3, 4, 6, 8}: 3 and 6 lie between 2, 4 and 8; none in 1-2."""
    import importlib

    sys.path.insert(0, os.path.join(ROOT, "analysis"))
    between = importlib.import_module("11_next_cells").between
    assert between([1, 2, 4, 8]) == [3, 6]
    assert between([1, 2]) == [] and between([2, 8]) == [4] and between([4]) == []


def test_hours_before_the_first_cell_finishes_read_the_finished_cells_errors():
    """A first cell of 20 hours: after 5 and 10 hours the design is today's, not empty."""
    import importlib

    import numpy as np
    import pandas as pd

    sys.path.insert(0, os.path.join(ROOT, "analysis"))
    script = importlib.import_module("11_next_cells")
    order = pd.DataFrame(
        {"hours": [20.0, 2.0], "informative": [True, True], "se_alpha": [0.06, 0.05]}
        | {"se_beta": [0.05, 0.04], "corr": [0.96, 0.95]}
    )
    now = {"se_alpha": 0.078, "se_beta": 0.070, "corr": 0.975}
    table = script.compare_orders(order, order, now).set_index("hours")
    assert table.loc[5.0, "se_alpha (next_cells)"] == 0.078
    assert table.loc[10.0, "corr (sweep order)"] == 0.975
    assert table.loc[22.0, "se_beta (next_cells)"] == 0.04  # both cells in
    fresh = script.compare_orders(order, order, None).set_index("hours")
    assert np.isinf(fresh.loc[5.0, "se_alpha (next_cells)"])
    assert np.isnan(fresh.loc[5.0, "corr (next_cells)"])
