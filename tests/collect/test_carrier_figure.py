"""The carrier figure and analysis on a carrier sweep of the tiny random model (issue 15)."""

import importlib.util
import os
import sys

import numpy as np
import pandas as pd
import pytest

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "paper_figures"))
from carriers import DODGE, carrier_cells, carrier_points, plot_carriers  # noqa: E402

#: LoRA at two ranks, memory tokens entering layer 1 at two sizes, sparse KV written untrained
CARRIERS = {
    "mlp_block@1": "mlp_block@1",
    "memtok:2@1": "memtok@1",
    "memtok:4@1": "memtok@1",
    "skv:8@all": "skv@all",
}


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses resolve annotations through it
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def carrier_data(tmp_path_factory, tiny_sweep):
    """A merged carrier sweep: 2 tasks, 2 target sequences, 40 steps per cell (~20 s)."""
    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    lc = {"tasks": ["long_context"], "random_ratios": [1.0]}
    pb = {"tasks": ["phonebook"], "random_ratios": [0.0]}
    trained = {"modules": ["memtok:2@1", "memtok:4@1"]}
    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "ranks": [1],
            "lengths": [20],
            "seeds": [0],
            "data_seeds": [0, 1],
        },
        train={"max_steps": 40, "log_every": 1, "lr": 5e-2},  # LoRA clears the floor
        grid=[
            {**lc, "modules": ["mlp_block@1"], "ranks": [1, 2]},
            {**lc, "modules": [*trained["modules"], "skv:8@all"]},
            {**pb, "modules": ["mlp_block@1"], "ranks": [1, 2]},
            {**pb, **trained},
        ],
    )
    out = tmp_path_factory.mktemp("carriers")
    ds = run_sweep(config_from_dict(raw), out, progress=False, merge_to=out / "d.nc")
    assert (ds["status"] == "ok").sum() == 18
    return ds, out / "d.nc"


def test_carrier_cells_carry_sizes_and_information_bits(carrier_data):
    from lawfit.information import information_bits

    ds, _ = carrier_data
    cells = carrier_cells(ds)
    assert len(cells) == 18 and set(cells["modules"]) == set(CARRIERS)
    assert dict(zip(cells["modules"], cells["carrier"], strict=True)) == CARRIERS
    one = cells.set_index(["task", "modules", "rank", "data_seed"])
    n_params = ds["n_params"].sel(model="tiny-random")
    for (_, modules, rank, _), row in one.iterrows():
        assert row["n_params"] == int(n_params.sel(modules=modules, rank=rank))
    np.testing.assert_array_equal(cells["n_bytes"], 4 * cells["n_params"])  # float32 model
    info = information_bits(ds).cells
    keys = ["task", "modules", "rank", "data_seed"]
    both = cells.merge(info, on=keys, suffixes=("", "_info"))
    np.testing.assert_allclose(both["bits_stored"], both["bits_stored_info"], rtol=0, atol=0)
    assert (cells.loc[cells["carrier"] == "skv@all", "steps"] == 0).all()  # written
    # a dataset merged before n_bytes existed: derived as collect merge derives it
    older = carrier_cells(ds.drop_vars("n_bytes"))
    np.testing.assert_array_equal(older["n_bytes"], cells["n_bytes"])


def test_carrier_points_average_targets_and_keep_the_best_length():
    cells = pd.DataFrame(
        {
            "task": "t",
            "carrier": "c",
            "modules": "c:1",
            "size": 1,
            "n_params": 10.0,
            "n_bytes": 20.0,
            "length": [8, 8, 8, 16, 16, 16],
            "seed": 0,
            "data_seed": [0, 1, 2, 0, 1, 2],
            "bits_stored": [1.0, 2.0, 3.0, 4.0, 6.0, 11.0],
            "loss_after": [0.1, 0.6, 0.69, 0.9, 0.5, 2.0],
            "exact_match": [0, 1, 0, 0, 1, 0],  # loss_after decides, as for the law
        }
    )
    p = carrier_points(cells, "bits_stored")
    assert len(p) == 1 and p["length"].item() == 16 and p["n_targets"].item() == 3
    v = np.array([4.0, 6.0, 11.0])
    se = v.std(ddof=1) / np.sqrt(3)
    assert p["mean"].item() == pytest.approx(7.0, abs=1e-12)
    assert p["se"].item() == pytest.approx(se, rel=1e-12)
    assert p["ci"].item() == pytest.approx(4.302652729749464 * se, rel=1e-9)  # t(0.975, 2)
    assert not p["memorized"].item()
    shorter = carrier_points(cells[cells["length"] == 8], "bits_stored")
    assert shorter["memorized"].item()  # every loss_after <= ln 2: a lower bound
    by_recall = carrier_points(cells.drop(columns="loss_after")[cells["length"] == 8])
    assert not by_recall["memorized"].item()  # without loss_after: every target recalled


