"""The numbered analysis scripts run end to end on synthetic data (fast)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: what each script prints once its analysis has run (not just the script)
SCRIPTS = {
    "01_collect.py": ["collect run sweeps/", "(--synthetic: nothing to describe"],
    "02_fit.py": ["# SYNTHETIC cells data", "R-squared", "Profile-likelihood intervals:"],
    "03_compare.py": ["# SYNTHETIC cells data", "best by AICc: "],
    "04_transition.py": ["# SYNTHETIC tokens data", "threshold p* = "],
    "05_capacity_memft.py": [
        "rank needed for recall",
        "Bits stored per adapter parameter",
        "SFT gradient budget spent on tokens",
        "MemFT savings over SFT",
    ],
}
#: the scripts catch a LawfitError, print one of these and still exit 0
FAILED = ("not fitted:", "not possible:", "not analysable:", "not predicted:", "not computed:")


def run_script(script: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``analysis/<script>`` single-threaded, headless, from the repository root."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "analysis", script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_runs_on_synthetic_data(script):
    out = run_script(script, "--synthetic", "--bootstrap", "20")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    for text in SCRIPTS[script]:
        assert text in out.stdout, (text, out.stdout[-2000:])
    assert not [ln for ln in out.stdout.splitlines() if any(f in ln for f in FAILED)]


def test_missing_dataset_says_how_to_merge(tmp_path):
    out = run_script("02_fit.py", str(tmp_path / "none.nc"), timeout=60)
    assert out.returncode != 0
    assert "collect merge" in out.stderr


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("01_collect.py", ["--price", "sweeps/law_cpu_converged.toml"]),
        ("01_collect.py", []),
        ("07_capacity_bits.py", []),
    ],
)
def test_a_folder_or_a_file_that_is_not_netcdf_gets_one_message(tmp_path, script, args):
    """Not a traceback from the NetCDF library: what was expected and how to merge the cells."""
    (tmp_path / "notes.nc").write_text("not a dataset")
    for given, says in ((tmp_path, "is a folder"), (tmp_path / "notes.nc", "as NetCDF")):
        out = run_script(script, str(given), *args, timeout=60)
        assert out.returncode != 0
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert says in out.stderr and "collect merge" in out.stderr


def test_figures_script_synthetic(tmp_path):
    out = run_script(
        "06_figures.py",
        *("--synthetic", "--out", str(tmp_path), "--bootstrap", "20", "--formats", "png"),
        *("--dpi", "60", "--only", "fig2a_law_vs_rank", "methods"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "fig2a_law_vs_rank__synthetic.png").exists()
    assert (tmp_path / "methods__synthetic.png").exists()


def _script(name: str):
    """Import an analysis script (its file name starts with a digit) as a module."""
    import importlib.util

    path = os.path.join(ROOT, "analysis", name)
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_protocol_study_picks_the_cheapest_protocol_within_tolerance():
    import pandas as pd

    study = _script("08_protocol_study.py")
    rows = [  # protocol, rank, length, ΔL, steps
        ("constant", 1, 128, 8.77, 1755),
        ("constant", 1, 256, 5.60, 1300),
        ("decay", 1, 128, 8.78, 1806),
        ("decay", 1, 256, 5.74, 1500),
        ("cheap", 1, 128, 8.00, 600),
        ("cheap", 1, 256, 5.70, 600),
    ]
    table = pd.DataFrame(rows, columns=["protocol", "rank", "length", "delta_L", "steps"])
    table["state"] = "done"
    table["share_of_best"] = table["delta_L"] / table.groupby(["rank", "length"])[
        "delta_L"
    ].transform("max")
    chosen, why = study.choose(table)
    # "constant" is 2.4 % short of the best on l = 256 and "cheap" 8.9 % on l = 128
    assert chosen == "decay" and "3306 steps" in why
    pending = table.copy()
    pending.loc[pending["protocol"] == "decay", "state"] = "pending"
    pending.loc[pending["protocol"] == "decay", "delta_L"] = float("nan")
    assert study.choose(pending)[0] is None  # no cell finished under every protocol


def test_protocol_study_compares_seed_0_and_measures_the_spread_between_seeds():
    import pandas as pd

    study = _script("08_protocol_study.py")
    rows = [  # protocol, rank, length, seed, state, ΔL, steps
        ("lr 1e-2", 1, 128, 0, "done", 8.90, 3000),
        ("lr 1e-2", 1, 128, 1, "done", 9.00, 3000),
        ("lr 3e-2", 1, 128, 0, "done", 8.99, 3000),
        ("lr 3e-2", 1, 128, 1, "pending", float("nan"), float("nan")),
    ]
    cells = pd.DataFrame(
        rows, columns=["protocol", "rank", "length", "seed", "state", "delta_L", "steps"]
    )
    table = study.study_table(cells)  # the comparison between protocols: seed 0 only
    assert len(table) == 2 and "seed" not in table
    assert table.set_index("protocol").loc["lr 1e-2", "share_of_best"] == 8.90 / 8.99
    spread = study.seed_spread(cells)  # a protocol with two finished seeds on one cell
    (row,) = spread.to_dict("records")
    assert row["protocol"] == "lr 1e-2" and (row["dL_seed_0"], row["dL_seed_1"]) == (8.9, 9.0)
    assert row["spread_pct"] == pytest.approx(100 * 0.1 / 8.95, rel=1e-12)
    assert study.seed_spread(cells[cells["seed"] == 0]).empty


def test_carrier_lr_study_chooses_an_lr_per_carrier():
    """Memory tokens need the larger lr to come within 1 %; the KV prefix does not."""
    import pandas as pd

    study = _script("14_carrier_lr.py")
    rows = [  # lr, carrier, ΔL, steps
        ("1e-2", "memtok:4@20", 10.9, 6000),
        ("1e-1", "memtok:4@20", 11.6, 3000),
        ("1e-2", "kv:1@27", 6.30, 3100),
        ("1e-1", "kv:1@27", 6.32, 3400),
    ]
    table = pd.DataFrame(rows, columns=["protocol", "carrier", "delta_L", "steps"])
    table = table.assign(length=128, data_seed=0, state="done")
    best = table.groupby("carrier")["delta_L"].transform("max")
    table["share_of_best"] = table["delta_L"] / best
    got = study.choices(table)
    assert got["memtok:4@20"][0] == "1e-1" and "3000 steps" in got["memtok:4@20"][1]
    assert got["kv:1@27"][0] == "1e-2"  # 0.3 % short of the best, in fewer steps


def test_carrier_lr_study_runs_on_the_shipped_cells():
    pytest.importorskip("torch")
    out = run_script("14_carrier_lr.py")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "memtok:4@20" in out.stdout and "Choice per carrier" in out.stdout


def test_stop_rule_replay_finds_where_a_plateau_rule_fires():
    """A loss that falls 1 % a step, then stays flat from step 300: patience P fires at 300+P."""
    import numpy as np

    mod = _script("10_stop_rule.py")
    loss = np.r_[10.0 * 0.99 ** np.arange(300), np.full(700, 10.0 * 0.99**299)]
    frac = np.zeros_like(loss)
    for patience in (50, 200):
        assert mod.replay(loss, frac, patience, 1e-3) == 299 + patience
    # an oscillation above a still-falling trend: the short rule fires, the long one does not
    trend = 10.0 - 0.0015 * np.arange(1000)
    wobble = np.where((np.arange(1000) // 60) % 2 == 1, 0.2, 0.0)
    assert mod.replay(trend + wobble, frac, 50, 1e-3) < 200
    assert mod.replay(trend + wobble, frac, 200, 1e-3) == len(trend) - 1


def test_capacity_bits_script_runs_on_the_shipped_dataset():
    """analysis/07 reads data/smollm2_cpu.nc (its objective dim) and prints the three kinds."""
    pytest.importorskip("torch")
    data = os.path.join(ROOT, "data", "smollm2_cpu.nc")
    out = run_script("07_capacity_bits.py", data, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cells of the law fit" in out.stdout and "- stored/param:" in out.stdout


def test_capacity_bits_sets_two_models_side_by_side_at_the_points_they_share():
    """Only design points held by both models; means and ranges over each model's cells."""
    import pandas as pd

    mod = _script("07_capacity_bits.py")
    point = dict(task="long_context", objective="sft", length=128)
    rows = [  # model, rank, data_seed, bits stored, n_params, loss, accuracy, greedy tokens
        ("a", 1, 0, 1000.0, 100, 4.0, 0.25, 0.0),
        ("a", 1, 1, 1200.0, 100, 3.0, 0.50, 4.0),
        ("b", 1, 0, 900.0, 150, 5.0, 0.125, 0.0),
        ("a", 2, 0, 1900.0, 200, 0.3, 1.0, 128.0),  # b has no rank 2: not shown
    ]
    keys = ["model", "rank", "data_seed", "bits_stored", "n_params"]
    keys += ["loss_after", "token_accuracy", "greedy_tokens"]
    cells = pd.DataFrame([dict(point, **dict(zip(keys, r, strict=True))) for r in rows])
    side = mod.across_models(cells).set_index("model")
    assert list(side.index) == ["a", "b"] and set(side["rank"]) == {1}
    assert side.loc["a", "bits_stored"] == 1100.0
    assert (side.loc["a", "stored_min"], side.loc["a", "stored_max"]) == (1000.0, 1200.0)
    assert side.loc["a", "stored/param"] == 11.0 and side.loc["b", "stored/param"] == 6.0
    assert side.loc["a", "teacher_forced"] == 48.0 and side.loc["a", "greedy_tokens"] == 2.0
    assert (side.loc["a", "cells"], side.loc["a", "sequences"]) == (2, 2)
    assert mod.across_models(cells[cells.model == "a"]).empty  # one model: nothing to set beside


