import dataclasses
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

import lawfit
from lawfit.errors import LawfitError
from lawfit.result import ExtrapolationWarning
from lawfit.testing import synthetic_dataset


@pytest.fixture(scope="module")
def ds():
    return synthetic_dataset(seeds=3, noise=0.05, rng=21)


@pytest.fixture(scope="module")
def res(ds):
    return lawfit.fit(ds, exclude=None)


@pytest.fixture(scope="module")
def bres(ds):
    return lawfit.fit(ds, exclude=None, bootstrap=300, ci_method="bca", rng=1)


def test_frozen(res):
    theta = res.theta.copy()
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'theta'"):
        res.theta = np.zeros(4)
    np.testing.assert_array_equal(res.theta, theta)


def test_conf_int_methods(res, bres):
    for r, methods in (
        (res, ("profile", "wald")),
        (bres, ("bootstrap", "percentile", "bca", "profile", "wald")),
    ):
        for m in methods:
            ci = r.conf_int(m)
            assert list(ci.columns) == ["low", "high"]
            assert list(ci.index) == ["C", "alpha", "beta", "b"]
            assert (ci["low"] < r.theta).all() and (r.theta < ci["high"]).all()
    assert res.conf_int().attrs["method"] == "profile"
    assert bres.conf_int().attrs["method"] == "bca"
    wide = res.conf_int("wald", confidence_level=0.99)
    narrow = res.conf_int("wald", confidence_level=0.5)
    assert (wide["high"] - wide["low"] > narrow["high"] - narrow["low"]).all()
    with pytest.raises(LawfitError, match="no bootstrap draws"):
        res.conf_int("bootstrap")
    with pytest.raises(LawfitError, match="method must be"):
        res.conf_int("jackknife")


def test_profile_close_to_wald_for_near_linear_problem(res):
    p, w = res.conf_int("profile"), res.conf_int("wald")
    for name in ("alpha", "beta"):
        assert p.loc[name, "low"] == pytest.approx(w.loc[name, "low"], abs=0.3 * res.stderr[name])
        assert p.loc[name, "high"] == pytest.approx(w.loc[name, "high"], abs=0.3 * res.stderr[name])


def test_draws(bres):
    d = bres.draws
    assert list(d.columns) == ["C", "alpha", "beta", "b", "status", "converged"]
    assert len(d) == 300
    assert d.attrs["n_failed"] == int((~d["converged"]).sum())
    assert sum(d.attrs["counts"].values()) == 300
    assert d.attrs["n_excluded"] == int((d["status"] == "unidentifiable").sum())


def test_predict_scalar_array_broadcast(res):
    p = res.predict(rank=[1, 8, 64], length=256)
    assert len(p) == 3
    assert list(p.columns) == ["rank", "length", "mean", "low", "high", "extrapolated"]
    assert (p["low"] < p["mean"]).all() and (p["mean"] < p["high"]).all()
    expected = lawfit.get_form("power_law").func(np.array([1.0, 8, 64]), 256.0, **res.params)
    assert np.allclose(p["mean"], expected)
    grid = res.predict(rank=np.array([[1], [8]]), length=np.array([64, 256, 1024]))
    assert len(grid) == 6


def test_prediction_wider_than_confidence(res, bres):
    for r in (res, bres):
        c = r.predict(rank=8, length=512)
        p = r.predict(rank=8, length=512, interval="prediction")
        assert (p["high"] - p["low"]).iloc[0] > (c["high"] - c["low"]).iloc[0]
    assert bres.predict(rank=8, length=512).attrs["method"] == "bootstrap"
    assert res.predict(rank=8, length=512).attrs["method"] == "delta"


