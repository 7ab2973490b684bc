"""Quick coverage checks of the 95 % intervals (full study: benchmarks/calibration.py).

Tolerances come from the binomial standard error of the observed coverage (alpha and
beta hits of one data set are counted separately; they are nearly independent).
"""

import math
import warnings

import numpy as np

import lawfit
from lawfit.testing import synthetic_dataset

TRUTH = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}
GRID = {"ranks": (1, 2, 4, 8, 16, 32, 64, 128), "lengths": (64, 128, 256, 512, 1024, 2048, 4096)}


def _coverage(n, method, syn=None, **fit_kw):
    """Share of (alpha, beta) intervals covering the truth over n data sets, and 2 n."""
    hits = []
    for i in range(n):
        rng = np.random.default_rng([77, i])
        ds = synthetic_dataset(**TRUTH, **GRID, rng=rng, **(syn or {"seeds": 3, "noise": 0.1}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lawfit.fit(ds, exclude=None, rng=rng, **fit_kw)
        ci = res.conf_int(method)
        hits += [ci.loc[p, "low"] <= TRUTH[p] <= ci.loc[p, "high"] for p in ("alpha", "beta")]
    return float(np.mean(hits)), len(hits)


def _near_nominal(cov, m, slack=0.01, n_se=4):
    se = math.sqrt(0.95 * 0.05 / m)
    assert abs(cov - 0.95) < n_se * se + slack, cov


def test_default_fit_is_calibrated():
    """What ``lawfit.fit(ds, bootstrap=...)`` gives: 95 % within 3 binomial SEs (2.7 points).

    The earlier default (linear space, 91-93 %; docs/lawfit.md) sits outside this band.
    """
    cov, m = _coverage(300, "bootstrap", bootstrap=200, profile=False)
    _near_nominal(cov, m, slack=0.0, n_se=3)


def test_default_fit_is_calibrated_on_additive_noise():
    cov, m = _coverage(
        100,
        "bootstrap",
        {"seeds": 3, "noise": 0.1, "noise_model": "additive"},
        bootstrap=200,
        profile=False,
    )
    _near_nominal(cov, m)


def test_profile_coverage_quick():
    cov, m = _coverage(200, "profile", space="log")
    _near_nominal(cov, m)


def test_case_bootstrap_coverage_quick():
    cov, m = _coverage(100, "bootstrap", bootstrap=200, profile=False, space="log")
    _near_nominal(cov, m)


def test_cluster_bootstrap_needs_many_clusters():
    run = {"noise": 0.05, "noise_kind": "run"}
    many, m = _coverage(
        80,
        "bootstrap",
        {"seeds": 40, **run},
        bootstrap=200,
        unit="seed",
        profile=False,
        space="log",
    )
    _near_nominal(many, m, slack=0.02)  # G/(G-1) and t-vs-normal shortfall of ~1 point
    few, m = _coverage(
        80, "bootstrap", {"seeds": 3, **run}, bootstrap=200, unit="seed", profile=False, space="log"
    )
    assert few < 0.95 - 4 * math.sqrt(0.95 * 0.05 / m), few  # clearly too narrow
