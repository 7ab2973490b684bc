"""One test per bad-input case of issue 14 (lawfit side): an error or a flag, never silence."""

import json
import time

import numpy as np
import pandas as pd
import pytest

import lawfit
from lawfit import _validate as V
from lawfit.data import as_dataset, as_frame, load_data
from lawfit.errors import LawfitError
from lawfit.testing import synthetic_dataset, synthetic_token_dataset
from lawfit.testing.selection import synthetic_memft_dataset

TRUTH = dict(C=2.0, alpha=0.6, beta=0.5, b=0.02)
GRID = dict(ranks=(1, 2, 4, 8, 16, 32, 64), lengths=(64, 128, 256), seeds=(0, 1, 2))


@pytest.fixture(scope="module")
def ds():
    return synthetic_dataset(**TRUTH, noise=0.03, rng=0)


@pytest.fixture(scope="module")
def tokens():
    return synthetic_token_dataset(p_star=0.3, slope=3.0, entry_tokens=8, rng=1, **GRID)


def _negate(ds, where):
    """Cells at ``where`` trained the wrong way: loss_after > loss_before, ΔL < 0."""
    bad = ds.copy(deep=True)
    dl = bad["loss_reduction"].values
    dl[where] = -np.abs(dl[where])
    bad["loss_after"].values[where] = bad["loss_before"].values[where] - dl[where]
    return bad


# ---------------------------------------------------------------- 1. sign errors
def test_all_negative_loss_reduction_is_an_error(ds):
    bad = _negate(ds, (slice(None),) * 3)
    with pytest.raises(LawfitError, match="every usable cell has loss_reduction < 0"):
        lawfit.fit(bad, exclude=None)


def test_negative_cells_are_excluded_and_flagged(ds):
    bad = _negate(ds, (np.array([0, 1, 2, 3, 4]), np.array([6, 6, 6, 6, 6]), 0))
    res = lawfit.fit(bad, exclude=None, profile=False)
    reasons = res.exclusions["reason"].tolist()
    assert reasons.count(lawfit.data.LOSS_INCREASE) == 5
    assert any("5 cell(s) excluded with loss_reduction < 0" in f for f in res.flags)
    clean = lawfit.fit(ds, exclude=None, profile=False)
    assert res.params["alpha"] == pytest.approx(clean.params["alpha"], abs=0.05)


def test_loss_reduction_must_equal_before_minus_after(ds):
    bad = ds.copy(deep=True)
    bad["loss_reduction"][2, 2, 0] += 0.5  # a flipped bit in one variable
    with pytest.raises(LawfitError, match=r"loss_reduction != loss_before - loss_after"):
        lawfit.fit(bad)


def test_loss_reduction_cannot_exceed_loss_before(ds):
    bad = ds.drop_vars("loss_after").copy(deep=True)
    bad["loss_reduction"][0, 0, 0] = bad["loss_before"][0, 0, 0] + 1.0
    with pytest.raises(LawfitError, match="loss_reduction > loss_before"):
        lawfit.fit(bad, exclude=None)


def test_negative_cross_entropy_is_an_error(ds):
    bad = ds.copy(deep=True)
    bad["loss_after"][0, 0, 0] = -0.1
    bad["loss_reduction"][0, 0, 0] = bad["loss_before"][0, 0, 0] + 0.1
    with pytest.raises(LawfitError, match="loss_after < 0"):
        lawfit.fit(bad)


# ------------------------------------------------- 2. exclusion switched off
def test_nan_loss_after_under_the_exclusion_rule_is_an_error(ds):
    bad = ds.copy(deep=True)
    bad["loss_after"][-1, 0, :] = np.nan  # would silently compare False to ln 2
    with pytest.raises(LawfitError, match="loss_after NaN/inf.*exclude=None"):
        lawfit.fit(bad)
    assert lawfit.fit(bad, exclude=None, profile=False).n_obs == ds.loss_reduction.size


@pytest.mark.parametrize("exclude", [float("nan"), float("inf"), "all", True])
def test_exclude_threshold_must_be_finite(ds, exclude):
    with pytest.raises(LawfitError, match="exclude must be 'memorized', a finite threshold"):
        lawfit.fit(ds, exclude=exclude)


