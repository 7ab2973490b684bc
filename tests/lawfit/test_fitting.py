import warnings

import numpy as np
import pytest

import lawfit
from lawfit.errors import LawfitError
from lawfit.testing import synthetic_dataset

TRUTH = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}


@pytest.fixture(scope="module")
def ds():
    return synthetic_dataset(**TRUTH, seeds=3, noise=0.05, noise_model="additive", rng=11)


@pytest.fixture(scope="module")
def res(ds):
    return lawfit.fit(ds, exclude=None, bootstrap=400, rng=0)


def test_recovers_truth_within_cis(res):
    for method in ("bootstrap", "profile", "wald"):
        ci = res.conf_int(method)
        for p, v in TRUTH.items():
            assert ci.loc[p, "low"] <= v <= ci.loc[p, "high"], (method, p, ci)
    assert abs(res.params["alpha"] - 0.6) < 0.03
    assert abs(res.params["beta"] - 0.5) < 0.03
    assert res.r2 > 0.99


def test_result_attributes(res):
    assert list(res.params) == ["C", "alpha", "beta", "b"]
    assert set(res.stderr) == set(res.params)
    assert res.cov.shape == (4, 4)
    assert res.n_obs == 8 * 7 * 3
    for attr in ("r2", "rmse", "mape", "loglik", "aic", "aicc", "bic"):
        assert np.isfinite(getattr(res, attr))
    assert res.aicc > res.aic
    assert {"fitted", "residual"} <= set(res.residuals.columns)
    assert res.input_ranges == {"rank": (1.0, 128.0), "length": (64.0, 4096.0)}
    assert res.flags == ()
    assert res.form.name == "power_law"


def test_start_independence(ds):
    base = lawfit.fit(ds, exclude=None, profile=False)
    for p0 in (
        {"C": 50.0, "alpha": 3.5, "beta": -1.5, "b": 4.0},
        {"C": 1e-3, "alpha": -1.0, "beta": 3.0, "b": -2.0},
        {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.0},
    ):
        other = lawfit.fit(ds, exclude=None, profile=False, p0=p0)
        for p in base.params:
            assert other.params[p] == pytest.approx(base.params[p], rel=1e-6, abs=1e-9)


def test_matches_scipy_least_squares(ds):
    from scipy.optimize import least_squares

    res = lawfit.fit(ds, exclude=None, profile=False)
    pts = res.points
    x, ell, y = (
        pts["rank"].to_numpy(float),
        pts["length"].to_numpy(float),
        pts["loss_reduction"].to_numpy(float),
    )

    def resid(t):
        return t[0] * x ** t[1] * ell ** (-t[2]) + t[3] - y

    ref = least_squares(resid, x0=[1, 0.6, 0.5, 0.0], xtol=1e-14, ftol=1e-14, gtol=1e-14)
    assert np.allclose(list(res.params.values()), ref.x, rtol=1e-6, atol=1e-9)


def test_memorized_excluded_and_recorded():
    ds = synthetic_dataset(**TRUTH, loss_before=1.5, rng=3)
    n_mem = int((ds.loss_after <= np.log(2)).sum())
    assert n_mem > 0
    res = lawfit.fit(ds, profile=False)
    assert res.n_excluded == n_mem
    assert all(r.startswith("memorized") for r in res.exclusions["reason"])
    assert res.n_obs == ds.loss_after.size - n_mem
    keep = lawfit.fit(ds, exclude=None, profile=False)
    assert keep.n_excluded == 0 and keep.n_obs == ds.loss_after.size


def test_failed_cells_in_exclusions():
    ds = synthetic_dataset(**TRUTH, failed_fraction=0.1, rng=4)
    res = lawfit.fit(ds, exclude=None, profile=False)
    assert res.n_excluded == int((ds.status != "ok").sum())


def test_log_space_and_huber(ds):
    lg = lawfit.fit(ds, exclude=None, space="log")
    assert abs(lg.params["alpha"] - 0.6) < 0.03
    hb = lawfit.fit(ds, exclude=None, loss="huber")
    assert hb.huber_delta > 0
    assert abs(hb.params["alpha"] - 0.6) < 0.03
    assert "huber" in str(hb.summary())


def test_huber_resists_outliers():
    ds = synthetic_dataset(**TRUTH, noise=0.02, noise_model="additive", rng=5)
    # ΔL alone: outliers planted in it would contradict loss_before - loss_after
    bad = ds.drop_vars(["loss_before", "loss_after"]).copy(deep=True)
    bad["loss_reduction"][-1, 0, :] = bad["loss_reduction"][-1, 0, :] * 3  # gross outliers
    l2 = lawfit.fit(bad, exclude=None, profile=False)
    hb = lawfit.fit(bad, exclude=None, loss="huber", profile=False)
    assert abs(hb.params["alpha"] - 0.6) < abs(l2.params["alpha"] - 0.6)