def _series(ax):
    """Carrier labels of the error-bar series and the reference lines of one panel."""
    carriers = [c.get_label() for c in ax.containers]
    refs = {ln.get_label(): ln for ln in ax.lines if "bits/" in ln.get_label()}
    return carriers, refs


def test_carrier_figure_has_a_series_per_carrier_and_the_references(carrier_data, tmp_path):
    from lawfit.plotting import save_figure

    ds, _ = carrier_data
    cells = carrier_cells(ds)
    fig = plot_carriers(cells)
    axes = np.asarray(fig.axes).reshape(2, 4)  # long_context and phonebook rows
    lc_carriers, _ = _series(axes[0, 0])
    assert sorted(lc_carriers) == ["memtok@1", "mlp_block@1", "skv@all"]
    assert sorted(_series(axes[1, 0])[0]) == ["memtok@1", "mlp_block@1"]  # no skv there
    for row in axes:
        for ax, per in zip(row, ("param", "byte", "param", "byte"), strict=True):
            _, refs = _series(ax)
            if per == "param":
                expected = {"2 bits/parameter": 2.0, "3.6 bits/parameter": 3.6}
            else:  # float32 tiny model: every carrier holds 4 bytes per parameter
                expected = {
                    "2 bits/parameter at 4 B/parameter": 0.5,
                    "3.6 bits/parameter at 4 B/parameter": 0.9,
                }
            assert set(refs) == set(expected), refs
            for label, slope in expected.items():
                x, y = refs[label].get_data()
                np.testing.assert_allclose(np.asarray(y) / np.asarray(x), slope, rtol=1e-12)
    # the error bars are the standard errors over the two target sequences
    stored = carrier_points(cells, "bits_stored")
    mem = stored[(stored["task"] == "long_context") & (stored["modules"] == "memtok:2@1")]
    per_target = cells[(cells["task"] == "long_context") & (cells["modules"] == "memtok:2@1")]
    assert mem["se"].item() == pytest.approx(per_target["bits_stored"].std(ddof=1) / np.sqrt(2))
    # the open marks have their own keys, there exactly when some panel draws them
    import carriers as fig_module

    keys = [t.get_text() for t in fig.legends[0].get_texts()]
    points = pd.concat([carrier_points(cells, q) for q in ("bits_stored", "bits_recalled")])
    assert (fig_module.NONE in keys) == bool((points["mean"] <= 0).any())
    held = (points["mean"] > 0) & points["memorized"].astype(bool)
    assert (fig_module.HELD in keys) == bool(held.any())
    assert fig_module.NONE in keys  # the tiny sweep recalls nothing on some carrier
    files = save_figure(fig, tmp_path / "carriers", formats=("png",), dpi=80)
    img = mpl.image.imread(files[0])[..., :3].reshape(-1, 3)
    assert float((img.min(axis=1) < 0.95).mean()) > 0.02


def test_make_figures_draws_the_carrier_figure_and_skips_one_carrier(carrier_data, tmp_path):
    ds, _ = carrier_data
    mf = _load("make_figures", "paper_figures/make_figures.py")
    rows = mf.draw_all(
        ds, out=str(tmp_path), bootstrap=5, formats=("png",), dpi=60, only=["carriers"]
    )
    drawn = [r for r in rows if r["figure"] == "carriers"]
    assert [r["status"] for r in drawn] == ["drawn"], rows
    assert os.path.basename(drawn[0]["files"][0]) == "carriers__tiny-random.png"
    one = ds.sel(modules=["mlp_block@1"])
    rows = mf.draw_all(
        one, out=str(tmp_path / "one"), bootstrap=5, formats=("png",), dpi=60, only=["carriers"]
    )
    (skip,) = [r for r in rows if r["figure"] == "carriers"]
    assert skip["status"] == "skipped" and ">= 2 carriers" in skip["reason"]
    assert "mlp_block@1" in skip["reason"]


