"""The logistic-link test of greedy recall: its level, its power and its statistic."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import optimize
from scipy.special import expit, xlogy

from lawfit.recall_link import logistic_irls, logistic_link_test


def _draw(gen, n=400, a=0.8, b=1.5, kink=False):
    x = gen.normal(0.0, 2.0, n)
    mu = expit(a + b * x)
    if kink:  # recall forced to 1 above x = 0 (p = 0.5), as sufficiency does
        mu = np.where(x > 0, 1.0, mu)
    return x, (gen.random(n) < mu).astype(float)


def _fit(x, y):
    return logistic_irls(x, y, np.ones_like(x))


def test_irls_is_the_logistic_maximum_likelihood():
    x, y = _draw(np.random.default_rng(0))
    a, b = _fit(x, y)
    ref = sm.Logit(y, sm.add_constant(x)).fit(disp=0).params
    assert a == pytest.approx(ref[0], abs=1e-8) and b == pytest.approx(ref[1], abs=1e-8)


def test_a_newton_overshoot_is_halved_to_the_maximum():
    # plain Newton from (0, 1) diverges on these 17 outcomes (found by search) although the
    # maximum exists; the halved steps reach it, as statsmodels does
    x = np.array([2.23, 1.17, -0.87, -4.81, -2.53, -0.76, 1.17, -0.44, -1.61, 4.57, -0.03])
    x = np.concatenate([x, [4.65, -0.42, 2.17, -1.65, 1.38, 1.33]])
    y = np.zeros(17)
    y[[6, 9, 11]] = 1.0
    a, b = _fit(x, y)
    ref = sm.Logit(y, sm.add_constant(x)).fit(disp=0).params
    assert a == pytest.approx(ref[0], abs=1e-7) and b == pytest.approx(ref[1], abs=1e-7)


def test_separated_data_have_no_logistic_fit():
    x = np.arange(10.0)
    assert _fit(x, (x > 4.5).astype(float)) is None


def test_statistic_is_the_isotonic_gain_over_the_logistic():
    x, y = _draw(np.random.default_rng(1))
    a, b = _fit(x, y)
    order = np.argsort(x)
    iso = optimize.isotonic_regression(y[order]).x
    mu = expit(a + b * x[order])

    def loglik(m):
        return np.sum(xlogy(y[order], m) + xlogy(1 - y[order], 1 - m))

    stat, pvalue, failed = logistic_link_test(x, y, a, b, 0, np.random.default_rng(0))
    assert stat == pytest.approx(2 * (loglik(iso) - loglik(mu)), abs=1e-9)
    assert np.isnan(pvalue) and failed == 0


def test_tokens_sharing_a_value_are_one_group():
    # two tokens at each x, one recalled and one not, in either order: a monotone curve of x
    # must give both 0.5, so the order of the pair cannot matter
    x = np.repeat(np.linspace(-3, 3, 40), 2)
    y = np.tile([1.0, 0.0], 40)
    a, b = 0.0, 1e-3
    forward = logistic_link_test(x, y, a, b, 0, np.random.default_rng(0))[0]
    backward = logistic_link_test(x, y[::-1].copy(), a, b, 0, np.random.default_rng(0))[0]
    assert forward == pytest.approx(backward, abs=1e-12)
    assert forward < 1e-3  # every group at 0.5 is what the flat logistic says too


def test_level_under_an_exactly_logistic_truth():
    gen = np.random.default_rng(2)
    rejected = 0
    for _ in range(100):
        x, y = _draw(gen, n=300)
        a, b = _fit(x, y)
        rejected += logistic_link_test(x, y, a, b, 99, gen)[1] < 0.05
    assert 1 <= rejected <= 11  # 5 of 100 expected; binomial 99 % band


def test_power_against_the_sufficiency_kink():
    gen = np.random.default_rng(3)
    rejected = 0
    for _ in range(20):
        x, y = _draw(gen, n=400, a=0.2 * 1.5, b=1.5, kink=True)  # crossing at p = 0.43
        a, b = _fit(x, y)
        rejected += logistic_link_test(x, y, a, b, 99, gen)[1] < 0.05
    assert rejected >= 16


def test_level_where_many_null_draws_come_out_separated():
    # 30 steep tokens: about a third of the null draws are separated and left out, as the
    # data themselves would be (counting them as LR = 0 rejected 8-36 % of simulated
    # long-context datasets at 0.05: docs/analyses.md)
    gen = np.random.default_rng(5)
    rejected = tested = separated = 0
    while tested < 100:
        x, y = _draw(gen, n=30, a=1.0, b=4.0)
        fit = _fit(x, y)
        if fit is None:  # separated data: nothing to test
            continue
        tested += 1
        _, pvalue, failed = logistic_link_test(x, y, *fit, 99, gen)
        rejected += pvalue < 0.05
        separated += failed
    assert separated > 1500  # the regime this test is about
    assert 1 <= rejected <= 11


def test_the_shared_likelihoods_agree_with_each_other_and_with_a_direct_sum():
    """binomial_loglik with one trial per outcome is the logistic log-likelihood at sigmoid(eta)."""
    from lawfit._bernoulli import binomial_loglik, logistic_loglik

    gen = np.random.default_rng(3)
    eta = gen.normal(0, 3, 50)
    y = (gen.random(50) < expit(eta)).astype(float)
    direct = float(np.sum(y * np.log(expit(eta)) + (1 - y) * np.log(expit(-eta))))
    assert logistic_loglik(eta, y) == pytest.approx(direct, rel=1e-12)
    assert binomial_loglik(y, 1, expit(eta)) == pytest.approx(direct, rel=1e-12)
    # grouped counts: 3 of 5 at 0.6 is 3 log 0.6 + 2 log 0.4; a certain outcome costs nothing
    assert binomial_loglik(np.array([3.0, 0.0]), np.array([5.0, 4.0]), np.array([0.6, 0.0])) == (
        pytest.approx(3 * np.log(0.6) + 2 * np.log(0.4), rel=1e-12)
    )
