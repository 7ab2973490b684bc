import dataclasses

import numpy as np
import pandas as pd
import pytest

from lawfit.compare import (
    akaike_weights,
    compare,
    likelihood_ratio_test,
    pointwise_loglik,
    vuong_test,
)
from lawfit.errors import LawfitError
from lawfit.forms_extra import BUILTIN_CANDIDATES
from lawfit.testing import synthetic_dataset
from lawfit.testing.selection import TRUTHS, synthetic_form_dataset


def _data(form, rng):
    ds = synthetic_form_dataset(form, TRUTHS[form], rng=rng)
    pool = ("modules",) if ds.sizes["modules"] > 1 else ()
    return (ds if pool else ds.isel(modules=0)), pool


@pytest.mark.parametrize("true", BUILTIN_CANDIDATES)
def test_quick_confusion_recovers_true_form(true):
    i = BUILTIN_CANDIDATES.index(true)
    ds, pool = _data(true, 1000 * i)
    res = compare(ds, pool=pool, holdout=(), space="log", criterion="bic")
    assert res.best == true, res.summary()


def test_table_and_tests_shape():
    ds = synthetic_dataset(rng=0, seeds=2)
    res = compare(ds)
    t = res.table
    assert t["n_obs"].nunique() == 1  # same points for every form
    assert t["weight_aicc"].sum() == pytest.approx(1.0)
    assert t["aicc"].is_monotonic_increasing
    assert {"extrap_rank_rmse", "extrap_length_rmse"} <= set(t.columns)
    assert np.isfinite(t["extrap_rank_rmse"]).all()
    assert set(res.fits) == set(t["form"])
    assert "power_law_nparams" not in res.fits  # n_params ∝ rank: same law, skipped
    lr = res.lr_tests.set_index(["restricted", "general"])
    assert lr.loc[("ratio", "power_law"), "pvalue"] < 1e-6
    assert np.isnan(res.lr_tests.query("general == 'broken_power_law'")["pvalue"]).all()
    assert not res.vuong.empty
    assert "best" in res.summary()
    alpha = res.fits["power_law"].params["alpha"]  # each form's own estimates are printed
    assert f"power_law: C = {res.fits['power_law'].params['C']:.4g}, alpha = {alpha:.4g}" in str(
        res.summary()
    )
    tidy = res.to_dataframe()
    pd.testing.assert_frame_equal(tidy, t)
    tidy.loc[tidy.index[0], "form"] = "changed"  # a copy: the result's table is unchanged
    assert t.loc[t.index[0], "form"] == res.best
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'best'"):
        res.best = "x"


def test_missing_inputs_skip_forms():
    ds = synthetic_dataset(rng=0, seeds=2).drop_vars(["loss_before", "n_params"])
    res = compare(ds, holdout=())
    assert "saturating" not in res.fits
    assert any("saturating skipped" in n for n in res.notes)


def test_statistics():
    w = akaike_weights([10.0, 12.0, np.inf])
    assert w[2] == 0 and w[0] / w[1] == pytest.approx(np.e)
    stat, p = likelihood_ratio_test(-10.0, -8.0, 1)
    assert stat == pytest.approx(4.0) and p == pytest.approx(0.0455, abs=1e-3)
    e = np.random.default_rng(0).normal(size=200)
    ll = pointwise_loglik(e)
    s2 = np.mean(e**2)
    assert ll.sum() == pytest.approx(-100 * (np.log(2 * np.pi * s2) + 1))
    z, pv = vuong_test(ll, ll, 3, 3)
    assert z == 0 and pv == 1
    z, pv = vuong_test(ll + 0.1 + 0.01 * e, ll, 3, 3)
    assert z > 0 and pv < 1e-6
    zc, _ = vuong_test(ll + 0.1 + 0.01 * e, ll, 3, 3, clusters=np.arange(200) % 10)
    assert zc > 0


def test_errors():
    ds = synthetic_dataset(rng=0, seeds=2)
    with pytest.raises(LawfitError, match="loss must be 'l2'"):
        compare(ds, loss="huber")
    with pytest.raises(LawfitError, match="unknown form 'nope'"):
        compare(ds, forms=["power_law", "nope"])
    with pytest.raises(LawfitError, match="at least two forms"):
        compare(ds, forms=["power_law"])
    with pytest.raises(LawfitError, match="holdout axes"):
        compare(ds, holdout=("seed",))
    with pytest.raises(LawfitError, match="expected an xarray.Dataset"):
        compare([1, 2])
    grouped = synthetic_dataset(rng=0, seeds=2, groups={"model": ["a", "b"]})
    with pytest.raises(LawfitError, match="within one setting.*'model'.*pool="):
        compare(grouped)
    with pytest.raises(LawfitError, match="within one setting"):
        compare(grouped.to_dataframe().reset_index())


def test_heteroscedastic_linear_fit_is_flagged():
    mult = synthetic_dataset(rng=0, seeds=2)  # multiplicative noise
    lin = compare(mult, holdout=())
    assert lin.heteroscedastic and lin.heteroscedasticity_pvalue < 0.01
    assert [f.code for f in lin.flags if f.code == "heteroscedastic"] == ["heteroscedastic"]
    assert not compare(mult, holdout=(), space="log").heteroscedastic
    add = synthetic_dataset(rng=0, seeds=2, noise_model="additive")
    res = compare(add, holdout=())
    assert not res.heteroscedastic and res.heteroscedasticity_pvalue >= 0.01
    assert res.best == "power_law"


