import numpy as np
import pandas as pd
import pytest

import lawfit
from lawfit.bootstrap import bca_interval, bootstrap_weights, percentile_interval
from lawfit.testing import synthetic_dataset


def test_weights_are_multinomial():
    rng = np.random.default_rng(0)
    W = bootstrap_weights(500, np.arange(50), rng)
    assert W.shape == (500, 50)
    assert np.all(W.sum(axis=1) == 50)
    clusters = np.repeat(np.arange(5), 10)
    Wc = bootstrap_weights(200, clusters, rng)
    assert np.all(Wc.sum(axis=1) == 50)
    # whole clusters move together
    assert np.all(Wc[:, :10] == Wc[:, [0]])


@pytest.mark.parametrize("unit", ["cell", "seed", "run", "residual", "wild"])
def test_units(unit):
    ds = synthetic_dataset(seeds=4, rng=5)
    res = lawfit.fit(ds, exclude=None, bootstrap=100, unit=unit, rng=0, profile=False)
    assert res.boot.unit == unit
    assert res.boot.n_failed == int((~res.draws["converged"]).sum())
    ci = res.conf_int()
    assert (ci["low"] <= res.theta).all() and (res.theta <= ci["high"]).all()


def test_batch_matches_loop_of_fits():
    """A batched replicate equals an independent fit of the resampled data."""
    ds = synthetic_dataset(seeds=2, rng=6)
    res = lawfit.fit(ds, exclude=None, bootstrap=5, rng=3, profile=False)
    rng = np.random.default_rng(3)
    n = res.n_obs
    W = bootstrap_weights(5, np.arange(n), rng)
    pts = res.points
    for r in range(5):
        idx = np.repeat(np.arange(n), W[r].astype(int))
        df = pts.iloc[idx][["rank", "length", "loss_reduction"]].copy()
        df["seed"] = np.arange(len(df))  # distinct rows
        single = lawfit.fit(df, exclude=None, profile=False)
        assert np.allclose(
            res.draws.iloc[r, :4].to_numpy(float), single.theta, rtol=1e-5, atol=1e-7
        )


def test_failed_replicates_are_counted_not_dropped():
    # a tiny design (6 cells, 4 parameters): a resample of the 6 cells that holds 4 or fewer
    # distinct cells leaves no residual degree of freedom (or loses a rank or a length), so
    # it cannot identify the law; most replicates are such, and each must be counted
    ds = synthetic_dataset(ranks=(1, 2, 4), lengths=(64, 128), seeds=1, noise=0.3, rng=7)
    res = lawfit.fit(ds, exclude=None, bootstrap=200, rng=0, profile=False)
    d = res.draws
    assert len(d) == 200
    assert res.boot.n_failed == int((~d["converged"]).sum())
    # the same draws (the bootstrap is the first use of the generator), counted here
    W = bootstrap_weights(200, np.arange(res.n_obs), np.random.default_rng(0))
    too_few = (W > 0).sum(axis=1) <= len(res.param_names)
    assert res.n_obs == 6 and too_few.sum() > 0
    np.testing.assert_array_equal(d["status"].to_numpy() == "unidentifiable", too_few)
    assert res.boot.n_failed == int(too_few.sum())
    flag = next(f for f in res.flags if f.code == "bootstrap_unidentifiable")
    assert flag.message.startswith(f"{int(too_few.sum())} of 200 bootstrap replicates")


def test_cluster_flag_few_clusters():
    res = lawfit.fit(
        synthetic_dataset(seeds=3, rng=8),
        exclude=None,
        bootstrap=50,
        unit="seed",
        rng=0,
        profile=False,
    )
    few = [f for f in res.flags if f.code == "few_clusters"]
    assert len(few) == 1 and "only 3 seed clusters" in few[0].message
    assert res.few_clusters and res.boot.too_few_clusters


@pytest.mark.parametrize(("seeds", "unit", "few"), [(12, "seed", False), (3, "cell", False)])
def test_few_clusters_only_for_a_cluster_bootstrap_under_ten(seeds, unit, few):
    res = lawfit.fit(
        synthetic_dataset(seeds=seeds, rng=8),
        exclude=None,
        bootstrap=30,
        unit=unit,
        rng=0,
        profile=False,
    )
    assert res.few_clusters is few
    assert ("few_clusters" in {f.code for f in res.flags}) is few


def test_interval_helpers():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(4000, 2))
    lo, hi = percentile_interval(d, 0.95)
    assert np.allclose(lo, -1.96, atol=0.1) and np.allclose(hi, 1.96, atol=0.1)
    jack = rng.normal(size=(50, 2)) * 0.01
    blo, bhi = bca_interval(d, np.zeros(2), jack, 0.95)
    assert np.allclose(blo, lo, atol=0.15) and np.allclose(bhi, hi, atol=0.15)


def test_unidentifiable_replicates_fail_loudly():
    # cluster on length with only 2 lengths: ~half the replicates hold a single length,
    # which cannot identify beta -> they must be reported as failed, not "converged"
    ds = synthetic_dataset(lengths=(64, 4096), seeds=2, rng=9)
    res = lawfit.fit(ds, exclude=None, bootstrap=200, unit="length", rng=0, profile=False)
    n_failed = res.boot.n_failed
    assert 60 < n_failed < 140
    assert len(res.draws) == 200
    n_excluded = res.boot.counts["unidentifiable"]
    assert n_excluded == n_failed  # these failures are all unidentifiable resamples
    flag = next(f for f in res.flags if f.code == "bootstrap_unidentifiable")
    assert flag.message.startswith(f"{n_excluded} of 200 bootstrap replicates")
    assert flag.severity == "warning"
    assert f"{n_excluded} (excluded)" in str(res.summary())


