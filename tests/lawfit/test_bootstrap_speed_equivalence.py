"""The optimised bootstrap path gives the same answers as straightforward references.

The case/cluster bootstrap of the power law (least squares, linear or log space) takes a fast
path: per-design-point sufficient statistics instead of (R, n) weights, a shared
Gauss-Newton warm start, and a dedicated vectorised LM (``_varpro.lm_power``). These
tests pin it to (a) independent per-replicate scipy ``least_squares`` fits of the
resampled data, (b) the generic code paths it replaces.
"""

import numpy as np
import pytest
from scipy.optimize import least_squares

import lawfit
from lawfit import _varpro as vp
from lawfit.bootstrap import bootstrap_weights, resample_collapsed
from lawfit.forms import get_form
from lawfit.testing import synthetic_dataset


def _power(x, ell, p):
    return p[0] * np.exp(p[1] * np.log(x) - p[2] * np.log(ell)) + p[3]


def _reference_fit(x, ell, y, w, start, space="linear"):
    """Per-replicate weighted least squares, converged as tightly as MINPACK allows."""
    sw = np.sqrt(w)
    t = np.log if space == "log" else (lambda v: v)
    out = least_squares(
        lambda p: sw * (t(_power(x, ell, p)) - t(y)),
        start,
        method="lm",
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=20000,
    )
    return out.x, float(np.sum(out.fun**2))


@pytest.mark.parametrize(
    "noise, seeds, rng, space",
    [(0.05, 3, 0, "linear"), (0.5, 2, 11, "linear"), (0.05, 3, 0, "log"), (0.3, 2, 11, "log")],
)
def test_replicates_match_per_replicate_least_squares(noise, seeds, rng, space):
    ds = synthetic_dataset(seeds=seeds, noise=noise, rng=rng)
    R, seed = 200, 4
    res = lawfit.fit(ds, exclude=None, bootstrap=R, rng=seed, profile=False, space=space)
    assert res.boot.n_failed == 0
    pts = res.points
    x, ell, y = (
        pts["rank"].to_numpy(float),
        pts["length"].to_numpy(float),
        pts["loss_reduction"].to_numpy(float),
    )
    # the same draws as lawfit's (the bootstrap is the first use of the generator)
    W = bootstrap_weights(R, np.arange(y.size), np.random.default_rng(seed))
    draws = res.draws[["C", "alpha", "beta", "b"]].to_numpy(float)
    t = np.log if space == "log" else (lambda v: v)
    for r in np.linspace(0, R - 1, 8).astype(int):
        ref, ref_obj = _reference_fit(x, ell, y, W[r], res.theta, space)
        obj = float(np.sum(W[r] * (t(_power(x, ell, draws[r])) - t(y)) ** 2))
        # same optimum: objective equal to ~1e-12 relative, parameters to ~1e-6
        assert obj <= ref_obj * (1 + 1e-11)
        scale = np.array([abs(ref[0]), 1.0, 1.0, abs(ref[0])])  # b relative to C's size
        assert np.all(np.abs(draws[r] - ref) <= 2e-6 * scale), (r, draws[r], ref)


def test_resample_collapsed_is_bootstrap_weights_collapsed():
    ds = synthetic_dataset(seeds=3, rng=1)
    res = lawfit.fit(ds, exclude=None, profile=False)
    pts = res.points
    X = [pts["rank"].to_numpy(float), pts["length"].to_numpy(float)]
    y = pts["loss_reduction"].to_numpy(float)
    _, seed_idx = np.unique(pts["seed"].to_numpy(), return_inverse=True)
    for clusters in (np.arange(y.size), seed_idx):
        W = bootstrap_weights(300, clusters, np.random.default_rng(7))
        Xc, Yc, Wc = vp.collapse(X, y, W)
        Xu, Yu, Wu = resample_collapsed(300, clusters, X, y, np.random.default_rng(7))
        for a, b in zip(Xc, Xu, strict=True):
            assert np.array_equal(a, b)
        assert np.array_equal(Wc, Wu)  # identical draws, exact integer counts
        np.testing.assert_allclose(Yu, Yc, rtol=1e-13, atol=1e-15)


def _model(X):
    f = get_form("power_law")
    lo, hi = f.lower_upper()
    return vp.Model(f.func, f.jac, X, f.params, f.linear, lo, hi)