def test_predict_extrapolation_flag(res):
    with pytest.warns(ExtrapolationWarning, match="extrapolating"):
        p = res.predict(rank=[4, 1024], length=512)
    assert list(p["extrapolated"]) == [False, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res.predict(rank=4, length=512)


def test_predict_from_frame_and_dataset(res, ds):
    df = pd.DataFrame({"rank": [2, 4], "length": [128, 128]})
    from_frame = res.predict(df)
    pd.testing.assert_frame_equal(from_frame, res.predict(rank=[2, 4], length=128))
    grid = res.predict(ds[["rank", "length"]])
    assert len(grid) == ds.sizes["rank"] * ds.sizes["length"]
    assert {(r, n) for r, n in zip(grid["rank"], grid["length"], strict=True)} == {
        (r, n) for r in ds["rank"].values for n in ds["length"].values
    }
    law = lawfit.get_form("power_law").func
    want = law(grid["rank"].to_numpy(float), grid["length"].to_numpy(float), **res.params)
    np.testing.assert_allclose(grid["mean"], want, rtol=1e-12)


def test_predict_errors(res):
    with pytest.raises(LawfitError, match="predict needs input"):
        res.predict(rank=4)
    with pytest.raises(LawfitError, match="unknown input"):
        res.predict(rank=4, length=4, seq=3)
    with pytest.raises(LawfitError, match="interval must be"):
        res.predict(rank=4, length=4, interval="credible")


def test_summary_renders(bres):
    s = bres.summary()
    text = str(s)
    for token in ("coef", "std err", "R-squared", "AICc", "alpha", "beta", "Bootstrap:"):
        assert token in text
    html = s.as_html()
    assert html.startswith("<table") and "alpha" in html
    assert bres._repr_html_() == html
    tex = s.as_latex()
    assert r"\begin{tabular}" in tex and r"$\alpha$" in tex and r"\%" in tex


def test_summary_text_shows_the_law_in_plain_text(bres):
    text = str(bres.summary())
    assert "Law: ΔL = C · r^α · ℓ^(−β) + b" in text
    assert "\\" not in text and "{" not in text and "$" not in text
    assert bres.form.latex in bres.summary().as_latex()


def test_to_dataframe_and_dataset(bres):
    df = bres.to_dataframe()
    assert list(df.columns) == [
        "estimate",
        "stderr",
        "low",
        "high",
        "ci_method",
        "confidence_level",
    ]
    xr_ds = bres.to_dataset()
    assert xr_ds["draws"].shape == (300, 4)
    assert xr_ds.attrs["r2"] == bres.r2


def test_save_load_roundtrip(bres, tmp_path):
    path = tmp_path / "fit.json"
    bres.save(path)
    json.loads(path.read_text())  # plain JSON
    back = lawfit.load(path)
    assert back.params == bres.params
    assert np.allclose(back.cov_matrix, bres.cov_matrix)
    for m in ("bootstrap", "profile", "wald"):
        assert np.allclose(back.conf_int(m), bres.conf_int(m), equal_nan=True)
    assert back.flags == bres.flags
    assert str(back.summary()) == str(bres.summary())
    assert back.exclusions.shape[0] == bres.exclusions.shape[0]
    pd.testing.assert_frame_equal(
        back.predict(rank=4, length=256), bres.predict(rank=4, length=256)
    )


def test_groups_save_load(tmp_path):
    ds = synthetic_dataset(groups={"model": ["a", "b"]}, rng=3)
    res = lawfit.fit(ds, by="model", exclude=None, profile=False)
    res.save(tmp_path / "g.json")
    back = lawfit.load(tmp_path / "g.json")
    assert back["b"].params == res["b"].params


def test_load_unregistered_form(tmp_path):
    def law(rank, length, *, C, alpha, beta, b):
        return C * rank**alpha * length ** (-beta) + b

    lawfit.register_form(
        "tmp_custom",
        law,
        linear=("C", "b"),
        bounds={"alpha": (-1, 3), "beta": (-1, 3)},
        overwrite=True,
    )
    res = lawfit.fit(synthetic_dataset(rng=4), "tmp_custom", exclude=None, profile=False)
    res.save(tmp_path / "c.json")
    from lawfit.forms import _REGISTRY

    del _REGISTRY["tmp_custom"]
    with pytest.raises(LawfitError, match="no importable reference.*register it first"):
        lawfit.load(tmp_path / "c.json")
    lawfit.register_form(
        "tmp_custom", law, linear=("C", "b"), bounds={"alpha": (-1, 3), "beta": (-1, 3)}
    )
    assert lawfit.load(tmp_path / "c.json").params == res.params


def test_load_errors(tmp_path):
    with pytest.raises(LawfitError, match="does not exist"):
        lawfit.load(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(LawfitError, match="is not a JSON file"):
        lawfit.load(tmp_path / "x.json")


def test_gof_consistency(res):
    n, k = res.n_obs, 4
    assert res.bic - res.aic == pytest.approx((k + 1) * (math.log(n) - 2))
    assert res.rmse == pytest.approx(
        np.sqrt(np.mean((res.points["loss_reduction"] - res.points["fitted"]) ** 2))
    )


def test_groups_predict():
    ds = synthetic_dataset(groups={"model": ["a", "b"]}, rng=3)
    res = lawfit.fit(ds, by="model", exclude=None, profile=False)
    p = res.predict(rank=[2, 4], length=256)
    assert list(p.columns[:3]) == ["model", "rank", "length"]
    assert len(p) == 4 and list(p["model"]) == ["a", "a", "b", "b"]


def test_profile_curve(res):
    pc = res.profile_curve("alpha")
    assert list(pc.columns) == ["value", "F", "converged"]
    assert pc["F"].min() == pytest.approx(0.0, abs=1e-6)
    assert pc["F"].max() > pc.attrs["cutoff"]
    with pytest.raises(LawfitError, match="unknown parameter"):
        res.profile_curve("gamma")


_USER_FORM_MODULE = """
import numpy as np


def user_law(rank, length, *, C, alpha, beta):
    return C * np.exp(alpha * np.log(rank) - beta * np.log(length))
"""


@pytest.fixture()
def user_form_module(tmp_path, monkeypatch):
    """An importable module holding a user's law (what a user's package would be)."""
    (tmp_path / "i12_user_forms.py").write_text(_USER_FORM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module("i12_user_forms")


def test_result_owns_its_form_after_reregistering(ds):
    def law(rank, length, *, C, alpha, beta, b):
        return C * rank**alpha * length ** (-beta) + b

    def other(rank, length, *, C, alpha, beta, b):
        return 1000.0 + 0 * rank * length * C * alpha * beta * b

    kw = dict(linear=("C", "b"), bounds={"alpha": (-1, 3), "beta": (-1, 3)}, overwrite=True)
    lawfit.register_form("tmp_owned", law, **kw)
    try:
        res = lawfit.fit(ds, "tmp_owned", exclude=None, profile=False)
        before = res.predict(rank=4, length=256, warn=False)["mean"].iloc[0]
        lawfit.register_form("tmp_owned", other, **kw)
        after = res.predict(rank=4, length=256, warn=False)["mean"].iloc[0]
    finally:
        from lawfit.forms import _REGISTRY

        _REGISTRY.pop("tmp_owned", None)
    assert after == before
    assert res.form.func is law


def test_unregistered_form_object_fits_and_predicts(ds):
    from lawfit.forms import Form

    f = Form(
        "never_registered",
        lambda rank, length, *, C, alpha, beta, b: C * rank**alpha * length ** (-beta) + b,
        inputs=("rank", "length"),
        params=("C", "alpha", "beta", "b"),
        bounds={"alpha": (-1, 3), "beta": (-1, 3)},
        linear=("C", "b"),
    )
    res = lawfit.fit(ds, f, exclude=None, profile=False)
    p = res.predict(rank=4, length=256, warn=False)["mean"].iloc[0]
    assert p == pytest.approx(f.func(4.0, 256.0, **res.params))


def test_saved_user_form_loads_in_a_fresh_process(ds, tmp_path, user_form_module):
    import subprocess
    import sys

    lawfit.register_form(
        "i12_user_law",
        user_form_module.user_law,
        linear=("C",),
        bounds={"alpha": (-1, 3), "beta": (-1, 3)},
        overwrite=True,
    )
    try:
        res = lawfit.fit(ds, "i12_user_law", exclude=None, profile=False)
    finally:
        from lawfit.forms import _REGISTRY

        _REGISTRY.pop("i12_user_law", None)
    res.save(tmp_path / "user.json")
    expected = res.predict(rank=4, length=256, warn=False)["mean"].iloc[0]
    path = str(tmp_path / "user.json")
    code = (
        f"import lawfit; r = lawfit.load({path!r}); "
        "print(repr(float(r.predict(rank=4, length=256, warn=False)['mean'].iloc[0])))"
    )
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + [p for p in sys.path if p]))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert float(out.stdout.strip()) == expected
    # without the module on the path (and nothing registered) the error says how to fix it
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and p != str(tmp_path))
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert bad.returncode != 0
    assert "cannot import module 'i12_user_forms'" in bad.stderr
    assert "register it first" in bad.stderr