def test_collect_script_prices_what_is_left_of_the_shipped_sweep():
    """analysis/01 on the shipped data: pending cells and budget-stopped cells are costed."""
    pytest.importorskip("torch")
    out = run_script("01_collect.py", "--budget", "3000", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    import re

    stopped = re.search(r"plus (\d+) collected cells stopped at the 600-step budget", out.stdout)
    assert stopped and int(stopped.group(1)) > 0, out.stdout[-2000:]
    left = r"cells of sweeps/smollm2_cpu.toml left: about \d+-\d+ single-core"
    assert re.search(left, out.stdout)


def test_the_fit_over_target_sequences_prints_the_cluster_robust_interval(tmp_path):
    """Three target sequences: the bootstrap resamples them and the CR2 interval is shown."""
    from lawfit.testing import synthetic_dataset

    ds = synthetic_dataset(ranks=(1, 2, 4, 8), lengths=(64, 128, 256, 512), seeds=3, rng=0)
    ds.rename({"seed": "data_seed"}).to_netcdf(tmp_path / "three_targets.nc")
    out = run_script("02_fit.py", str(tmp_path / "three_targets.nc"), "--bootstrap", "20")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bootstrap resamples: target sequences (data_seed)" in out.stdout
    assert "Cluster-robust intervals over data_seed" in out.stdout, out.stdout[-2000:]
    assert not [ln for ln in out.stdout.splitlines() if any(f in ln for f in FAILED)]


def test_carrier_script_names_the_lr_of_each_carrier_in_a_combined_dataset():
    import json

    import numpy as np
    import xarray as xr

    study = _script("09_carriers.py")
    lr = [[json.dumps({"lr": 0.1}), ""], [json.dumps({"lr": 0.01}), json.dumps({"lr": 0.01})]]
    ds = xr.Dataset(
        {
            "status": (("modules", "length"), np.array([["ok", "not_run"], ["ok", "ok"]])),
            "protocol": (("modules", "length"), np.array(lr, dtype=object)),
        },
        coords={"modules": ["memtok:4@20", "mlp_block@20"], "length": [128, 256]},
    )
    assert study.protocol_notes(ds) == [
        "memtok:4@20: cells collected under [train] lr 0.1",
        "mlp_block@20: cells collected under [train] lr 0.01",
    ]
    assert study.protocol_notes(ds.drop_vars("protocol")) == []  # one sweep: one protocol


def _registry(
    tmp_path, readings: list[tuple[int, int, int, float, float, bool]], dataset: str
) -> str:
    """A predictions registry on ``dataset`` (rank, length, seq, low, high, held)."""
    text = ""
    for i, (rank, length, seq, low, high, held) in enumerate(readings):
        text += (
            f'[[prediction]]\nid = "p{i}"\nsession = 30\nwritten_in = "0000000"\n'
            f'dataset = "{dataset}"\nrank = {rank}\nlength = {length}\n'
            f'data_seed = {seq}\n[[prediction.reading]]\nform = "power_law"\n'
            f'kind = "cell of this sequence"\ncentre = {(low + high) / 2}\nlow = {low}\n'
            f"high = {high}\nheld_to = {str(held).lower()}\n\n"
        )
    path = tmp_path / "predictions.toml"
    path.write_text(text)
    return str(path)


def test_the_prediction_scorecard_reads_the_measured_cells_and_counts_the_misses(tmp_path):
    # rank 1, l = 1,024 on sequence 4 measured 2.986; rank 1 at l = 2,048 on sequence 0
    # is marked not yet run in a copy of the shipped file, so the pending path stays tested
    import xarray as xr

    with xr.open_dataset(os.path.join(ROOT, "data", "law_cpu_converged.nc")) as shipped:
        ds = shipped.load()
    at = dict(objective="sft", rank=1, length=2048, data_seed=0, seed=0)
    status = ds["status"].astype(object)
    status.loc[at] = "not_run"
    ds["status"] = status.astype(str)
    ds.to_netcdf(tmp_path / "partial.nc")
    path = _registry(
        tmp_path,
        [(1, 1024, 4, 2.9, 3.1, True), (1, 1024, 4, 3.0, 3.2, True), (1, 2048, 0, 2.0, 3.0, True)],
        str(tmp_path / "partial.nc"),
    )
    out = run_script("15_predictions.py", path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2.986" in out.stdout
    assert "held-to cell intervals: 1 of 2 measured cells inside" in out.stdout
    # 1 - 0.95**2 = 0.0975: as bad or worse with two 95 % intervals
    assert "P(at most 1 of 2 inside | every interval covers 95 %) = 0.098" in out.stdout
    assert "outside: p1 (session 30)" in out.stdout
    assert "pending (not yet measured): p2" in out.stdout


def test_a_law_carried_to_another_model_is_scored_apart_from_the_models_own():
    """Transfer readings get their own line; the law's record and P stay the law's."""
    import pandas as pd

    mod = _script("15_predictions.py")
    rows = [  # id, kind, inside
        ("own-1", "cell of this sequence", True),
        ("own-2", "cell of a new sequence", False),
        ("new-model-1", mod.TRANSFER, False),
        ("new-model-2", mod.TRANSFER, None),
    ]
    card = pd.DataFrame(
        [dict(id=i, session=47, kind=k, held_to=True, inside=x) for i, k, x in rows]
    )
    lines = mod.summary(card)
    assert lines[0] == "held-to cell intervals: 1 of 2 measured cells inside their 95 % interval"
    assert any(ln.endswith("0 of 1 measured inside their held-to interval") for ln in lines)
    assert "outside: new-model-1" not in " ".join(lines)
    assert lines[-1] == "pending (not yet measured): new-model-2"


def test_the_prediction_scorecard_refuses_a_registry_without_its_fields(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[prediction]]\nid = "x"\nrank = 1\n')
    out = run_script("15_predictions.py", str(path), timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "prediction 'x' lacks" in out.stderr and "written_in" in out.stderr


def test_the_shipped_predictions_are_scored():
    out = run_script("15_predictions.py", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "held-to cell intervals:" in out.stdout and "rank1-l2048-seq0" in out.stdout
    # and every fitted cell of the newest dataset, held out of its own fit
    assert "data/law_cpu_converged.nc: held out one at a time, " in out.stdout
