"""Do groups (model families) share the law's exponents? Calibration on known truth."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from lawfit import shared_exponents
from lawfit.compare import pointwise_loglik
from lawfit.errors import LawfitError
from lawfit.testing import synthetic_dataset

GRID = dict(ranks=(1, 2, 4, 8), lengths=(64, 128, 256, 512, 1024), seeds=2, noise=0.05)


def two_models(seed, alpha_b=0.6, beta_b=0.5):
    """Two model families: model a at alpha 0.6, beta 0.5; model b at its own C and these."""
    gen = np.random.default_rng(seed)
    a = synthetic_dataset(alpha=0.6, beta=0.5, rng=gen, **GRID)
    b = synthetic_dataset(alpha=alpha_b, beta=beta_b, C=0.5, rng=gen, **GRID)
    return xr.concat([a.expand_dims(model=["a"]), b.expand_dims(model=["b"])], "model")


def test_planted_exponents_are_recovered_per_group_and_shared():
    res = shared_exponents(two_models(0, alpha_b=0.9), space="log")
    sep = res.exponents.query("law == 'separate'").set_index(["group", "parameter"])
    for group, alpha in (("a", 0.6), ("b", 0.9)):
        row = sep.loc[(group, "alpha")]
        assert row["low"] <= alpha <= row["high"], (group, row.to_dict())
        assert sep.loc[(group, "beta"), "low"] <= 0.5 <= sep.loc[(group, "beta"), "high"]
    assert res.verdict == "separate" and res.pvalue < 1e-6
    assert "exponents_differ" in {f.code for f in res.flags}
    same = shared_exponents(two_models(1), space="log")
    common = same.exponents.query("law == 'shared' and group == 'all'").set_index("parameter")
    assert common.loc["alpha", "estimate"] == pytest.approx(0.6, abs=0.03)
    assert common.loc["beta", "estimate"] == pytest.approx(0.5, abs=0.03)
    per_group_c = same.exponents.query("law == 'shared' and parameter == 'C'")
    assert sorted(per_group_c["group"]) == ["a", "b"]  # C stays per group


def test_the_test_keeps_its_level_under_shared_exponents_and_has_power_against_others():
    """150 null datasets: the F test rejects about 5 % (binomial 99.8 % range 2-15)."""
    rejected = sum(shared_exponents(two_models(s), space="log").pvalue < 0.05 for s in range(150))
    assert 2 <= rejected <= 15, rejected
    power = sum(
        shared_exponents(two_models(1000 + s, alpha_b=0.8), space="log").pvalue < 0.05
        for s in range(20)
    )
    assert power >= 19, power


def test_the_separate_laws_share_one_error_variance_in_the_likelihood():
    """The separate model's log-likelihood pools every group's residuals under one σ²."""
    res = shared_exponents(two_models(2), space="log")
    points = pd.concat([res.fits[g].points for g in ("a", "b")])
    ll = pointwise_loglik(points["residual"], points["loss_reduction"], "log").sum()
    cmp = res.comparison.set_index("law")
    assert cmp.loc["separate", "loglik"] == pytest.approx(ll, rel=1e-12)
    assert cmp.loc["shared", "df"] == 2 and cmp.loc["separate", "k"] == 9


def test_one_group_or_no_group_dim_is_refused_with_the_fix():
    one = synthetic_dataset(rng=0, **GRID).expand_dims(model=["a"])
    with pytest.raises(LawfitError, match="needs 2\\+ groups"):
        shared_exponents(one)
    with pytest.raises(LawfitError, match="shared must name some, not all"):
        shared_exponents(two_models(0), shared=("alpha", "beta", "C", "b"))
    with pytest.raises(LawfitError, match="at least one grouping dim"):
        shared_exponents(two_models(0), by=())


def test_a_group_too_small_for_its_own_law_is_skipped_and_said():
    ds = two_models(3)
    small = ds.where((ds["model"] == "a") | (ds["length"] == 64))  # b: one length left
    small["status"] = small["status"].fillna("diverged")
    res = shared_exponents(small, space="log")
    assert set(res.fits) == {"a"} and res.verdict == ""
    assert "group_skipped" in {f.code for f in res.flags}
    assert any("not tested" in n for n in res.notes)


def test_auto_space_picks_one_scale_for_every_law_by_the_fit_rule():
    """Log-normal noise: the shared law's linear residuals fan out, so every law goes to log."""
    gen = np.random.default_rng(4)
    kw = dict(ranks=(1, 2, 4, 8, 16), lengths=(64, 128, 256, 512, 1024), seeds=3, noise=0.2)
    a = synthetic_dataset(rng=gen, **kw)
    b = synthetic_dataset(C=0.5, rng=gen, **kw)
    ds = xr.concat([a.expand_dims(model=["a"]), b.expand_dims(model=["b"])], "model")
    res = shared_exponents(ds)
    assert {f.space for f in res.fits.values()} == {"log"} and res.shared_fit.space == "log"
    assert any(n.startswith("space: log, chosen on the shared law") for n in res.notes)
    assert shared_exponents(ds, space="linear").shared_fit.space == "linear"


def test_models_with_their_adapters_at_different_layers_are_compared():
    """SmolLM2's adapter at layer 20 and Gemma's at 12: modules varies with the model only."""
    a = synthetic_dataset(rng=6, **GRID).expand_dims(model=["smollm2"], modules=["mlp_block@20"])
    b = synthetic_dataset(C=0.5, rng=7, **GRID).expand_dims(
        model=["gemma"], modules=["mlp_block@12"]
    )
    ds = xr.concat([a, b], "model", join="outer")
    assert ds.sizes["modules"] == 2
    res = shared_exponents(ds, space="log")
    assert sorted(res.fits) == ["gemma", "smollm2"] and res.verdict == "shared"
    from lawfit.report import build_report

    assert "## Across models" in build_report(ds, bootstrap=0).to_markdown()
    both = xr.concat([a, a.assign_coords(modules=["mlp_block@12"])], "modules")
    with pytest.raises(LawfitError, match="differ in \\['modules'\\]"):
        shared_exponents(xr.concat([both, b], "model", join="outer"), space="log")


def test_cluster_robust_differences_keep_their_level_and_find_a_real_difference():
    """3 target sequences per model with random slopes; the pairwise CR2 differences."""
    grid = dict(GRID, ranks=(1, 2, 4, 8, 16), seeds=3, noise_kind="run")

    def families(seed, alpha_b):
        gen = np.random.default_rng([31, seed])
        a = synthetic_dataset(alpha=0.6, beta=0.5, rng=gen, **grid)
        b = synthetic_dataset(alpha=alpha_b, beta=0.5, C=0.5, rng=gen, **grid)
        return xr.concat([a.expand_dims(model=["a"]), b.expand_dims(model=["b"])], "model")

    rejected = np.zeros(2)
    for s in range(100):
        res = shared_exponents(families(s, 0.6), space="log", cluster="seed")
        rejected += (res.differences["pvalue"] < 0.05).to_numpy()
    assert (rejected <= 12).all(), rejected  # binomial(100, 0.05): P(X >= 13) = 0.2 %
    found = 0
    for s in range(20):
        res = shared_exponents(families(1000 + s, 0.75), space="log", cluster="seed")
        diff = res.differences.set_index("parameter")
        assert list(res.differences["group_1"].unique()) == ["a"]
        found += diff.loc["alpha", "pvalue"] < 0.05
    assert found >= 18, found
    assert diff.loc["alpha", "estimate"] == pytest.approx(-0.15, abs=0.06)