# ------------------------------------------ 3. degenerate options, confident answers
@pytest.mark.parametrize("bootstrap", [1, True, 2.7, -1, "100"])
def test_fit_bootstrap_count(ds, bootstrap):
    with pytest.raises(LawfitError, match="bootstrap must be an int >= 2"):
        lawfit.fit(ds, bootstrap=bootstrap)


def test_phase_transition_bootstrap_float(tokens):
    with pytest.raises(LawfitError, match=r"bootstrap must be an int >= 2.*got 2.7"):
        lawfit.phase_transition(tokens, bootstrap=2.7)


def test_reversed_search_range(ds):
    res = lawfit.fit(ds, exclude=None, profile=False)
    with pytest.raises(LawfitError, match=r"search must be .*reversed: pass \(0.1, 10\)"):
        lawfit.predict_capacity(res, length=256, target=0.5, search=(10, 0.1))


@pytest.mark.parametrize("level", [1.5, 0.0, -0.05, float("nan")])
def test_compare_significance_level(ds, level):
    match = "significance must be a number strictly between 0 and 1"
    with pytest.raises(LawfitError, match=match):
        lawfit.compare(ds, significance=level)
    with (
        pytest.warns(DeprecationWarning, match="use significance="),
        pytest.raises(LawfitError, match=match),
    ):
        lawfit.compare(ds, alpha=level)  # the old name, checked the same way


def test_greedy_flags_other_than_zero_one(tokens):
    bad = tokens.copy(deep=True)
    g = bad["greedy_correct"]
    bad["greedy_correct"] = g.where(g != 1, 2.0)  # 0/2 instead of 0/1
    with pytest.raises(LawfitError, match=r"greedy_correct must hold 1 \(correct\) or 0"):
        lawfit.phase_transition(bad, bootstrap=0)


def test_probabilities_outside_unit_interval(tokens):
    bad = tokens.copy(deep=True)
    bad["p_before"] = bad["p_before"] * 3.0
    with pytest.raises(LawfitError, match="p_before must be probabilities"):
        lawfit.phase_transition(bad, bootstrap=0)


# ------------------------------------------------------------- 6. raw tracebacks
@pytest.mark.parametrize("rng", ["abc", -1, 1.5, True])
def test_fit_rng(ds, rng):
    with pytest.raises(LawfitError, match="rng must be None, an int >= 0"):
        lawfit.fit(ds, rng=rng)


@pytest.mark.parametrize("level", [95, 0, 1, "0.95", float("nan"), None])
def test_confidence_level_one_wording(ds, tokens, level):
    msg = "confidence_level must be a number strictly between 0 and 1"
    with pytest.raises(LawfitError, match=msg):
        lawfit.fit(ds, confidence_level=level)
    with pytest.raises(LawfitError, match=msg):
        lawfit.phase_transition(tokens, confidence_level=level)


def test_bootstrap_too_big_for_memory_fails_before_the_fit(ds, monkeypatch):
    monkeypatch.setenv(V.MEMORY_BUDGET_ENV, str(2**20))
    started = time.perf_counter()
    with pytest.raises(LawfitError, match="bootstrap must be a count whose results fit in memory"):
        lawfit.fit(ds, bootstrap=10**9)
    assert time.perf_counter() - started < 2.0  # refused before the point fit


def test_bootstrap_is_chunked_under_a_small_budget(ds, monkeypatch):
    n = int(ds.loss_reduction.size)
    assert V.bootstrap_chunk(400, n, 4) == 400
    monkeypatch.setenv(V.MEMORY_BUDGET_ENV, str(60 * n * V._BYTES_PER_REPLICATE_POINT))
    chunk = V.bootstrap_chunk(400, n, 4)
    assert 1 <= chunk < 400
    res = lawfit.fit(ds, exclude=None, bootstrap=400, profile=False, rng=0)
    assert res.boot.draws.shape == (400, 4)
    lo, hi = res.conf_int("bootstrap").loc["alpha"]
    assert lo < res.params["alpha"] < hi


def test_unchunkable_bootstrap_refused_when_too_big(ds, monkeypatch):
    n = int(ds.loss_reduction.size)
    monkeypatch.setenv(V.MEMORY_BUDGET_ENV, str(60 * n * V._BYTES_PER_REPLICATE_POINT))
    with pytest.raises(LawfitError, match="working arrays fit in memory.*unit='cell'"):
        lawfit.fit(ds, exclude=None, bootstrap=400, unit="wild")