def test_make_figures_draws_two_models_on_one_figure_and_skips_one(carrier_data, tmp_path):
    import xarray as xr

    ds, _ = carrier_data
    lora = ds.sel(modules=["mlp_block@1"])
    other = lora.assign_coords(model=["tiny-b"])
    other["n_params"] = other["n_params"] * 2  # another family's adapter: twice the scalars
    both = xr.concat([lora, other], "model", join="outer")
    mf = _load("make_figures", "paper_figures/make_figures.py")
    rows = mf.draw_all(
        both, out=str(tmp_path), bootstrap=5, formats=("png",), dpi=60, only=["models"]
    )
    (drawn,) = [r for r in rows if r["figure"] == "models"]
    assert drawn["status"] == "drawn", rows
    assert os.path.basename(drawn["files"][0]) == "models__all_models.png"
    fig = mf._fig_models(both)[0]
    series = sorted(_series(fig.axes[0])[0])
    assert series == ["tiny-b mlp_block@1", "tiny-random mlp_block@1"]
    x = {c.get_label(): np.asarray(c[0].get_xdata(), float) for c in fig.axes[0].containers}
    ratio = x["tiny-b mlp_block@1"] / x["tiny-random mlp_block@1"]  # n_params, dodged apart
    assert np.all((ratio > 2 / DODGE**2) & (ratio < 2 * DODGE**2)), ratio
    rows = mf.draw_all(
        lora, out=str(tmp_path / "one"), bootstrap=5, formats=("png",), dpi=60, only=["models"]
    )
    assert not [r for r in rows if r["figure"] == "models"]  # one model: not drawn at all
    with pytest.raises(mf.Skip, match="needs ok cells of >= 2 models"):
        mf._fig_models(lora)


