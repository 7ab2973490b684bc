"""Cluster-robust intervals (lawfit.robust): the CR1 sandwich, t(G - 1), calibration."""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

import lawfit
from lawfit.design import form_jacobian
from lawfit.errors import LawfitError
from lawfit.robust import cluster_covariance
from lawfit.testing import synthetic_dataset

TRUTH = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}
RANKS, LENGTHS = (1, 2, 4, 8, 16, 32, 64, 128), (64, 128, 256, 512, 1024, 2048, 4096)


def sweep(seeds, rng, noise_kind="run"):
    return synthetic_dataset(
        **TRUTH,
        ranks=RANKS,
        lengths=LENGTHS,
        seeds=seeds,
        noise=0.05,
        noise_kind=noise_kind,
        rng=rng,
    )


@pytest.mark.parametrize("space", ["log", "linear"])
def test_the_covariance_is_statsmodels_cluster_covariance_of_the_linearised_fit(space):
    """At a least-squares optimum JᵀJ·Δ = Jᵀe has Δ = 0: OLS of e on J has residuals e."""
    res = lawfit.fit(sweep(4, 1), exclude=None, bootstrap=0, space=space)
    pts = res.points
    J = form_jacobian(res.form, pts, dict(zip(res.param_names, res.theta, strict=True)))
    if space == "log":
        J = J / pts["fitted"].to_numpy()[:, None]
    ols = sm.OLS(pts["residual"].to_numpy(), J).fit(
        cov_type="cluster", cov_kwds={"groups": pts["seed"].to_numpy()}
    )
    assert np.abs(ols.params).max() < 1e-6 * np.abs(res.theta).max()  # an optimum indeed
    cov, G = cluster_covariance(res, "seed")
    assert G == 4
    np.testing.assert_allclose(cov, ols.cov_params(), rtol=1e-6)
    ci = res.conf_int("cluster", cluster="seed")
    se = np.sqrt(np.diag(cov))
    from scipy import stats

    np.testing.assert_allclose(ci["high"] - res.theta, stats.t.ppf(0.975, 3) * se, rtol=1e-12)
    assert ci.attrs["method"] == "cluster"


def test_coverage_with_three_target_sequences():
    """3 clusters with a random effect each: 95 % intervals cover ~95 %, Wald's do not."""
    n = 200
    hits = {"cluster": np.zeros(2), "wald": np.zeros(2)}
    for i in range(n):
        res = lawfit.fit(sweep(3, np.random.default_rng([11, i])), exclude=None, space="log")
        for method in hits:
            ci = res.conf_int(method, cluster="seed" if method == "cluster" else None)
            hits[method] += [ci.loc[p, "low"] <= TRUTH[p] <= ci.loc[p, "high"] for p in TRUTH][1:3]
    cover = hits["cluster"] / n
    # MC standard error of a 95 % coverage over 200 datasets: 1.5 points
    assert ((cover > 0.905) & (cover < 0.995)).all(), cover
    assert (hits["wald"] / n < cover - 0.05).all(), (hits["wald"] / n, cover)


def test_the_cluster_column_defaults_to_the_bootstrap_unit():
    res = lawfit.fit(sweep(3, 2), exclude=None, space="log", bootstrap=50, unit="seed", rng=0)
    assert res.conf_int("cluster").equals(res.conf_int("cluster", cluster="seed"))
    few = [f for f in res.flags if f.code == "few_clusters"]
    assert few and "conf_int('cluster', cluster='seed')" in few[0].message


def test_bad_requests_are_refused_with_the_fix():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(sweep(3, 3), exclude=None, space="log")
        huber = lawfit.fit(sweep(3, 3), exclude=None, loss="huber")
    with pytest.raises(LawfitError, match="needs the column that defines the clusters"):
        res.conf_int("cluster")
    with pytest.raises(LawfitError, match="'data_seed' is not a column of the fitted cells"):
        res.conf_int("cluster", cluster="data_seed")
    with pytest.raises(LawfitError, match="for least-squares fits; this fit used loss='huber'"):
        huber.conf_int("cluster", cluster="seed")
    one = lawfit.fit(sweep(3, 3).isel(seed=[0]), exclude=None, space="log")
    with pytest.raises(LawfitError, match="single value over the fitted cells"):
        one.conf_int("cluster", cluster="seed")
