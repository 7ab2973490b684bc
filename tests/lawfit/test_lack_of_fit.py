"""The lack-of-fit F test: exact against statsmodels, calibrated under the law, powerful off it.

Size and power at full size: ``python benchmarks/lack_of_fit_calibration.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import xarray as xr
from scipy import stats
from statsmodels.stats.anova import anova_lm

import lawfit
from lawfit.lack_of_fit import LackOfFit
from lawfit.testing.cells import synthetic_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from lack_of_fit_calibration import DESIGN, TRUTH, pvalues  # noqa: E402


def _sweep(rng: int, **kw) -> object:
    return synthetic_dataset(**{**TRUTH, **DESIGN, **kw}, rng=rng)


def test_equals_the_cell_means_anova_of_statsmodels_on_a_linear_form():
    # log ΔL = log C + α log r − β log ℓ is linear: the classical lack-of-fit test is the
    # nested F test of that OLS model against one mean per design point
    ds = _sweep(0, b=0.0, noise_model="multiplicative")
    fit = lawfit.fit(ds, form="power_law_no_offset", space="log", exclude=None)
    res = lawfit.lack_of_fit(fit)
    frame = ds["loss_reduction"].to_dataframe().reset_index()
    frame = frame.assign(y=np.log(frame["loss_reduction"]), lr=np.log(frame["rank"]))
    frame = frame.assign(ll=np.log(frame["length"]), point=frame["rank"] * 10**5 + frame["length"])
    reduced = smf.ols("y ~ lr + ll", frame).fit()
    full = smf.ols("y ~ C(point)", frame).fit()
    table = anova_lm(reduced, full)
    assert res.statistic == pytest.approx(table["F"].iloc[1], rel=1e-6)
    assert res.pvalue == pytest.approx(table["Pr(>F)"].iloc[1], rel=1e-5)
    assert (res.df_lack, res.df_pure, len(fit.points)) == (9, 24, 36)
    ss = res.test.set_index("source")["ss"]
    assert ss["pure error"] == pytest.approx(full.ssr, rel=1e-9)
    assert ss["residual"] == pytest.approx(reduced.ssr, rel=1e-6)


def test_the_point_table_holds_each_points_cells_mean_and_scatter():
    fit = lawfit.fit(_sweep(3, noise_model="additive"))
    res = lawfit.lack_of_fit(fit)
    row = res.points.set_index(["rank", "length"]).loc[(2, 256)]
    cells = fit.points[(fit.points["rank"] == 2) & (fit.points["length"] == 256)]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(cells["loss_reduction"].mean(), rel=1e-12)
    assert row["mean_residual"] == pytest.approx(cells["residual"].mean(), abs=1e-12)
    assert row["replicate_sd"] == pytest.approx(cells["residual"].std(), rel=1e-12)
    ss = res.test.set_index("source")["ss"]
    assert ss["residual"] == pytest.approx(float((fit.points["residual"] ** 2).sum()), rel=1e-12)


def test_names_what_replicates_differ_in_for_forms_with_and_without_loss_before():
    # two target sequences (their own loss_before) x two initialisation seeds per point
    gen = np.random.default_rng(0)
    rows = [
        dict(rank=r, length=n, data_seed=d, seed=s, loss_before=12.0 + d)
        for r in (1, 2, 4)
        for n in (128, 256, 512, 1024)
        for d in (0, 1)
        for s in (0, 1)
    ]
    frame = pd.DataFrame(rows)
    strength = np.exp(2.2) * frame["rank"] ** 0.8 * frame["length"] ** -0.6
    law = frame["loss_before"] * (1 - np.exp(-strength))  # the saturating form, b = 0
    frame["loss_reduction"] = law * np.exp(gen.normal(0, 0.02, len(frame)))
    frame["loss_after"] = frame["loss_before"] - frame["loss_reduction"]
    power = lawfit.lack_of_fit(lawfit.fit(frame, exclude=None))
    saturating = lawfit.lack_of_fit(lawfit.fit(frame, "saturating", exclude=None))
    assert power.replicates == ("data_seed", "seed") and power.df_pure == 36
    assert saturating.replicates == ("seed",) and saturating.df_pure == 24
    # within the sequence the power law stands on the saturating form's footing
    same = lawfit.lack_of_fit(lawfit.fit(frame, exclude=None), within=("data_seed",))
    assert same.replicates == ("seed",) and same.within == ("data_seed",)
    assert (same.df_lack, same.df_pure) == (saturating.df_lack, saturating.df_pure)


def test_within_moves_the_scatter_between_sequences_into_the_lack_of_fit():
    # log ΔL linear in log r, log l: pure error within (point, data_seed) is the cell-means
    # ANOVA of statsmodels with one mean per point and sequence
    one, two = (_sweep(s, b=0.0, noise_model="multiplicative", seeds=2) for s in (2, 3))
    lower = two["loss_reduction"] * 0.8
    two = two.assign(loss_reduction=lower, loss_after=two["loss_before"] - lower)
    ds = xr.concat([one, two], "data_seed").assign_coords(data_seed=[0, 1])
    fit = lawfit.fit(ds, form="power_law_no_offset", space="log", exclude=None)
    res = lawfit.lack_of_fit(fit, within="data_seed")
    frame = ds["loss_reduction"].to_dataframe().reset_index()
    frame = frame.assign(y=np.log(frame["loss_reduction"]), lr=np.log(frame["rank"]))
    frame = frame.assign(ll=np.log(frame["length"]))
    reduced = smf.ols("y ~ lr + ll", frame).fit()
    full = smf.ols("y ~ C(rank):C(length):C(data_seed)", frame).fit()
    table = anova_lm(reduced, full)
    assert res.statistic == pytest.approx(table["F"].iloc[1], rel=1e-6)
    assert (res.df_lack, res.df_pure) == (24 - 3, 48 - 24)
    # a sequence 20 % below the other is noise across sequences, misfit within them
    assert lawfit.lack_of_fit(fit).pvalue > 0.05 > res.pvalue
    with pytest.raises(lawfit.LawfitError, match=r"within must be column\(s\) of the data"):
        lawfit.lack_of_fit(fit, within=("sequence",))


def test_by_form_tests_every_fit_of_a_comparison_and_says_which_it_cannot():
    ds = _sweep(1, noise_model="additive")
    cmp = lawfit.compare(ds, ["power_law", "ratio", "saturating"], holdout=())
    table, skipped = lawfit.lack_of_fit_by_form(cmp)
    assert list(table["form"]) == ["power_law", "ratio"]  # saturating: loss_before per cell
    for _, row in table.iterrows():
        one = lawfit.lack_of_fit(cmp.fits[row["form"]])
        assert row["pvalue"] == one.pvalue and row["replicates"] == "seed"
    assert "no replicated design point" in skipped["saturating"]


def test_calibrated_under_the_law_in_the_fits_own_space():
    # additive noise fitted in linear space: p-values uniform (fixed seeds: deterministic)
    p = pvalues(150, "linear/additive")
    assert (p < 0.05).mean() <= 0.11  # 150 draws at 5 %: 99.9 % of rates lie below 0.113
    assert stats.kstest(p, "uniform").pvalue > 0.001


def test_rejects_a_one_variable_law_when_alpha_differs_from_beta():
    p = pvalues(30, "ratio (power)")
    assert (p < 0.05).mean() >= 0.9
    res = lawfit.lack_of_fit(lawfit.fit(_sweep(0, noise_model="additive"), form="ratio"))
    assert "lack_of_fit" in {f.code for f in res.flags}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["linear/additive", "log/multiplicative"])
def test_calibrated_at_full_size(scenario):
    p = pvalues(500, scenario)
    assert 0.025 <= (p < 0.05).mean() <= 0.08
    assert stats.kstest(p, "uniform").pvalue > 0.001


def test_refuses_designs_and_fits_it_cannot_test():
    unreplicated = _sweep(0, seeds=1)
    with pytest.raises(lawfit.LawfitError, match="no replicated design point"):
        lawfit.lack_of_fit(lawfit.fit(unreplicated))
    with pytest.raises(lawfit.LawfitError, match="loss='l2'"):
        lawfit.lack_of_fit(lawfit.fit(_sweep(0), loss="huber"))
    with pytest.raises(lawfit.LawfitError, match="one lawfit.FitResult"):
        lawfit.lack_of_fit(pd.DataFrame())


def test_flags_few_replicates_and_round_trips_as_json(tmp_path):
    ds = synthetic_dataset(**TRUTH, ranks=(1, 2, 4), lengths=(128, 256, 512), seeds=2, rng=0)
    replicated = (ds["seed"] == 0) | ((ds["rank"] == 1) & (ds["length"] <= 256))
    ds["status"] = ds["status"].where(replicated, "not_run")  # 9 points, 2 replicated
    res = lawfit.lack_of_fit(lawfit.fit(ds, exclude=None))
    assert (res.df_lack, res.df_pure) == (5, 2)
    assert "few_replicates" in {f.code for f in res.flags}
    path = tmp_path / "lof.json"
    res.save(path)
    back = lawfit.load(path)
    assert isinstance(back, LackOfFit)
    assert back.statistic == pytest.approx(res.statistic, rel=1e-12)
    pd.testing.assert_frame_equal(back.points, res.points)