def test_single_seed_cluster_error():
    from lawfit.errors import LawfitError

    ds = synthetic_dataset(seeds=1, rng=1)
    with pytest.raises(LawfitError, match="only 1 cluster"):
        lawfit.fit(ds, exclude=None, bootstrap=20, unit="seed")


@pytest.mark.parametrize("unit", ["residual", "wild", "seed"])
def test_units_in_log_space_with_huber(unit):
    ds = synthetic_dataset(seeds=4, rng=10)
    res = lawfit.fit(
        ds, exclude=None, bootstrap=60, unit=unit, space="log", loss="huber", rng=0, profile=False
    )
    assert res.boot.n_failed == 0
    ci = res.conf_int()
    assert (ci["low"] <= res.theta).all() and (res.theta <= ci["high"]).all()


def _planted_boot(res, rng):
    """Replicates with a known heavy lower tail in alpha and a few with no estimate.

    88 % near the estimate (converged), 10 % spread over [0.05, 0.2] (a tail of
    boundary and not-converged solutions), 2 % unidentifiable with absurd values.
    """
    from lawfit.bootstrap import BootstrapResult

    R = 1000
    j = res.param_names.index("alpha")
    draws = res.theta + rng.normal(0, 0.01, size=(R, len(res.theta))) * np.abs(res.theta)
    status = np.array(
        ["converged"] * 880 + ["at_bound"] * 50 + ["not_converged"] * 50 + ["unidentifiable"] * 20
    )
    draws[:880, j] = rng.normal(0.6, 0.03, 880)
    draws[880:980, j] = rng.uniform(0.05, 0.2, 100)
    draws[980:, j] = 100.0
    return BootstrapResult(
        draws=draws, status=status, unit="cell", resid=np.asarray(res.points["residual"], float)
    )


def test_interval_covers_a_planted_heavy_tail():
    import dataclasses

    res = lawfit.fit(synthetic_dataset(seeds=2, rng=11), exclude=None, profile=False)
    planted = dataclasses.replace(res, boot=_planted_boot(res, np.random.default_rng(0)))
    ci = planted.conf_int("percentile", confidence_level=0.95)
    # 100 of the 980 usable replicates (10.2 %) lie in [0.05, 0.2]: the 2.5 % quantile is
    # inside that tail; dropping the tail would put it near 0.6 - 2 * 0.03
    assert 0.05 <= ci.loc["alpha", "low"] <= 0.2
    assert 0.6 < ci.loc["alpha", "high"] < 0.7  # the 20 absurd (unidentifiable) draws are out
    assert planted.boot.n_excluded == 20
    assert planted.draws.attrs["counts"] == {
        "converged": 880,
        "at_bound": 50,
        "not_converged": 50,
        "unidentifiable": 20,
    }
    text = str(planted.summary())
    assert "50 (kept)" in text and "20 (excluded)" in text


def test_boundary_replicates_are_resolved_and_kept():
    """A 9-cell design like the shipped data: some resamples' optimum is on an edge."""
    pts = [(1, 64), (1, 128), (1, 256), (1, 512), (2, 128), (2, 256), (2, 512), (4, 256), (4, 512)]
    r = np.array([p[0] for p in pts], float)
    ell = np.array([p[1] for p in pts], float)
    y = 119 * r**0.54 * ell**-0.53 - 0.9 + np.random.default_rng(0).normal(0, 0.22, 9)
    df = pd.DataFrame({"rank": r, "length": ell, "loss_reduction": y})
    res = lawfit.fit(df, exclude=None, bootstrap=400, rng=0, profile=False)
    counts = res.boot.counts
    assert counts["at_bound"] > 0
    d = res.draws
    usable = d[d["status"] != "unidentifiable"]
    ci = res.conf_int("percentile")
    for p in ("alpha", "beta"):
        lo, hi = np.quantile(usable[p], [0.025, 0.975])
        assert ci.loc[p, "low"] == pytest.approx(lo) and ci.loc[p, "high"] == pytest.approx(hi)
    # boundary solutions sit exactly on a bound of an exponent (not somewhere on the way)
    at_bound = d[d["status"] == "at_bound"]
    lo_b, hi_b = res.bounds["alpha"]
    assert (
        (at_bound["alpha"] == lo_b)
        | (at_bound["alpha"] == hi_b)
        | (at_bound["beta"] == res.bounds["beta"][0])
        | (at_bound["beta"] == res.bounds["beta"][1])
    ).all()
    converged_only = np.quantile(d.loc[d["status"] == "converged", "alpha"], [0.025, 0.975])
    assert ci.loc["alpha", "high"] - ci.loc["alpha", "low"] >= np.ptp(converged_only)


def test_bootstrap_result_rejects_unknown_status():
    from lawfit.bootstrap import BootstrapResult
    from lawfit.errors import LawfitError

    with pytest.raises(LawfitError, match="replicate status must be one of"):
        BootstrapResult(
            draws=np.zeros((2, 1)),
            status=np.array(["converged", "failed"]),
            unit="cell",
            resid=np.zeros(3),
        )


def test_cluster_index_numbers_the_clusters_and_refuses_what_it_cannot_resample():
    import pandas as pd

    from lawfit.bootstrap import cluster_index
    from lawfit.errors import LawfitError

    frame = pd.DataFrame({"seed": [3, 3, 7, 9, 7], "data_seed": [0] * 5})
    np.testing.assert_array_equal(cluster_index(frame, "run", fix="x"), [0, 0, 1, 2, 1])
    with pytest.raises(LawfitError, match="unit='data_seed': only 1 cluster.*Use unit='cell'"):
        cluster_index(frame, "data_seed", fix="unit='cell'")
    with pytest.raises(LawfitError, match="needs a 'run2' dim to cluster on"):
        cluster_index(frame, "run2", fix="unit='cell'")
