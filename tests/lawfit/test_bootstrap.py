import numpy as np
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
        assert np.allclose(res.draws.iloc[r, :4].to_numpy(float), single.theta, rtol=1e-5,
                           atol=1e-7)


def test_failed_replicates_are_counted_not_dropped():
    # cluster bootstrap with 2 seeds: some replicates contain one seed only -> still fine;
    # force failures with a tiny design where resamples lose a length entirely
    ds = synthetic_dataset(ranks=(1, 2, 4), lengths=(64, 128), seeds=1, noise=0.3, rng=7)
    res = lawfit.fit(ds, exclude=None, bootstrap=200, rng=0, profile=False)
    d = res.draws
    assert len(d) == 200
    assert res.boot.n_failed == int((~d["converged"]).sum())
    if res.boot.n_failed:
        assert any("bootstrap replicates cannot identify the law" in f
                   or "bootstrap replicates did not converge" in f for f in res.flags)


def test_cluster_flag_few_clusters():
    res = lawfit.fit(synthetic_dataset(seeds=3, rng=8), exclude=None, bootstrap=50, unit="seed",
                     rng=0, profile=False)
    assert any("only 3 seed clusters" in f for f in res.flags)


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
    assert any(f"{n_excluded} of 200 bootstrap replicates cannot identify" in f
               for f in res.flags)
    assert f"{n_excluded} (excluded)" in str(res.summary())


def test_single_seed_cluster_error():
    from lawfit.errors import LawfitError

    ds = synthetic_dataset(seeds=1, rng=1)
    with pytest.raises(LawfitError, match="only 1 cluster"):
        lawfit.fit(ds, exclude=None, bootstrap=20, unit="seed")


@pytest.mark.parametrize("unit", ["residual", "wild", "seed"])
def test_units_in_log_space_with_huber(unit):
    ds = synthetic_dataset(seeds=4, rng=10)
    res = lawfit.fit(ds, exclude=None, bootstrap=60, unit=unit, space="log", loss="huber",
                     rng=0, profile=False)
    assert res.boot.n_failed == 0
    ci = res.conf_int()
    assert (ci["low"] <= res.theta).all() and (res.theta <= ci["high"]).all()
