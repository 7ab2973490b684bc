"""analysis/16_recall_cost.py: FLOPs to first exact recall, on a tiny carrier sweep."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def recall_data(tmp_path_factory, tiny_sweep):
    """A KV prefix and a LoRA adapter that both recall 12 random tokens, 2 sequences."""
    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "ranks": [1],
            "lengths": [12],
            "seeds": [0],
            "data_seeds": [0, 1],
            "tasks": ["long_context"],
            "random_ratios": [1.0],
        },
        train={"max_steps": 300, "log_every": 1, "lr": 5e-2, "stop_when_memorized": True},
        grid=[{"modules": ["kv:2@1"]}, {"modules": ["mlp_block@1"], "ranks": [3]}],  # 384 each
    )
    out = tmp_path_factory.mktemp("recall")
    ds = run_sweep(config_from_dict(raw), out, progress=False, merge_to=out / "d.nc")
    return ds, out / "d.nc"


def run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    script = os.path.join(ROOT, "analysis", "16_recall_cost.py")
    return subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_first_exact_step_is_counted_in_flops_to_recall(recall_data):
    ds, path = recall_data
    steps = ds["first_exact_step"].where(ds["status"] == "ok")
    assert int(steps.notnull().sum()) == 4, steps.values  # every cell recalled exactly
    assert bool((steps <= ds["steps"]).where(steps.notnull(), True).all())
    out = run(path, "--reference", path)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "Training FLOPs to first exact recall, per cell" in text
    assert "first recalls its targets exactly after" in text  # the verdict at matched size
    assert "ratio per sequence" in text and "cheaper on" in text  # and its paired ratios
    assert "largest relative gap in dL: 0.00e+00 over 4 cells" in text  # itself: identical


def test_the_flops_to_recall_stop_at_the_first_exact_step(recall_data):
    module = _script()
    ds, _ = recall_data
    cells = module.recall_cells(ds)
    run_flops = cells["flops"] - cells["steps"] * cells["flops_per_step"]  # the prefix, once
    expected = run_flops + cells["first_exact_step"] * cells["flops_per_step"]
    np.testing.assert_allclose(cells["flops_to_recall"], expected, rtol=1e-12)
    assert (cells["flops_to_recall"] <= cells["flops"]).all()


def test_a_dataset_without_the_step_says_how_to_get_it(recall_data, tmp_path):
    ds, _ = recall_data
    old = tmp_path / "old.nc"
    ds.drop_vars("first_exact_step").to_netcdf(old)
    out = run(old)
    assert out.returncode != 0
    assert "no first_exact_step" in out.stderr and "carrier_recall_cost.toml" in out.stderr


def test_also_adds_the_other_datasets_recalled_cells_and_keeps_datas_own(recall_data, tmp_path):
    """A carrier only another sweep holds joins the verdict; a shared cell stays DATA's."""
    ds, path = recall_data
    kv = ds.sel(modules=["kv:2@1"]).copy(deep=True)
    kv["first_exact_step"].loc[{"data_seed": 0}] = kv["first_exact_step"].sel(data_seed=0) + 1
    other = ds.copy(deep=True)
    lost = {"modules": "mlp_block@1", "data_seed": 1}
    other["first_exact_step"].loc[lost] = np.nan
    other["first_exact"].loc[lost] = "unknown"  # collected before the step was recorded
    module = _script()
    cells = module.gathered_cells(kv, [other])
    by = cells.set_index(["modules", "data_seed"])["first_exact_step"]
    mine = module.recall_cells(kv).set_index("data_seed")["first_exact_step"]
    theirs = module.recall_cells(other).set_index(["modules", "data_seed"])["first_exact_step"]
    assert by[("kv:2@1", 0)] == mine[0] == theirs[("kv:2@1", 0)] + 1  # DATA's, not OTHER's
    assert by[("kv:2@1", 1)] == mine[1]
    assert list(by.loc["mlp_block@1"].index) == [0]  # the other's unknown cell is not listed
    other["first_exact"].loc[lost] = "never"  # known never to have recalled: it is listed
    never = module.gathered_cells(kv, [other]).set_index(["modules", "data_seed"])
    assert np.isnan(never.loc[("mlp_block@1", 1), "first_exact_step"])
    assert module.summary(never.reset_index())["unknown"].sum() == 0
    assert module.verdict(module.recall_cells(kv)) == []  # one carrier alone: nothing to compare
    (line,) = module.verdict(cells)
    assert "ratio per sequence" in line and "(sequence 0)" in line and "(sequence 1)" not in line
    kv.to_netcdf(tmp_path / "kv.nc")
    out = run(tmp_path / "kv.nc", "--also", path, "--reference", path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "first recalls its targets exactly after" in out.stdout


def test_the_verdict_leaves_out_a_carrier_that_never_recalled():
    """A third carrier with no exact recall on any sequence neither blocks nor joins it."""
    import pandas as pd

    point = dict(task="t", n_params=8, length=4)
    rows = [
        dict(point, data_seed=seq, modules=m, flops_to_recall=f, first_exact_step=s)
        for seq in (0, 1)
        for m, f, s in (("a", 1e9 * (1 + seq), 10), ("b", 3e9, 30), ("c", np.nan, np.nan))
    ]
    (line,) = _script().verdict(pd.DataFrame(rows))
    assert line.startswith("t, at 8 trainable scalars and l = 4: a first recalls")
    assert "fewer than b" in line and " c " not in line


def _script():
    sys.path.insert(0, os.path.join(ROOT, "analysis"))
    sys.path.insert(0, os.path.join(ROOT, "paper_figures"))
    import importlib

    return importlib.import_module("16_recall_cost")


def test_the_verdict_pairs_the_carriers_on_each_target_sequence():
    import pandas as pd

    flops = pd.DataFrame({"a": [1.0, 4.0, 2.0], "b": [2.0, 3.0, 2.5]}, index=[0, 1, 5])
    text = _script()._paired(flops, "a", "b")
    assert text.startswith(
        "ratio per sequence 2.00 (sequence 0), 0.75 (sequence 1), 1.25 (sequence 5): "
        "a cheaper on 2 of 3; geometric mean 1.23 ["
    )
    one = _script()._paired(flops.iloc[:1], "a", "b")
    assert one == "ratio per sequence 2.00 (sequence 0): a cheaper on 1 of 1"  # no interval


def test_the_paired_ratio_interval_covers_the_true_ratio_at_its_level():
    """Calibration on known truth: log ratios drawn normal around log 1.5 over sequences."""
    import pandas as pd

    _script()  # puts paper_figures on the path
    from carriers import paired_ratio

    gen = np.random.default_rng(0)
    for n in (2, 3, 6):
        hits = 0
        for _ in range(2000):
            ratio = pd.Series(np.exp(np.log(1.5) + 0.4 * gen.standard_normal(n)))
            _, low, high = paired_ratio(ratio)
            hits += low <= 1.5 <= high
        assert 0.935 <= hits / 2000 <= 0.965, (n, hits)  # binomial range of 95 % at 2,000