def _huber_objective(res, theta, delta):
    """Σ Huber(residual) in linear space, written out: r²/2 within delta, linear beyond."""
    pts = res.points
    x, ell = pts["rank"].to_numpy(float), pts["length"].to_numpy(float)
    r = theta[0] * x ** theta[1] * ell ** (-theta[2]) + theta[3] - pts["loss_reduction"]
    a = np.abs(r.to_numpy(float))
    return float(np.sum(np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))))


def test_explicit_huber_delta(ds):
    kw = dict(exclude=None, profile=False, space="linear")
    l2 = lawfit.fit(ds, **kw)
    hb = lawfit.fit(ds, loss="huber", huber_delta=0.01, **kw)
    assert hb.huber_delta == 0.01
    # the given delta is the one minimized: the estimate beats least squares' under it
    assert _huber_objective(hb, hb.theta, 0.01) < _huber_objective(hb, l2.theta, 0.01)
    assert not np.allclose(hb.theta, l2.theta, rtol=1e-6)
    # a delta above every residual makes Huber least squares again
    wide = lawfit.fit(ds, loss="huber", huber_delta=1e6, **kw)
    assert wide.huber_delta == 1e6
    np.testing.assert_allclose(wide.theta, l2.theta, rtol=1e-6, atol=1e-9)


def test_n_params_capacity(ds):
    res = lawfit.fit(ds, exclude=None, capacity="n_params", profile=False)
    assert res.inputs == ("n_params", "length")
    by_rank = lawfit.fit(ds, exclude=None, profile=False)
    # n_params = rank * const: same exponents, C rescaled
    assert res.params["alpha"] == pytest.approx(by_rank.params["alpha"], rel=1e-6)
    assert res.params["beta"] == pytest.approx(by_rank.params["beta"], rel=1e-6)


def test_by_groups():
    ds = synthetic_dataset(**TRUTH, groups={"model": ["a", "b"], "task": ["x"]}, rng=6)
    res = lawfit.fit(ds, by="model", exclude=None, profile=False)
    assert isinstance(res, lawfit.FitResults)
    assert len(res) == 2
    assert res["a"].params["alpha"] == res[("a",)].params["alpha"]
    assert res.sel(model="b").group == {"model": "b"}
    df = res.to_dataframe()
    assert list(df.columns[:2]) == ["model", "param"]
    assert len(df) == 8


def test_bound_flag():
    ds = synthetic_dataset(C=1.0, alpha=0.6, beta=0.5, b=0.0, rng=7)
    lawfit.register_form(
        "pl_tight",
        lambda rank, length, *, C, alpha, beta, b: C * rank**alpha * length ** (-beta) + b,
        linear=("C", "b"),
        bounds={"alpha": (0.0, 0.4), "beta": (0, 2)},
        overwrite=True,
    )
    res = lawfit.fit(ds, "pl_tight", exclude=None, profile=False)
    assert res.params["alpha"] == pytest.approx(0.4)
    assert any(f.code == "at_bound" and f.message.startswith("alpha at upper") for f in res.flags)


def test_too_few_points_flag():
    ds = synthetic_dataset(**TRUTH, ranks=(1, 4, 16), lengths=(64, 1024), seeds=1, rng=8)
    res = lawfit.fit(ds, exclude=None, profile=False)
    assert "too_few_points" in {f.code for f in res.flags}


def test_more_params_than_points():
    ds = synthetic_dataset(**TRUTH, ranks=(1, 4), lengths=(64, 1024), seeds=1, rng=8)
    with pytest.raises(LawfitError, match="usable point"):
        lawfit.fit(ds, exclude=None)


def test_poorly_identified_flag():
    # beta and b are confounded when lengths barely vary and noise is large
    ds = synthetic_dataset(**TRUTH, lengths=(1000, 1001), noise=0.3, rng=9)
    res = lawfit.fit(ds, exclude=None)
    assert {f.code for f in res.flags} & {"poorly_identified", "collinear"}


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"loss": "l1"}, "loss must be"),
        ({"space": "sqrt"}, "space must be"),
        ({"ci_method": "basic"}, "ci_method must be"),
        ({"confidence_level": 95}, "confidence_level must be"),
        ({"bootstrap": -1}, "bootstrap must be"),
        ({"exclude": "all"}, "exclude must be"),
        ({"p0": {"gamma": 1}}, "p0 names unknown"),
        ({"bootstrap": 10, "unit": "model"}, "needs a 'model' dim/column"),
        ({"huber_delta": -1.0, "loss": "huber"}, "huber_delta must be a finite number > 0"),
    ],
)
def test_bad_options(ds, kw, msg):
    with pytest.raises(LawfitError, match=msg):
        lawfit.fit(ds, **{"exclude": None, **kw})


