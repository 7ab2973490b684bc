import math

import numpy as np
import pytest

import lawfit
from lawfit.capacity import ANCHORS_BITS_PER_PARAM, bits_per_parameter, predict_capacity
from lawfit.errors import LawfitError
from lawfit.testing import synthetic_dataset
from lawfit.testing.selection import synthetic_form_dataset
from lawfit.testing.tokens import synthetic_token_dataset


@pytest.fixture(scope="module")
def ds():
    return synthetic_dataset(rng=0, seeds=2)


@pytest.fixture(scope="module")
def fitted(ds):
    return lawfit.fit(ds, bootstrap=200, rng=0)


def test_rank_roundtrip(fitted):
    pred = predict_capacity(fitted, length=[256, 1024], target=[0.3, 0.8])
    t = pred.table
    assert pred.quantity == "rank" and len(t) == 4
    back = fitted.predict(rank=t["estimate"].to_numpy(), length=t["length"].to_numpy(), warn=False)
    np.testing.assert_allclose(back["mean"].to_numpy(), t["target"].to_numpy(), rtol=1e-8)
    assert (t["low"] <= t["estimate"]).all() and (t["estimate"] <= t["high"]).all()
    assert (t["n_draws"] == 200).all() and (t["n_unreachable"] == 0).all()


def test_length_roundtrip(fitted):
    pred = predict_capacity(fitted, rank=[16, 64], target=0.5)
    t = pred.table
    back = fitted.predict(rank=t["rank"].to_numpy(), length=t["estimate"].to_numpy(), warn=False)
    np.testing.assert_allclose(back["mean"].to_numpy(), 0.5, rtol=1e-8)
    assert t["estimate"].is_monotonic_increasing  # more rank holds longer targets


def test_loss_after_target_uses_loss_before(fitted, ds):
    pred = predict_capacity(
        fitted, length=512, target=math.log(2), target_kind="loss_after", data=ds
    )
    row = pred.table.iloc[0]
    assert row["target_dL"] == pytest.approx(row["loss_before"] - math.log(2))
    assert 3.9 < row["loss_before"] < 4.1
    assert row["n_params_estimate"] == pytest.approx(row["estimate"] * 2304)
    back = fitted.predict(rank=row["estimate"], length=512, warn=False)["mean"].iloc[0]
    assert back == pytest.approx(row["target_dL"], rel=1e-8)
    assert bool(row["extrapolated"])  # recall at 512 tokens needs more than rank 128
    assert "extrapolated" in {f.code for f in pred.flags}


def test_unreachable_targets_are_counted():
    sat = synthetic_form_dataset("saturating", seeds=2, rng=0).isel(modules=0)
    f = lawfit.fit(sat, "saturating", bootstrap=100, rng=0, space="log")
    # the saturating law cannot exceed loss_before + b (about 4.05 nats)
    pred = predict_capacity(f, length=256, target=[1.0, 6.0], data=sat)
    ok, bad = pred.table.iloc[0], pred.table.iloc[1]
    assert not ok["unreachable"] and ok["n_unreachable"] == 0
    assert bad["unreachable"] and bad["n_unreachable"] == 100
    assert math.isinf(bad["estimate"]) and math.isinf(bad["low"])
    assert "unreachable" in {f.code for f in pred.flags}


def test_no_bootstrap_no_interval(ds):
    f = lawfit.fit(ds)
    pred = predict_capacity(f, length=256, target=0.5)
    assert math.isnan(pred.table["low"].iloc[0])
    assert any("no bootstrap draws" in n for n in pred.notes)


def test_few_target_sequences_get_the_cluster_robust_capacity_interval(fitted):
    few = lawfit.fit(synthetic_dataset(seeds=3, rng=8), bootstrap=50, unit="seed", rng=0)
    auto = predict_capacity(few, length=[256, 1024], target=0.5)
    t = auto.table
    assert {"low_bootstrap", "high_bootstrap", "dof"} <= set(t.columns)
    assert ((t["low"] < t["estimate"]) & (t["estimate"] < t["high"])).all()
    assert "few_clusters" not in {f.code for f in auto.flags}
    assert any("cluster-robust delta method over the seed clusters" in n for n in auto.notes)
    boot = predict_capacity(few, length=[256, 1024], target=0.5, interval="bootstrap")
    np.testing.assert_allclose(boot.table["low"], t["low_bootstrap"])
    flag = next(f for f in boot.flags if f.code == "few_clusters")
    assert "only 3 seed clusters" in flag.message
    cells = predict_capacity(fitted, length=256, target=0.5)  # cell bootstrap: percentile
    assert "low_bootstrap" not in cells.table and not cells.flags