def test_significance_replaces_alpha_keyword():
    ds = synthetic_dataset(rng=0, seeds=2)
    forms = ["power_law", "ratio_no_offset", "additive"]
    new = compare(ds, forms, holdout=(), significance=0.2)
    assert new.significance == 0.2
    with pytest.warns(DeprecationWarning, match="significance"):
        old = compare(ds, forms, holdout=(), alpha=0.2)
    pd.testing.assert_frame_equal(old.vuong, new.vuong)
    with pytest.raises(LawfitError, match="significance must be"):
        compare(ds, forms, holdout=(), significance=5)


def test_ratio_no_offset_is_a_candidate_nested_in_three_forms():
    ds = synthetic_dataset(rng=0, seeds=2)
    res = compare(ds, ["ratio_no_offset", "ratio", "power_law_no_offset", "power_law"], holdout=())
    assert res.fits["ratio_no_offset"].param_names == ("C", "gamma")
    lr = res.lr_tests.set_index(["restricted", "general"])
    for general, df in (("ratio", 1), ("power_law_no_offset", 1), ("power_law", 2)):
        assert lr.loc[("ratio_no_offset", general), "df"] == df


@pytest.mark.slow
def test_confusion_accuracy_log_space_bic():
    # the benchmark at reduced size: benchmarks/model_selection_confusion.py
    hits = total = 0
    for i, true in enumerate(BUILTIN_CANDIDATES):
        for rep in range(5):
            ds, pool = _data(true, 1000 * i + rep)
            res = compare(ds, pool=pool, holdout=(), space="log", criterion="bic")
            hits += res.best == true
            total += 1
    assert hits / total >= 0.9


def test_cells_of_several_target_sequences_get_the_independence_caveat():
    ds = synthetic_dataset(seeds=3, rng=5).rename(seed="data_seed")
    res = compare(ds, ["power_law", "ratio"], holdout=())
    assert any("3 data_seed clusters" in n and "cluster='data_seed'" in n for n in res.notes)
    one = compare(synthetic_dataset(seeds=3, rng=5), ["power_law", "ratio"], holdout=())
    assert not any("data_seed clusters" in n for n in one.notes)


def test_leave_one_target_out_predicts_each_sequence_from_the_others():
    """Planted α ≠ β over 3 target sequences: the true form predicts new content best."""
    ds = synthetic_dataset(
        alpha=0.8, beta=0.4, seeds=3, noise=0.05, noise_kind="run", rng=7
    ).rename(seed="data_seed")
    res = compare(ds, ["power_law", "ratio"], holdout=("data_seed",))
    loto = res.table.set_index("form")["loto_rmse"]
    assert np.isfinite(loto).all() and loto["power_law"] < loto["ratio"]
    # by hand: fit on sequences 1-2, predict sequence 0, and so on; pool the errors
    from lawfit import fit

    frame = ds.to_dataframe().reset_index()
    errors = []
    for seq in (0, 1, 2):
        law = fit(
            frame[frame["data_seed"] != seq].reset_index(drop=True),
            "power_law",
            exclude="memorized",
            space="linear",
            profile=False,
            bootstrap=0,
        )
        test = frame[(frame["data_seed"] == seq) & (frame["loss_after"] > np.log(2))]
        pred = law.predict(rank=test["rank"], length=test["length"], warn=False)["mean"]
        errors.append(pred.to_numpy() - test["loss_reduction"].to_numpy())
    expect = np.sqrt(np.mean(np.concatenate(errors) ** 2))
    assert loto["power_law"] == pytest.approx(expect, rel=1e-6)
    one = compare(synthetic_dataset(seeds=3, rng=7), ["power_law", "ratio"])
    assert one.table["loto_rmse"].isna().all()  # replicate seeds are not target sequences
    skipped = compare(ds, ["power_law", "ratio"], holdout=("rank", "length"))
    assert skipped.table["loto_rmse"].isna().all()
    assert np.isfinite(skipped.table["extrap_rank_rmse"]).all()


def test_the_cli_computes_every_held_out_error_unless_told_not_to(tmp_path):
    """`lawfit compare` computes all three held-out errors; --no-holdout none of them."""
    from lawfit.cli import main

    path = tmp_path / "three_sequences.nc"
    synthetic_dataset(seeds=3, noise=0.05, rng=7).rename(seed="data_seed").to_netcdf(path)
    held_out = ["extrap_rank_rmse", "extrap_length_rmse", "loto_rmse"]
    argv = ["compare", str(path), "--forms", "power_law", "ratio", "--csv"]
    assert main([*argv, str(tmp_path / "all.csv")]) == 0
    assert np.isfinite(pd.read_csv(tmp_path / "all.csv")[held_out].to_numpy()).all()
    assert main([*argv, str(tmp_path / "none.csv"), "--no-holdout"]) == 0
    assert pd.read_csv(tmp_path / "none.csv")[held_out].isna().all().all()