def test_no_loss_after_warns():
    ds = synthetic_dataset(**TRUTH, rng=10)
    df = ds[["loss_reduction"]].to_dataframe().reset_index()
    assert "loss_after" not in df.columns  # what the warning is about
    with pytest.warns(UserWarning, match="needs 'loss_after'"):
        lawfit.fit(df, profile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lawfit.fit(df, exclude=None, profile=False)


def test_heteroscedasticity_flag():
    mult = synthetic_dataset(**TRUTH, noise=0.1, rng=12)
    linear = lawfit.fit(mult, exclude=None, space="linear")
    assert "heteroscedastic" in {f.code for f in linear.flags}
    assert "heteroscedastic" not in {
        f.code for f in lawfit.fit(mult, exclude=None, space="log").flags
    }


@pytest.mark.parametrize("seed", range(5))
def test_auto_space_follows_the_noise_model(seed):
    """Known truth: log-normal noise -> log space; additive homoscedastic noise -> linear."""
    mult = lawfit.fit(synthetic_dataset(**TRUTH, noise=0.1, rng=seed), exclude=None, profile=False)
    assert mult.space == "log" and "log_space" in {f.code for f in mult.flags}
    choice = mult.meta["space_choice"]
    assert choice["pvalue_linear"] < lawfit.space.HETEROSCEDASTIC_P < choice["pvalue_log"]
    explicit = lawfit.fit(
        synthetic_dataset(**TRUTH, noise=0.1, rng=seed), exclude=None, profile=False, space="log"
    )
    np.testing.assert_allclose(mult.theta, explicit.theta)
    add = lawfit.fit(
        synthetic_dataset(**TRUTH, noise=0.1, noise_model="additive", rng=seed),
        exclude=None,
        profile=False,
    )
    assert add.space == "linear" and add.meta["space_choice"]["space"] == "linear"


def test_auto_space_stays_linear_when_some_loss_reduction_is_not_positive():
    ds = synthetic_dataset(**TRUTH, noise=0.1, rng=3)
    lr = ds["loss_reduction"].values.copy()
    lr[0, 0, 0] = 0.0  # negative cells are excluded as failed training; zero is kept
    ds["loss_reduction"] = (ds["loss_reduction"].dims, lr)
    ds["loss_after"] = ds["loss_before"] - ds["loss_reduction"]
    res = lawfit.fit(ds, exclude=None, profile=False)
    assert res.space == "linear"
    assert "ΔL <= 0" in res.meta["space_choice"]["reason"]


def test_choose_space_rule():
    from lawfit.space import choose_space

    def never():
        raise AssertionError("the log fit must not run")

    assert choose_space(0.5, never, positive=True).space == "linear"
    assert choose_space(None, never, positive=True).space == "linear"
    assert choose_space(1e-6, never, positive=False).space == "linear"
    assert choose_space(1e-6, lambda: 0.3, positive=True).space == "log"
    assert choose_space(1e-6, lambda: 1e-9, positive=True).space == "linear"  # log is worse
    assert choose_space(1e-6, lambda: None, positive=True).space == "linear"


def test_saved_fit_keeps_its_space_choice(tmp_path):
    res = lawfit.fit(synthetic_dataset(**TRUTH, noise=0.1, rng=2), exclude=None, profile=False)
    res.save(tmp_path / "r.json")
    back = lawfit.load(tmp_path / "r.json")
    assert back.space == "log" and back.meta["space_choice"] == res.meta["space_choice"]


def test_profile_interval_containing_zero_is_flagged():
    flat = lawfit.fit(
        synthetic_dataset(alpha=0.0, beta=0.5, seeds=1, noise=0.3, rng=4), exclude=None
    )
    lo, hi = flat.conf_int("profile").loc["alpha"]
    assert lo < 0 < hi
    flag = next(f for f in flat.flags if f.code == "profile_crosses_zero")
    assert flag.message.startswith("alpha:") and flag.severity == "info"
    steep = lawfit.fit(
        synthetic_dataset(alpha=0.6, beta=0.5, seeds=2, noise=0.05, rng=4), exclude=None
    )
    assert "profile_crosses_zero" not in {f.code for f in steep.flags}