def test_the_cluster_robust_capacity_interval_covers_the_true_rank():
    """3 target sequences with a random effect each: 95 % intervals cover ~95 %."""
    truth = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}
    length, target = 512.0, 0.2
    true_rank = ((target - truth["b"]) * length ** truth["beta"] / truth["C"]) ** (
        1 / truth["alpha"]
    )
    n, hits = 200, 0
    for i in range(n):
        ds = synthetic_dataset(
            **truth,
            ranks=(1, 2, 4, 8, 16, 32, 64, 128),
            lengths=(64, 128, 256, 512, 1024, 2048, 4096),
            seeds=3,
            noise=0.05,
            noise_kind="run",
            rng=np.random.default_rng([31, i]),
        )
        res = lawfit.fit(ds, exclude=None, space="log")
        pred = predict_capacity(
            res, length=length, target=target, interval="cluster", cluster="seed"
        )
        hits += pred.table["low"].iloc[0] <= true_rank <= pred.table["high"].iloc[0]
    # binomial(200, 0.95): 99.9 % of draws fall in 180-197
    assert 180 <= hits <= 198, hits


def test_bad_interval_requests_are_refused(fitted):
    with pytest.raises(LawfitError, match="interval must be"):
        predict_capacity(fitted, length=256, target=0.5, interval="wald")
    with pytest.raises(LawfitError, match="needs clusters"):
        predict_capacity(fitted, length=256, target=0.5, interval="cluster")


def test_errors(fitted):
    with pytest.raises(LawfitError, match="exactly one of length= .* or rank="):
        predict_capacity(fitted, target=0.5)
    with pytest.raises(LawfitError, match="exactly one of"):
        predict_capacity(fitted, length=64, rank=4, target=0.5)
    with pytest.raises(LawfitError, match="needs loss_before.*Pass loss_before="):
        predict_capacity(fitted, length=64, target=0.69, target_kind="loss_after")
    with pytest.raises(LawfitError, match="must be a FitResult"):
        predict_capacity({"C": 1}, length=64, target=0.5)
    with pytest.raises(LawfitError, match="must be positive"):
        predict_capacity(fitted, length=-5, target=0.5)
    with pytest.raises(LawfitError, match="target_kind must be"):
        predict_capacity(fitted, length=64, target=0.5, target_kind="loss")


def test_bits_per_parameter_tokens_and_cells_agree():
    tok = synthetic_token_dataset(entry_tokens=8, rng=0)
    a = bits_per_parameter(tok)
    assert (a.cells["source"] == "tokens").all()
    # bits from tokens equal loss_reduction * length / ln 2 (same quantity)
    b = bits_per_parameter(tok.drop_vars(["p_after", "p_before", "greedy_correct"]))
    np.testing.assert_allclose(a.cells["bits"].to_numpy(), b.cells["bits"].to_numpy(), rtol=1e-9)
    # bits per parameter: each cell's bits over its rank's trainable parameters
    n_params = tok["n_params"].sel(task=a.cells["task"].iloc[0]).sel(rank=a.cells["rank"].values)
    per_param = a.cells["bits"].to_numpy() / n_params.values
    np.testing.assert_allclose(a.cells["bits_per_param"].to_numpy(), per_param, rtol=1e-12)
    assert a.max_bits_per_param == pytest.approx(per_param.max(), rel=1e-12)
    assert set(ANCHORS_BITS_PER_PARAM.values()) == {2.0, 3.6}
    assert "anchor" in a.summary()


def test_bits_without_n_params_or_data(ds):
    r = bits_per_parameter(ds.drop_vars("n_params"))
    assert "bits_per_param" not in r.cells
    assert any("no 'n_params'" in n for n in r.notes)
    with pytest.raises(LawfitError, match="bits_per_parameter needs"):
        bits_per_parameter(ds[["status"]])


# ------------------------------------------------------------- beyond known capacity
@pytest.fixture(scope="module")
def nparams_law(ds):
    return lawfit.fit(ds, capacity="n_params", exclude=None, profile=False)


