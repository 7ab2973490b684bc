"""The profile-likelihood interval of a logistic's 50 % point (the recall threshold p*)."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from lawfit.crossing_profile import (
    constrained_isotonic_lr,
    crossing_interval,
    isotonic_crossing_interval,
    isotonic_lr_by_split,
    monotone_lr_quantile,
    profile_loglik,
)


def _mle(x, y):
    import statsmodels.api as sm

    res = sm.Logit(y, np.column_stack([np.ones_like(x), x])).fit(disp=0)
    a, b = res.params
    return -a / b, res.llf


def _glm_loglik_through(crossing, x, y):
    """Log-likelihood of the logistic whose 50 % point is fixed, by statsmodels' GLM."""
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.GLM(y, (x - crossing)[:, None], family=sm.families.Binomial()).fit()
    return res.llf


def _one_miss_runs(gen, n_runs=36, crossing=-2.2, slope=3.0):
    """Long-context-like data: each run's tokens until (and with) its first miss."""
    xs, ys = [], []
    for _ in range(n_runs):
        shift = gen.uniform(-1.0, 5.0)  # runs from far below to far above the threshold
        for xt in gen.normal(crossing - 1.0 + shift, 2.0, size=200):
            hit = gen.random() < expit(slope * (xt - crossing))
            xs.append(xt)
            ys.append(float(hit))
            if not hit:
                break
    return np.array(xs), np.array(ys)


def test_the_bounds_are_where_the_likelihood_ratio_meets_its_cutoff():
    gen = np.random.default_rng(0)
    x = gen.normal(0.0, 2.0, 400)
    y = (gen.random(400) < expit(2.0 * (x + 1.0))).astype(float)
    estimate, llf = _mle(x, y)
    low, high = crossing_interval(x, y, estimate, 0.95)
    assert low < estimate < high
    for bound in (low, high):  # statsmodels' GLM through the bound, not our profile
        lr = 2 * (llf - _glm_loglik_through(bound, x, y))
        assert lr == pytest.approx(stats.chi2.ppf(0.95, 1), abs=1e-5)
    assert profile_loglik(estimate, x, y) == pytest.approx(llf, abs=1e-7)


def test_a_flat_relation_leaves_the_interval_open():
    gen = np.random.default_rng(1)
    x = gen.normal(0.0, 1.0, 30)
    y = (gen.random(30) < 0.5).astype(float)  # recall unrelated to x
    estimate, _ = _mle(x, y)
    low, high = crossing_interval(x, y, estimate, 0.95)
    assert math.isinf(low) or math.isinf(high)


def test_no_finite_crossing_gives_the_whole_line():
    x = np.linspace(-1.0, 1.0, 10)
    y = np.r_[np.zeros(5), np.ones(5)]
    assert crossing_interval(x, y, math.inf, 0.95) == (-math.inf, math.inf)


def test_the_interval_holds_its_level_with_one_miss_per_run():
    """Calibration on known truth, in the regime where the run bootstrap covered 36-84 %."""
    gen = np.random.default_rng(2)
    truth, covered, reps = -2.2, 0, 300
    for _ in range(reps):
        x, y = _one_miss_runs(gen, crossing=truth)
        low, high = crossing_interval(x, y, _mle(x, y)[0], 0.95)
        covered += low <= truth <= high
    # binomial SD at 0.95 with 300 datasets: 1.3 points; the band is about 3 SD wide
    assert 0.91 <= covered / reps <= 0.99


def test_the_online_likelihood_ratio_equals_the_direct_one_at_every_split():
    gen = np.random.default_rng(3)
    for n in (1, 2, 7, 60, 400):
        x = np.sort(gen.normal(size=n))
        y = (gen.random(n) < expit(2 * x)).astype(float)
        direct = [constrained_isotonic_lr(y, k) for k in range(n + 1)]
        np.testing.assert_allclose(isotonic_lr_by_split(y), direct, atol=1e-9)


def test_the_monotone_cutoff_matches_the_published_quantile():
    # Banerjee & Wellner (2001): the 0.95 quantile of their limit law D is 2.286
    assert monotone_lr_quantile(0.95) == pytest.approx(2.286, abs=0.03)
    assert monotone_lr_quantile(0.9) < monotone_lr_quantile(0.95) < stats.chi2.ppf(0.95, 1)
    assert math.isnan(monotone_lr_quantile(0.999))


def test_the_isotonic_interval_holds_its_level_with_one_miss_per_run():
    """Model-free: no logistic shape assumed, the monotone likelihood ratio inverted."""
    gen = np.random.default_rng(4)
    truth, covered, reps = -2.2, 0, 300
    for _ in range(reps):
        x, y = _one_miss_runs(gen, crossing=truth)
        low, high = isotonic_crossing_interval(x, y, 0.95)
        covered += low <= truth <= high
    assert 0.91 <= covered / reps <= 0.995
