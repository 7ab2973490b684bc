"""The cluster-robust Wald test of several restrictions (lawfit.cluster_wald): HTZ, calibration."""

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from lawfit import shared_exponents
from lawfit.cluster_wald import cluster_wald_test
from lawfit.errors import LawfitError
from lawfit.robust import bell_mccaffrey_dof
from lawfit.shared import F_TEST, ROBUST_TEST
from lawfit.testing import synthetic_dataset

BOTH_SLOPES = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def clustered_regression(rng, sizes=(8, 8, 8, 8, 8, 8), slope=0.0):
    """y = intercept + slopes·x with a random intercept and random slopes per cluster."""
    groups = np.repeat(np.arange(len(sizes)), sizes)
    n = groups.size
    x1 = rng.normal(size=n)
    J = np.column_stack([np.ones(n), x1, rng.normal(size=n) + 0.5 * x1])
    effects = rng.normal(size=(len(sizes), 3)) * [0.5, 0.4, 0.4]
    y = (effects[groups] * J).sum(axis=1) + slope * J[:, 1] + 0.5 * rng.normal(size=n)
    theta = np.linalg.lstsq(J, y, rcond=None)[0]
    return J, y - J @ theta, groups, theta


def iid_f_pvalue(J, e, theta, C):
    """The usual F test of Cθ = 0 with one error variance and independent rows."""
    n, k = J.shape
    z = C @ theta
    V = e @ e / (n - k) * C @ np.linalg.inv(J.T @ J) @ C.T
    return stats.f.sf(z @ np.linalg.solve(V, z) / len(C), len(C), n - k)


def test_one_restriction_has_the_bell_mccaffrey_dof():
    J, e, groups, theta = clustered_regression(np.random.default_rng(0), sizes=(10, 6, 4, 8, 3))
    test = cluster_wald_test(J, e, groups, theta, BOTH_SLOPES[:1])
    assert test.eta == pytest.approx(bell_mccaffrey_dof(J, groups)[1], rel=1e-10)
    assert test.df1 == 1 and test.df2 == pytest.approx(test.eta)
    # with one restriction the statistic is the squared cluster-robust t
    assert test.f_statistic == pytest.approx(test.statistic, rel=1e-12)


def test_it_keeps_its_level_where_the_independent_cell_f_test_does_not():
    """2,000 clustered datasets, 6 clusters, both slopes at their true value (q = 2)."""
    rng = np.random.default_rng(1)
    robust, iid = [], []
    for _ in range(2000):
        J, e, groups, theta = clustered_regression(rng)
        robust.append(cluster_wald_test(J, e, groups, theta, BOTH_SLOPES).pvalue < 0.05)
        iid.append(iid_f_pvalue(J, e, theta, BOTH_SLOPES) < 0.05)
    # HTZ is known to be somewhat conservative with few clusters; binomial sd at 5 %: 0.5 pt
    assert 0.015 <= np.mean(robust) <= 0.065, np.mean(robust)
    assert np.mean(iid) > 0.2, np.mean(iid)  # cells of one cluster err together


def test_it_rejects_a_false_restriction():
    rng = np.random.default_rng(2)
    rejected = [
        cluster_wald_test(*clustered_regression(rng, sizes=(8,) * 12, slope=1.0), BOTH_SLOPES)
        for _ in range(50)
    ]
    assert np.mean([t.pvalue < 0.05 for t in rejected]) >= 0.9


def test_too_few_clusters_for_the_restrictions_is_said_not_tested():
    J, e, groups, theta = clustered_regression(np.random.default_rng(3), sizes=(8, 8))
    test = cluster_wald_test(J, e, groups, theta, BOTH_SLOPES)
    assert np.isnan(test.pvalue) and test.n_clusters == 2
    assert test.reason == "2 restrictions need at least 3 clusters; the data have 2"