def test_fixed_form_round_trips(ds, tmp_path):
    res = lawfit.fit(ds, exclude=None, profile=False, fixed={"b": 0.0})
    assert res.param_names == ("C", "alpha", "beta")
    res.save(tmp_path / "fixed.json")
    back = lawfit.load(tmp_path / "fixed.json")
    assert dict(back.form.fixed) == {"b": 0.0}
    a = res.predict(rank=[2, 8], length=256, warn=False)["mean"]
    b = back.predict(rank=[2, 8], length=256, warn=False)["mean"]
    np.testing.assert_array_equal(a, b)


def _all_arrays(obj, seen=None):
    """Every numpy array reachable from a result's fields (mappings and dataclasses too)."""
    import dataclasses
    from collections.abc import Mapping

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _all_arrays(v, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _all_arrays(getattr(obj, f.name), seen)


def test_writing_into_any_array_of_a_result_raises(bres):
    arrays = list(_all_arrays(bres))
    # theta, cov, draws, status, resid, jack and 3 arrays per profiled parameter
    assert len(arrays) >= 6 + 3 * len(bres.param_names)
    for a in arrays:
        assert not a.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            a.reshape(-1)[0] = a.reshape(-1)[-1]
    for name in ("gof", "bounds", "meta"):
        with pytest.raises(TypeError, match="does not support item assignment"):
            getattr(bres, name)["x"] = 1
        assert "x" not in getattr(bres, name)
    with pytest.raises(TypeError, match="does not support item assignment"):
        bres.profile_data["alpha"]["F"] = None
    with pytest.raises(ValueError, match="read-only"):
        bres.points.iloc[0, 0] = -1.0
    draws = bres.draws  # a writable copy: the result is unchanged
    draws.iloc[0, 0] = -1.0
    assert bres.draws.iloc[0, 0] != -1.0


def test_old_level_keyword_still_works_with_a_deprecation_warning(res):
    with pytest.warns(DeprecationWarning, match="use 'confidence_level'"):
        old = res.conf_int("wald", level=0.9)
    pd.testing.assert_frame_equal(old, res.conf_int("wald", confidence_level=0.9))
    with pytest.warns(DeprecationWarning, match="use 'confidence_level'"):
        p_old = res.predict(rank=4, length=256, level=0.9, warn=False)
    p_new = res.predict(rank=4, length=256, confidence_level=0.9, warn=False)
    pd.testing.assert_frame_equal(p_old, p_new)
    # and the level reached the interval: 0.9 is narrower than the default 0.95
    p95 = res.predict(rank=4, length=256, warn=False)
    assert (p_new["high"] - p_new["low"]).iloc[0] < (p95["high"] - p95["low"]).iloc[0]
    for bad in (0, 1, 1.5, "x"):
        with pytest.raises(LawfitError, match="confidence_level must be a number strictly"):
            res.conf_int("wald", confidence_level=bad)


def test_flags_are_structured_and_round_trip(tmp_path):
    from lawfit.result import Flag

    ds = synthetic_dataset(ranks=(1, 2, 4), lengths=(64, 128, 256), seeds=1, noise=0.02, rng=3)
    res = lawfit.fit(ds, exclude=None, bootstrap=100, rng=0)
    assert res.flags and all(isinstance(f, Flag) for f in res.flags)
    assert all(f.severity in ("info", "warning") and f.code and f.message for f in res.flags)
    res.save(tmp_path / "f.json")
    assert lawfit.load(tmp_path / "f.json").flags == res.flags
    with pytest.raises(LawfitError, match="severity"):
        Flag("x", "y", severity="fatal")


def test_exponent_correlation_reported_and_flagged():
    # a triangle design like the shipped cells: r/l varies, r and l move together
    pts = [(1, 64), (1, 128), (1, 256), (1, 512), (2, 128), (2, 256), (2, 512), (4, 256), (4, 512)]
    r = np.array([p[0] for p in pts], float)
    ell = np.array([p[1] for p in pts], float)
    y = 119 * r**0.54 * ell**-0.53 - 0.9 + np.random.default_rng(0).normal(0, 0.22, 9)
    tri = lawfit.fit(
        pd.DataFrame({"rank": r, "length": ell, "loss_reduction": y}), exclude=None, profile=False
    )
    ec = tri.exponent_correlation
    assert list(ec.index) == ["alpha", "beta"]
    assert ec.attrs["source"] == "asymptotic covariance"
    assert abs(ec.loc["alpha", "beta"]) > 0.95
    assert "exponents_not_separately_identified" in {f.code for f in tri.flags}
    # the full factorial grid separates them
    full = lawfit.fit(
        synthetic_dataset(seeds=2, rng=5), exclude=None, bootstrap=100, rng=0, profile=False
    )
    assert full.exponent_correlation.attrs["source"].endswith("bootstrap replicates")
    assert abs(full.exponent_correlation.loc["alpha", "beta"]) < 0.95
    assert "exponents_not_separately_identified" not in {f.code for f in full.flags}
