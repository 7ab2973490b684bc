"""benchmarks/resume_exactness.py: a chain of time-limited runs against one uncut run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from collect.config import config_from_dict
from collect.store import cell_path
from collect.sweep import run_sweep
from collect.timelimit import TickingClock

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from resume_exactness import compare_cells, main, run_with_cuts  # noqa: E402


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_sweep):
    """The tiny long-context sweep run uncut, and again cut every 40 clock ticks."""
    grid = [{"tasks": ["long_context"], "random_ratios": [1.0]}]
    config = config_from_dict(tiny_sweep(grid=grid))
    root = tmp_path_factory.mktemp("resume")
    run_sweep(config, root / "straight", progress=False)
    cuts = run_with_cuts(config, root / "cut", 40 / 60, clock=TickingClock())
    return config, root, cuts


def test_cut_runs_resume_to_the_uncut_cells_bit_for_bit(two_runs):
    config, root, cuts = two_runs
    assert cuts and all(step > 0 for step in cuts), "the limit must fall inside cells"
    table = compare_cells(config, root / "straight", root / "cut")
    assert len(table) == len(config.cells())
    assert table["identical"].all(), table.to_string()
    assert table["first_differing_step"].isna().all()
    assert (table["relative_difference"] == 0).all()


def test_a_changed_loss_is_found_at_its_step(two_runs, tmp_path):
    config, root, _ = two_runs
    key = config.cells()[0]
    copy = tmp_path / "cut"
    (copy / "cells").mkdir(parents=True)
    for other in config.cells():
        src = cell_path(root / "cut", other)
        (copy / "cells" / src.name).write_bytes(src.read_bytes())
    ds = xr.load_dataset(cell_path(copy, key))
    step = int(ds["loss_curve"][ds["loss_curve"].dims[0]].values[2])
    ds["loss_curve"].values[2] = np.nextafter(ds["loss_curve"].values[2], np.inf)
    ds.to_netcdf(cell_path(copy, key))
    table = compare_cells(config, root / "straight", copy).set_index("cell")
    row = table.loc[key.slug()]
    assert not row["identical"] and row["differing"] == "loss_curve"
    assert row["first_differing_step"] == step
    assert table.drop(key.slug())["identical"].all()
    assert not math.isnan(row["loss_reduction"])


def test_the_command_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "old").write_text("x")
    with pytest.raises(SystemExit, match="not empty"):
        main([str(REPO / "sweeps" / "resume_probe.toml"), "--out", str(tmp_path)])
