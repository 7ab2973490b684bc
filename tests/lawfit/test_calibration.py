"""Quick coverage check of the 95 % intervals (full study: benchmarks/calibration.py)."""

import math
import warnings

import numpy as np

import lawfit
from lawfit.testing import synthetic_dataset

TRUTH = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}


def _coverage(n, method, **fit_kw):
    hits = []
    for i in range(n):
        rng = np.random.default_rng([77, i])
        ds = synthetic_dataset(**TRUTH, ranks=(1, 2, 4, 8, 16, 32, 64, 128),
                               lengths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=3,
                               noise=0.1, rng=rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lawfit.fit(ds, exclude=None, rng=rng, space="log", **fit_kw)
        ci = res.conf_int(method)
        hits += [ci.loc[p, "low"] <= TRUTH[p] <= ci.loc[p, "high"] for p in ("alpha", "beta")]
    return float(np.mean(hits)), len(hits)


def _check(cov, m):
    # 4 binomial standard errors (alpha and beta hits are nearly independent)
    se = math.sqrt(0.95 * 0.05 / m)
    assert abs(cov - 0.95) < 4 * se + 0.01, cov


def test_profile_coverage_quick():
    cov, m = _coverage(60, "profile")
    _check(cov, m)


def test_case_bootstrap_coverage_quick():
    cov, m = _coverage(40, "bootstrap", bootstrap=200, profile=False)
    _check(cov, m)