def test_predict_flags_a_prediction_beyond_known_capacity(nparams_law):
    # rank 1 = 2,304 parameters; the offset b makes ΔL bits grow linearly with length
    far = nparams_law.predict(n_params=2304, length=1e6, warn=False)
    dl_bits = far["mean"].iloc[0] * 1e6 / math.log(2) / 2304
    assert far["bits_per_param"].iloc[0] == pytest.approx(dl_bits)
    assert far.attrs["bits_kind"] == "dl" and dl_bits > 3.6
    (flag,) = far.attrs["flags"]
    assert flag.code == "beyond_known_capacity" and flag.severity == "info"
    # with the content's entropy (here: the base model is at it, H = L0 / ln 2) the
    # implied information is a lower bound and the flag a warning
    info = nparams_law.predict(
        n_params=2304, length=1e6, warn=False, entropy_bits=4.0 / math.log(2)
    )
    assert info.attrs["bits_kind"] == "information lower bound"
    assert info["bits_per_param"].iloc[0] > 3.6
    assert [f.severity for f in info.attrs["flags"]] == ["warning"]


def test_predict_inside_known_capacity_is_not_flagged(nparams_law, fitted):
    near = nparams_law.predict(
        n_params=2304, length=512, warn=False, entropy_bits=4.0 / math.log(2)
    )
    assert near["bits_per_param"].iloc[0] < 3.6 and near.attrs["flags"] == ()
    assert "bits_per_param" not in fitted.predict(rank=1, length=512).columns  # no n_params


def test_predict_capacity_flags_answers_beyond_known_capacity(fitted, ds):
    # the longest target rank 1 holds at ΔL just above the offset b is ~1e6 tokens
    far = predict_capacity(fitted, rank=1, target=fitted.params["b"] + 1e-3, data=ds)
    row = far.table.iloc[0]
    assert row["bits_per_param"] == pytest.approx(
        row["target_dL"] * row["estimate"] / math.log(2) / 2304
    )
    assert row["bits_per_param"] > 3.6
    assert "beyond_known_capacity" in {f.code for f in far.flags}
    near = predict_capacity(fitted, rank=1, target=0.1, data=ds)
    assert near.table["bits_per_param"].iloc[0] < 3.6
    assert "beyond_known_capacity" not in {f.code for f in near.flags}


def test_predict_capacity_uses_information_when_the_entropy_is_known(fitted, ds):
    h = 4.0 / math.log(2)
    pred = predict_capacity(
        fitted, length=[512], target=math.log(2), target_kind="loss_after", data=ds, entropy_bits=h
    )
    row = pred.table.iloc[0]
    expected = 512 * (h - 1.0) / row["n_params_estimate"]  # L1 = ln 2 nats = 1 bit
    assert row["bits_per_param"] == pytest.approx(expected)
    assert "information lower bound" in " ".join(pred.notes)


def test_a_rank_storing_its_most_at_the_longest_target_is_a_lower_bound(ds):
    # ΔL bits (ℓ·ΔL/ln 2): at the first rank the longest target holds the fewest bits (its
    # capacity is measured), at every other the most (only a lower bound)
    one = ds.isel(seed=0).drop_vars(["p_after", "p_before", "greedy_correct"], errors="ignore")
    lengths = one["length"].to_numpy()
    dl = one["loss_reduction"].copy()
    dl[:] = 1000.0 / lengths  # the same bits at every length ...
    dl.loc[{"rank": one["rank"][0]}] = dl.sel(rank=one["rank"][0]) * np.where(
        lengths == lengths.max(), 0.5, 1.0
    )  # ... halved at the longest for the first rank
    dl.loc[{"rank": one["rank"][1:]}] = dl.sel(rank=one["rank"][1:]) * lengths / lengths.min()
    one["loss_reduction"] = dl
    one["loss_after"] = one["loss_after"] * 0 + 5.0  # none memorized
    res = bits_per_parameter(one, kind="dl")
    by_rank = res.by_rank.set_index("rank")
    first = float(one["rank"][0])
    assert not by_rank.loc[first, "at_longest"]
    assert by_rank.drop(index=first)["at_longest"].all()
    assert (by_rank.drop(index=first)["length"] == lengths.max()).all()
    assert any("at_longest" in n for n in res.notes)
    lines = [ln for ln in res.summary().splitlines() if ln.startswith("rank ")]
    assert len(lines) == one.sizes["rank"]
    assert "lower bound" not in next(ln for ln in lines if ln.startswith(f"rank {int(first)}:"))
    others = [ln for ln in lines if not ln.startswith(f"rank {int(first)}:")]
    assert all("the longest length collected: lower bound" in ln for ln in others)
