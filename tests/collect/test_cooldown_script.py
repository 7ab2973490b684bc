"""analysis/13_cooldown.py on a tiny constant sweep and its cool-down (via --extend-from)."""

import json
import os
import subprocess
import sys

import xarray as xr

from collect.config import config_from_dict
from collect.store import cell_path
from collect.sweep import run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _table(stdout: str, first_column: str) -> list[dict]:
    """The Markdown table of the script's output whose header starts with ``first_column``."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_column} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(head, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def test_cooldown_study_pairs_each_cooled_cell_with_its_constant_cell(tmp_path, tiny_sweep):
    grid = [{"tasks": ["long_context"], "random_ratios": [1.0], "ranks": [1, 2, 4]}]
    train = {"max_steps": 6, "log_every": 1, "lr": 3e-3, "patience": 1000}
    constant = tiny_sweep(train=train, grid=grid)
    cooled = tiny_sweep(
        train={**train, "max_steps": 9, "schedule": "cooldown", "cooldown_steps": 3}, grid=grid
    )
    run_sweep(config_from_dict(constant), tmp_path / "constant", progress=False)
    run_sweep(
        config_from_dict(cooled),
        tmp_path / "cooled",
        progress=False,
        extend_from=tmp_path / "constant",
    )
    for name, raw in (("constant", constant), ("cooled", cooled)):
        (tmp_path / f"{name}.json").write_text(json.dumps(raw))
    script = os.path.join(ROOT, "analysis", "13_cooldown.py")
    args = ["--markdown", "--plot", str(tmp_path / "gain.png")]
    for name in ("cooled", "constant"):
        args += [f"--{name}", str(tmp_path / f"{name}.json"), str(tmp_path / name)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    run = subprocess.run(
        [sys.executable, script, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "gain.png").stat().st_size > 0
    rows = _table(run.stdout, "rank")
    keys = config_from_dict(cooled).cells()
    assert len(rows) == len(keys) == 6
    for row, key in zip(rows, keys, strict=True):
        assert (int(row["rank"]), int(row["length"])) == (key.rank, key.length)
        assert row["state"] == "done" and row["how"] == "resumed" and row["step"] == "9"
        with (
            xr.open_dataset(cell_path(tmp_path / "constant", key)) as before,
            xr.open_dataset(cell_path(tmp_path / "cooled", key)) as after,
        ):
            gain = 100 * (float(after["loss_reduction"]) / float(before["loss_reduction"]) - 1)
            assert float(row["dL_constant"]) == round(float(before["loss_reduction"]), 3)
        assert abs(float(row["gain_pct"]) - gain) <= 0.005 + 1e-9
    lengths = _table(run.stdout, "length")
    assert [int(r["count"]) for r in lengths] == [3, 3]
    assert "the law on the same cells, before and after the cool-down:" in run.stdout
    law = _table(run.stdout, "cells")
    assert [r["cells"] for r in law] == ["constant lr", "cooled down"]
