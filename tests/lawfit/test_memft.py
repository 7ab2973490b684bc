import math

import numpy as np
import pandas as pd
import pytest

import lawfit
from lawfit.errors import LawfitError
from lawfit.memft import gradient_budget, memft_savings
from lawfit.testing.selection import synthetic_memft_dataset
from lawfit.testing.tokens import synthetic_token_dataset


@pytest.fixture(scope="module")
def traj():
    return synthetic_token_dataset(entry_tokens=8, n_steps=12, methods=("sft", "memft_ot"), rng=0)


def test_gradient_budget_shares(traj):
    gb = gradient_budget(traj, bootstrap=200, rng=0)
    c = gb.cells
    assert len(c) == 6 * 3 * 2  # sft runs only
    for q in ("share_trajectory", "share_final", "grad_share_final"):
        assert ((c[q] >= 0) & (c[q] <= 1)).all()
    # the time average over training is below the end-of-training share
    assert (c["share_trajectory"] <= c["share_final"] + 1e-9).all()
    # the final share equals the share of tokens above 0.5
    sft = traj.sel(objective="sft")
    direct = (sft["p_after"] > 0.5).sum("token") / sft["p_after"].notnull().sum("token")
    np.testing.assert_allclose(np.sort(c["share_final"]), np.sort(direct.values.ravel()))
    t = gb.summary_table.set_index(["quantity", "rank"])
    m = t.loc[("share_trajectory", "all")]
    assert m["low"] < m["mean"] < m["high"]
    by_rank = t.loc["share_trajectory"].drop(index="all")["mean"]
    assert by_rank.is_monotonic_increasing  # more capacity, more budget wasted
    assert "rank 1" in gb.summary()


def test_gradient_budget_without_trajectories(traj):
    gb = gradient_budget(traj.drop_vars(["loss_curve", "frac_above_curve"]), bootstrap=0)
    assert "share_trajectory" not in gb.cells
    assert any("no trajectories" in n for n in gb.notes)
    with pytest.raises(LawfitError, match="needs 'frac_above_curve'"):
        gradient_budget(traj[["loss_reduction", "status"]])
    with pytest.raises(LawfitError, match="objective 'memft_sw' is not in the dataset"):
        gradient_budget(traj, objective="memft_sw")


def test_memft_savings_recovers_planted_saving():
    ds = synthetic_memft_dataset(rng=0)
    res = memft_savings(ds, bootstrap=200, rng=0, target=1.0, target_kind="loss_reduction")
    p = res.predictions
    true = 1 - (1.0 / 1.6) ** (1 / 0.6)
    assert len(p) == 16 and set(p["model"]) == {"separate laws", "shared exponents"}
    assert (p["saving_low"] <= true).all() and (true <= p["saving_high"]).all()
    sh = p[p["model"] == "shared exponents"]
    assert sh["C_ratio"].iloc[0] == pytest.approx(1.6, rel=0.1)
    assert (p["rank_memft"] < p["rank_sft"]).all()
    assert "params_saved" in p
    v = res.validation
    assert len(v) == 5 * 4 and v["inside_memft_pi"].mean() > 0.8
    held = v.dropna(subset=["dL_memft_law_heldout"])
    assert len(held) == 5
    np.testing.assert_allclose(held["dL_memft_law_heldout"], held["dL_measured"], rtol=0.25)
    assert (v["gain_over_sft_law"] > 0).mean() > 0.8
    # measured saving read off MemFT cells through the SFT law: near the planted 0.543
    assert abs(v["saving_measured"].median() - true) < 0.1
    assert res.budget is None and any("gradient budget skipped" in n for n in res.notes)