def test_bad_shapes_and_unidentified_restrictions_are_refused():
    J, e, groups, theta = clustered_regression(np.random.default_rng(4))
    with pytest.raises(LawfitError, match=r"expected contrasts \(q, 3\)"):
        cluster_wald_test(J, e, groups, theta, np.eye(4))
    with pytest.raises(LawfitError, match="not identified"):
        cluster_wald_test(J, e, groups, theta, np.array([[0, 1.0, 0], [0, 2.0, 0]]))


GRID = dict(
    ranks=(1, 2, 4, 8),
    lengths=(64, 128, 256, 512, 1024),
    noise=0.03,
    noise_kind="run",
    run_effect={"logC": 0.1, "alpha": 0.08, "beta": 0.08},
)


def two_carriers(seed, n_sequences, alpha_b=0.6):
    """Two groups on the same target sequences, each sequence with its own random law."""
    gen = np.random.default_rng(seed)
    a = synthetic_dataset(alpha=0.6, beta=0.5, seeds=n_sequences, rng=gen, **GRID)
    b = synthetic_dataset(alpha=alpha_b, beta=0.5, C=0.5, seeds=n_sequences, rng=gen, **GRID)
    return xr.concat([a.expand_dims(model=["a"]), b.expand_dims(model=["b"])], "model")


def shared_test(seed, n_sequences=6, alpha_b=0.6):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return shared_exponents(
            two_carriers(seed, n_sequences, alpha_b), space="log", cluster="seed"
        )


def test_shared_exponents_with_clusters_decide_by_the_robust_test_at_its_level():
    """150 null datasets with sequence effects: the F test rejects ~30 %, the robust ~5 %."""
    results = [shared_test(s) for s in range(150)]
    assert all(r.verdict_test == ROBUST_TEST for r in results)
    robust = sum(r.pvalue < 0.05 for r in results)
    iid = sum(r.comparison["f_pvalue"].iloc[-1] < 0.05 for r in results)
    assert 1 <= robust <= 16, robust  # binomial(150, 0.05) 99.8 % range
    assert iid >= 25, iid
    assert sum(r.verdict == "separate" for r in results) == robust
    power = sum(shared_test(700 + s, n_sequences=8, alpha_b=0.9).pvalue < 0.05 for s in range(20))
    assert power >= 16, power


def test_with_too_few_sequences_the_f_verdict_is_flagged_as_independent_cells():
    res = shared_test(5, n_sequences=2, alpha_b=1.2)
    row = res.robust_test.iloc[0]
    assert row["reason"] == "2 restrictions need at least 3 clusters; the data have 2"
    assert res.verdict_test == F_TEST and res.verdict == "separate"
    assert res.pvalue == res.comparison["f_pvalue"].iloc[-1]
    flag = next(f for f in res.flags if f.code == "exponents_differ")
    assert "treats cells of one seed as independent" in flag.message
    assert "verdict (F likelihood-ratio test at 0.05)" in str(res.summary())


def test_without_clusters_nothing_changes():
    res = shared_exponents(two_carriers(6, 2), space="log")
    assert res.robust_test.empty and res.verdict_test == F_TEST
    assert res.pvalue == res.comparison["f_pvalue"].iloc[-1]


def test_a_group_on_one_sequence_skips_the_cluster_robust_parts_and_says_so():
    """Its parameters are informed by one cluster: CR2 cannot see their spread."""
    ds = two_carriers(7, 3)
    ds = ds.where((ds["model"] == "a") | (ds["seed"] == 0))
    ds["status"] = ds["status"].fillna("diverged")
    res = shared_exponents(ds, space="log", cluster="seed")
    assert res.robust_test.empty and res.differences.empty and res.verdict_test == F_TEST
    assert any("group(s) ['b'] have all their cells on one seed" in n for n in res.notes)


def test_the_level_benchmark_runs_and_prints_both_tests_per_row(run_benchmark):
    out = run_benchmark("shared_exponents_level.py", "--n", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert "F (independent cells)" in lines[0] and "cluster-robust" in lines[0]
    assert len(lines) == 1 + 11 + 1  # header, 8 level rows and 3 power rows, the reading