def test_compare_unknown_cluster_column_fails_before_fitting(ds, monkeypatch):
    import importlib

    cmp = importlib.import_module("lawfit.compare.candidates")  # where the forms are fitted

    def no_fit(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("a form was fitted before the option was checked")

    monkeypatch.setattr(cmp, "_quiet_fit", no_fit)
    with pytest.raises(LawfitError, match="vuong_clusters must be column"):
        lawfit.compare(ds, vuong_clusters="nope")


@pytest.mark.parametrize("bad", [None, [1, 2], 3.5, {"rank": [1]}])
def test_load_data_refuses_other_objects(bad):
    with pytest.raises(LawfitError, match="expected an xarray.Dataset .* got"):
        load_data(bad)


def test_load_data_paths(tmp_path, ds):
    with pytest.raises(LawfitError, match="is a folder"):
        lawfit.fit(tmp_path)
    with pytest.raises(LawfitError, match="does not exist"):
        lawfit.fit(tmp_path / "missing.nc")
    text = tmp_path / "notes.txt"
    text.write_text("not a dataset\n")
    for call in (lawfit.fit, lawfit.phase_transition, lawfit.memft_savings):
        with pytest.raises(LawfitError, match="could not read .* as NetCDF"):
            call(text)
    path = tmp_path / "d.nc"
    ds.to_netcdf(path)
    assert lawfit.fit(path, exclude=None, profile=False).n_obs == ds.loss_reduction.size
    df = ds.to_dataframe().reset_index()
    df.to_csv(tmp_path / "d.csv", index=False)
    res = lawfit.fit(tmp_path / "d.csv", exclude=None, profile=False)
    assert res.params["alpha"] == pytest.approx(
        lawfit.fit(ds, exclude=None, profile=False).params["alpha"], rel=1e-9
    )


def test_truncated_netcdf(tmp_path, ds):
    path = tmp_path / "d.nc"
    ds.to_netcdf(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LawfitError, match="could not read .* truncated"):
        lawfit.fit(path)


def test_newer_schema_version_refused(tmp_path, ds):
    newer = ds.copy()
    newer.attrs["schema_version"] = "2.0"
    with pytest.raises(LawfitError, match="schema_version '2.0', newer than this lawfit"):
        lawfit.fit(newer)
    newer.to_netcdf(tmp_path / "n.nc")
    with pytest.raises(LawfitError, match="newer than this lawfit reads"):
        lawfit.phase_transition(tmp_path / "n.nc")


def test_a_table_that_skips_cells_reads_them_as_not_run(ds, tmp_path):
    """The grid a tidy table spans holds cells it does not list: those were not collected.

    They read ``status`` "not_run" (not "ok" cells of NaN, which the fit refuses), and the
    command line fits the CSV as the API fits the frame.
    """
    from lawfit.cli import main

    df = ds[["loss_reduction", "loss_after"]].to_dataframe().reset_index()
    df = df.iloc[1:].drop(index=[5, 9])  # three cells of the grid not in the table
    back = as_dataset(df)
    assert set(np.unique(back["status"].values)) == {"ok", "not_run"}
    assert int((back["status"] == "not_run").sum()) == 3
    assert bool(back["loss_reduction"].where(back["status"] == "ok").notnull().sum() == len(df))
    df.to_csv(tmp_path / "skips.csv", index=False)
    assert main(["fit", str(tmp_path / "skips.csv"), "--exclude", "none"]) == 0
    with_status = as_dataset(df.assign(status="ok"))
    assert int((with_status["status"] == "not_run").sum()) == 3


def test_dataframe_reaches_token_analyses(tokens):
    df = tokens[["p_after", "p_before", "greedy_correct", "entry", "status"]].to_dataframe()
    back = as_dataset(df.reset_index())
    a = lawfit.phase_transition(tokens, bootstrap=0)
    b = lawfit.phase_transition(back, bootstrap=0)
    assert a.token_fit.threshold == pytest.approx(b.token_fit.threshold, rel=1e-9)


@pytest.mark.parametrize("bad", [None, [1, 2]])
def test_result_load_refuses_objects(bad):
    with pytest.raises(LawfitError, match="expected the path of a JSON file"):
        lawfit.load(bad)


def test_result_load_refuses_files(tmp_path, ds):
    with pytest.raises(LawfitError, match="is a folder"):
        lawfit.load(tmp_path)
    ds.to_netcdf(tmp_path / "d.nc")
    with pytest.raises(LawfitError, match="not a JSON file .* read by lawfit.fit"):
        lawfit.load(tmp_path / "d.nc")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)))
    with pytest.raises(LawfitError, match="not a JSON file"):
        lawfit.load(tmp_path / "b.bin")
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(LawfitError, match="not a saved lawfit result"):
        lawfit.load(tmp_path / "l.json")
    res = lawfit.fit(ds, exclude=None, profile=False)
    res.save(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    d["format_version"] = 99
    (tmp_path / "r99.json").write_text(json.dumps(d))
    with pytest.raises(LawfitError, match="format_version 99, newer than this lawfit"):
        lawfit.load(tmp_path / "r99.json")


def test_memft_options(ds):
    m = synthetic_memft_dataset(rng=0)
    with pytest.raises(LawfitError, match="rng must be"):
        lawfit.memft_savings(m, rng="seed")
    with pytest.raises(LawfitError, match="bootstrap must be an int >= 2"):
        lawfit.gradient_budget(m, bootstrap=1)


@pytest.mark.parametrize(
    "name,value,msg",
    [
        ("window", 0, "window must be an int >= 1"),
        ("window", "100", "window must be an int >= 1"),
        ("tol", -0.1, "tol must be a finite number > 0"),
    ],
)
def test_convergence_options(name, value, msg):
    from lawfit.budget import convergence

    with pytest.raises(LawfitError, match=msg):
        convergence(synthetic_dataset(rng=0), **{name: value})


def test_validators_accept_good_values():
    assert V.confidence_level(np.float32(0.9)) == pytest.approx(0.9)
    assert V.bootstrap_count(np.int64(0)) == 0 and V.bootstrap_count(2) == 2
    assert V.search_range(np.array([0.1, 10])) == (0.1, 10.0)
    assert V.exclude_rule(None) is None and V.exclude_rule(0.5) == 0.5
    g = np.random.default_rng(1)
    assert V.random_generator(g) is g
    assert V.known_columns("seed", ["rank", "seed"], "unit") == ["seed"]
    got = V.positive_number(np.int64(3), "x")
    assert got == 3.0 and type(got) is float
    assert V.positive_number(2.5e-3, "x") == 2.5e-3


def test_frame_without_losses_is_still_accepted():
    df = pd.DataFrame(
        {
            "rank": [1, 2, 4, 1, 2, 4],
            "length": [64] * 3 + [128] * 3,
            "loss_reduction": [0.5, 0.7, 0.9, 0.3, 0.45, 0.6],
        }
    )
    frame, excl = as_frame(df)
    assert len(frame) == 6 and len(excl) == 0


def test_compare_and_memft_refuse_a_nan_exclusion(ds):
    with pytest.raises(LawfitError, match="exclude must be 'memorized', a finite threshold"):
        lawfit.compare(ds, exclude=float("nan"))
    m = synthetic_memft_dataset(rng=0)
    with pytest.raises(LawfitError, match="exclude must be 'memorized', a finite threshold"):
        lawfit.memft_savings(m, exclude=float("nan"))
    with pytest.raises(LawfitError, match="target must be a finite number > 0"):
        lawfit.memft_savings(m, target=float("inf"))


@pytest.mark.parametrize("kw", [{}, {"loss": "huber"}, {"unit": "wild"}, {"space": "log"}])
def test_bootstrap_memory_estimate_bounds_the_peak(ds, kw):
    import tracemalloc

    frame = ds.drop_vars(["loss_before", "loss_after"])
    n, k, R = int(frame.loss_reduction.size), 4, 300
    estimate = R * (n * V._BYTES_PER_REPLICATE_POINT + 2 * k * V._BYTES_PER_REPLICATE_PARAM)
    tracemalloc.start()
    try:
        lawfit.fit(frame, exclude=None, profile=False, bootstrap=R, rng=0, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < estimate


def test_phase_transition_wide_width_interval_is_open_not_a_traceback():
    # found by tests/test_properties.py: math.exp overflowed (OverflowError) on this design
    grid = dict(ranks=(1, 4, 16), lengths=(64, 128), seeds=(0, 1))
    tokens = synthetic_token_dataset(p_star=0.3, slope=3.0, entry_tokens=8, rng=1, **grid)
    res = lawfit.phase_transition(tokens, bootstrap=0)
    text = res.summary()
    assert "width" in text and "inf]" in text