def test_memft_savings_degrades():
    ds = synthetic_memft_dataset(rng=0)
    only_sft = ds.sel(objective=["sft"])
    res = memft_savings(only_sft, bootstrap=0)
    assert res.predictions.empty and any("no memft_* objective" in n for n in res.notes)
    few = ds.copy(deep=True)
    few["status"] = few["status"].where(
        ~((few["objective"] == "memft_ot") & (few["rank"] > 1)), "not_run"
    )
    res = memft_savings(few, bootstrap=0, target=math.log(2))
    assert any("law for memft_ot not fitted" in n for n in res.notes)
    # one MemFT rank: no separate law; no bootstrap draws: no shared-exponent saving either
    assert any("shared-exponent savings for memft_ot skipped" in n for n in res.notes)
    assert res.predictions.empty
    res = memft_savings(few, bootstrap=100, rng=0, target=1.0, target_kind="loss_reduction")
    assert set(res.predictions["model"]) == {"shared exponents"}
    true = 1 - (1.0 / 1.6) ** (1 / 0.6)
    p = res.predictions
    assert (p["saving_low"] <= true).all() and (true <= p["saving_high"]).all()


def test_memft_savings_errors():
    ds = synthetic_memft_dataset(rng=0)
    with pytest.raises(LawfitError, match="bootstrap must be an int >= 2"):
        memft_savings(ds, bootstrap=-1)
    with pytest.raises(LawfitError, match="confidence_level must be a number strictly between"):
        gradient_budget(synthetic_token_dataset(n_steps=3), confidence_level=1.5)
    with pytest.raises(LawfitError, match="target_kind must be"):
        memft_savings(ds, target_kind="accuracy")
    grouped = ds.expand_dims(task=["a", "b"])
    with pytest.raises(LawfitError, match="Select one first"):
        memft_savings(grouped)


def test_memft_validation_compares_steps_to_recall():
    # plant step counts: MemFT stops after 0.5x the SFT steps at every cell (seed means)
    ds = synthetic_memft_dataset(rng=0)
    base = 100.0 * ds["rank"] + ds["length"] + 0.0 * ds["seed"]
    ds["steps"] = base * (1.0 - 0.5 * (ds["objective"] == "memft_ot"))
    v = memft_savings(ds, bootstrap=20, rng=0, target=1.0, target_kind="loss_reduction").validation
    np.testing.assert_allclose(v["steps_ratio"], 0.5)
    np.testing.assert_allclose(v["steps_sft"], 100.0 * v["rank"] + v["length"])


def test_gradient_budget_method_keyword_is_deprecated(traj):
    with pytest.warns(DeprecationWarning, match="objective="):
        old = gradient_budget(traj, method="sft", bootstrap=0)
    new = gradient_budget(traj, objective="sft", bootstrap=0)
    pd.testing.assert_frame_equal(old.summary_table, new.summary_table)


def test_a_law_fitted_once_is_reused_not_refitted():
    """The report passes its SFT law in, so one analysis shows one interval per quantity."""
    ds = synthetic_memft_dataset(rng=0)
    law = lawfit.fit(ds.sel(objective="sft"), bootstrap=50, rng=3)
    ms = memft_savings(ds, bootstrap=50, rng=0, fits={"sft": law})
    assert ms.fits["sft"] is law
    refit = memft_savings(ds, bootstrap=50, rng=0)
    assert refit.fits["sft"] is not law


def test_measured_memft_cells_are_compared_with_sft_on_the_same_targets():
    # two target sequences; sequence 1 is 0.7 nats/token easier for both objectives, and
    # MemFT-OT has cells on sequence 0 only: the SFT mean over both sequences would put
    # MemFT 0.35 below SFT, the paired comparison gives the planted gain exactly
    ds = synthetic_memft_dataset(rng=0).rename(seed="data_seed")
    easier = 0.7 * (ds["data_seed"] == 1)
    ds["loss_after"] = ds["loss_after"] - easier
    ds["loss_reduction"] = ds["loss_reduction"] + easier
    memft_seq1 = (ds["objective"] == "memft_ot") & (ds["data_seed"] == 1)
    ds["status"] = ds["status"].where(~memft_seq1, "not_run")
    v = memft_savings(ds, bootstrap=0, target=1.0, target_kind="loss_reduction").validation
    sft = ds["loss_reduction"].sel(objective="sft", data_seed=0)
    memft = ds["loss_reduction"].sel(objective="memft_ot", data_seed=0)
    want = (memft - sft).to_dataframe(name="gain").reset_index()
    got = v.merge(want, on=["rank", "length"])
    assert len(got) == len(v) > 0 and (got["n_paired"] == 1).all()
    np.testing.assert_allclose(got["gain_measured"], got["gain"], atol=1e-12)