@pytest.mark.parametrize("space", ["linear", "log"])
def test_lm_power_matches_generic_lm(space):
    ds = synthetic_dataset(seeds=3, noise=0.1, rng=2)
    res = lawfit.fit(ds, exclude=None, profile=False, space=space)
    pts = res.points
    X = [pts["rank"].to_numpy(float), pts["length"].to_numpy(float)]
    y = pts["loss_reduction"].to_numpy(float)
    z = np.log(y) if space == "log" else y
    Xu, Zu, Wu = resample_collapsed(64, np.arange(y.size), X, z, np.random.default_rng(3))
    Yu = np.exp(Zu) if space == "log" else Zu  # as lawfit.bootstrap.fit_resampled passes it
    model = _model(Xu)
    logs = vp.power_law_logs(model)
    assert logs is not None
    start = np.tile(res.theta, (64, 1))
    tol = dict(ftol=1e-14, xtol=1e-12)
    fast = vp.lm_power(logs, start, Yu, Wu, model.lower, model.upper, space=space, **tol)
    slow = vp.lm(model, start, Yu, Wu, space=space, mode="full", **tol)
    assert fast[2].all() and slow[2].all()
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-11)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-6, atol=1e-9)
    # the shared warm start: the same pieces as evaluating every replicate at theta_hat
    shared = vp.power_shared_pieces(logs, res.theta, Yu, Wu, space)
    lr, ll = logs
    consts = (
        np.stack([lr, -ll]),
        np.stack([np.ones_like(lr), lr, ll], axis=1),
        np.stack([np.ones_like(lr), lr, ll, lr * lr, ll * ll, lr * ll], axis=1),
    )
    Zt = np.log(Yu) if space == "log" else Yu
    each = vp._power_pieces(
        start, Wu, Zt, Wu.sum(axis=1), np.arange(64), consts, log=space == "log"
    )
    for a, b in zip(shared, each, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


def test_power_grid_sse_matches_generic():
    ds = synthetic_dataset(seeds=2, rng=4)
    pts = lawfit.fit(ds, exclude=None, profile=False).points
    X = [pts["rank"].to_numpy(float), pts["length"].to_numpy(float)]
    y = pts["loss_reduction"].to_numpy(float)
    model = _model(X)
    generic = _model(X)
    generic.func = lambda x, ell, *, C, alpha, beta, b: C * x**alpha * ell ** (-beta) + b
    assert vp.power_law_logs(model) is not None and vp.power_law_logs(generic) is None
    grid = vp.make_grid([(-1.0, 2.0), (-0.5, 1.5)], 11)
    W = bootstrap_weights(5, np.arange(y.size), np.random.default_rng(0))
    s1, l1 = vp.grid_sse(model, grid, y[None], W)
    s2, l2 = vp.grid_sse(generic, grid, y[None], W)
    np.testing.assert_allclose(s1, s2, rtol=1e-7, atol=1e-12 * np.max(s2))
    np.testing.assert_allclose(l1, l2, rtol=1e-7, atol=1e-10)


def test_fast_path_same_as_generic_bootstrap_path():
    """Whole bootstrap: fast power-law path vs the generic path (same form via lambda)."""
    ds = synthetic_dataset(seeds=3, rng=6)
    fast = lawfit.fit(ds, exclude=None, bootstrap=150, unit="seed", rng=2, profile=False)
    lawfit.register_form(
        "power_law_generic_test",
        lambda rank, length, *, C, alpha, beta, b: C * rank**alpha * length ** (-beta) + b,
        inputs=("rank", "length"),
        linear=("C", "b"),
        bounds={"alpha": (-2.0, 4.0), "beta": (-2.0, 4.0)},
        overwrite=True,
    )
    try:
        slow = lawfit.fit(
            ds,
            "power_law_generic_test",
            exclude=None,
            bootstrap=150,
            unit="seed",
            rng=2,
            profile=False,
        )
    finally:
        from lawfit import forms

        forms._REGISTRY.pop("power_law_generic_test", None)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-6)
    assert fast.boot.n_failed == slow.boot.n_failed
    a = fast.draws[["C", "alpha", "beta", "b"]].to_numpy(float)
    b = slow.draws[["C", "alpha", "beta", "b"]].to_numpy(float)
    # the generic LM stops at ftol=1e-10 (looser): agreement to its precision
    np.testing.assert_allclose(a[:, 1:3], b[:, 1:3], rtol=0, atol=1e-5)


def test_failed_replicates_still_counted_on_fast_path():
    # cluster on length with 2 lengths: replicates with one length cannot identify beta
    ds = synthetic_dataset(lengths=(64, 4096), seeds=2, rng=9)
    res = lawfit.fit(ds, exclude=None, bootstrap=200, unit="length", rng=0, profile=False)
    d = res.draws
    assert len(d) == 200
    assert res.boot.n_failed == int((~d["converged"]).sum()) > 0