def test_carrier_analysis_prints_the_tables_and_names_the_best_carriers(carrier_data):
    import subprocess

    _, path = carrier_data
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    script = os.path.join(ROOT, "analysis", "09_carriers.py")
    out = subprocess.run(
        [sys.executable, script, str(path), "--markdown"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "| carrier | modules | rank | n_params | n_bytes |" in text
    assert "| skv@all | skv:8@all | 1 | 2048 | 8192 | 20 | 2 |" in text  # 2 k n_kv d_head L
    assert "GFLOP (est.)" in text and "no FLOP estimate" not in text
    verdicts = [ln for ln in text.splitlines() if ln.startswith("On this dataset")]
    assert len(verdicts) == 2  # long_context and phonebook
    lc = next(v for v in verdicts if "long_context" in v)
    floor = "the most bits above the base model's floor"
    assert f"{floor} per byte" in lc and f"{floor} per PFLOP" in lc
    assert any(c in lc.split("per byte")[0] for c in ("memtok@1", "mlp_block@1", "skv@all"))
    assert "| base model's floor | above the floor (95% CI) |" in text


def _lora_beside(other: str, modules: str, **columns) -> pd.DataFrame:
    """Four cells for the verdict: LoRA rank 1 and carrier ``other``, two target sequences each.

    ``columns`` override the defaults (a scalar or one value per row: lora's two, then other's).
    """
    n_params = columns.pop("n_params", 1152)
    length = columns.pop("length", 256)
    base = {
        "carrier": ["lora"] * 2 + [other] * 2,
        "modules": ["mlp_block@20"] * 2 + [modules] * 2,
        "rank": 1,
        "n_params": n_params,
        "n_bytes": 4 * n_params,
        "length": length,
        "data_seed": [0, 1, 0, 1],
        "bits_stored_base": 0.0,
        "bits_recalled": 0.0,
        "bits_content": length * 15.58,
        "steps": 3000,
    }
    return pd.DataFrame({**base, **columns})


def test_a_carrier_at_the_base_models_floor_is_not_named_best_however_cheap():
    an = _load("carriers_analysis", "analysis/09_carriers.py")
    cells = _lora_beside(
        "skv",
        "skv:1@27",
        bits_stored=[1300.0, 1250.0, 46.0, 45.0],
        bits_stored_base=[45.0, 44.0, 45.9, 44.8],  # skv: the floor, give or take
        steps=[3000, 3000, 0, 0],
        flops=[2.2e14, 2.2e14, 6.8e10, 6.8e10],  # skv: 3,000 times cheaper
    )
    table = an.group_table(cells)
    assert table.set_index("carrier")["resolved"].to_dict() == {"lora": True, "skv": False}
    text = an.verdict(table, "test")
    assert "skv stores nothing above the base model's floor" in text
    assert "lora stores the most bits above the base model's floor per PFLOP" in text
    assert "lora stores the most bits above the base model's floor per byte" in text
    lora = table.set_index("carrier").loc["lora"]
    assert lora["above_floor"] == pytest.approx(1230.5)  # paired: mean of 1255 and 1206
    assert lora["above_per_byte"] == pytest.approx(1230.5 / 4608)
    assert "still improving" not in text  # no trajectories: nothing claimed
    # one of LoRA's two targets was still improving when it stopped: its figure is a floor
    learning = an.group_table(cells.assign(still_improving=[1.0, 0.0, 0.0, 0.0]))
    text = an.verdict(learning, "test")
    assert "length 256 (still improving when it stopped: a lower bound)" in text


def test_the_verdict_says_the_lead_target_sequence_by_target_sequence():
    """A lead of the means that one target sequence reverses is said to be one of two."""
    an = _load("carriers_analysis", "analysis/09_carriers.py")
    cells = _lora_beside(
        "kv",
        "kv:1@27",
        data_seed=[0, 1, 1, 0],  # kv's rows in the other order: paired by sequence
        bits_stored=[1300.0, 1200.0, 1250.0, 1000.0],
        flops=[2e14, 2e14, 1e14, 1e14],
    )
    text = an.verdict(an.group_table(cells), "test")
    by_byte = "lora stores the most bits above the base model's floor per byte: 0.271"
    assert by_byte in text  # mean 1,250 bits over 4,608 bytes, kv's 1,125
    lead = "ratio per sequence 1.30 (sequence 0), 0.96 (sequence 1): lora ahead on 1 of 2"
    assert f"next kv at 0.244 ({lead}; geometric mean 1.12 [" in text
    # per PFLOP kv leads on both sequences (half the FLOPs): 2 of 2
    assert "(ratio per sequence 1.54 (sequence 0), 2.08 (sequence 1): kv ahead on 2 of 2" in text
    one = cells[cells["data_seed"] == 0]  # one sequence: the ratio alone, no interval
    text = an.verdict(an.group_table(one), "test")
    assert "(ratio per sequence 1.30 (sequence 0): lora ahead on 1 of 1)" in text


def test_per_flop_leaders_stopped_for_different_reasons_are_said_so():
    """A cell that stops as memorized runs fewer steps than one that runs to convergence."""
    an = _load("carriers_analysis", "analysis/09_carriers.py")
    cells = _lora_beside(
        "kv",
        "kv:2@27",
        n_params=2304,
        length=128,
        bits_stored=[1990.0, 1990.0, 1925.0, 1925.0],
        bits_stored_base=20.0,
        bits_recalled=1995.0,
        steps=[1500, 1700, 3000, 3000],
        flops=[6e13, 7e13, 6.5e13, 6.5e13],
        stop_reason=["memorized", "memorized", "converged", "converged"],
    )
    table = an.group_table(cells)
    assert table.set_index("carrier")["stopped"].to_dict() == {
        "kv": "converged",
        "lora": "memorized",
    }
    text = an.verdict(table, "test")
    assert "lora stores the most bits above the base model's floor per PFLOP" in text
    assert "but the two stopped for different reasons (lora: memorized; kv: converged)" in text
    same = an.verdict(an.group_table(cells.assign(stop_reason="converged")), "test")
    assert "different reasons" not in same


def test_storing_is_judged_per_target_sequence_not_by_a_two_point_interval():
    """Two sequences storing 585 and 470 bits over a 19-bit floor store something."""
    an = _load("carriers_analysis", "analysis/09_carriers.py")
    content = np.full(2, 128 * 15.58)
    assert an._resolved(np.array([585.0, 470.0]), content)  # t(1) interval: +-730
    assert not an._resolved(np.array([585.0, 10.0]), content)  # one target below 1 %
    assert not an._resolved(np.array([0.3, -0.2]), content)  # skv: the floor
    assert not an._resolved(np.array([]), content[:0])


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (700.0, 10000.0, [1000.0, 2000.0, 5000.0, 10000.0]),  # 1-2-5 per decade
        (700.0, 30000.0, [1000.0, 10000.0]),  # decades over a wider range
        (3200.0, 6700.0, [4000.0, 6000.0]),  # one carrier size: a few round ticks, not eight
    ],
)
def test_log_ticks_stay_few_and_round_on_a_narrow_axis(lo, hi, expected):
    import carriers as fig_module
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    fig_module._log_ticks(ax, "x")
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    plt.close(fig)
    assert ticks == expected
