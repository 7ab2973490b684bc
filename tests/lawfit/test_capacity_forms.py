"""capacity_by_form: every form of a comparison inverted at the same queries."""

import math

import numpy as np
import pandas as pd
import pytest

from lawfit.capacity import predict_capacity
from lawfit.capacity_forms import MIN_WEIGHT, _average, _flags, capacity_by_form
from lawfit.compare import compare
from lawfit.errors import LawfitError
from lawfit.testing.selection import TRUTHS, synthetic_form_dataset

LN2 = math.log(2)


@pytest.fixture(scope="module")
def saturating():
    """A sweep whose ΔL truly saturates, and its comparison of forms."""
    ds = synthetic_form_dataset("saturating", TRUTHS["saturating"], seeds=2, rng=3)
    ds = ds.isel(modules=0)
    return ds, compare(ds, holdout=(), space="log")


def _true_rank(length: float, loss_before: float) -> float:
    """Invert the true saturating law at loss_after = ln 2 (closed form)."""
    t = TRUTHS["saturating"]
    share = (loss_before - LN2 - t["b"]) / loss_before
    z = -math.log1p(-share)
    return math.exp((math.log(z) - t["c"] + t["beta"] * math.log(length)) / t["alpha"])


def test_each_row_is_that_forms_own_capacity(saturating):
    ds, cmp = saturating
    res = capacity_by_form(cmp, length=[128, 512], target=LN2, target_kind="loss_after", data=ds)
    assert set(res.table["form"]) == set(cmp.fits)
    for form in ("power_law", "saturating"):
        own = predict_capacity(
            cmp.fits[form], length=[128, 512], target=LN2, target_kind="loss_after", data=ds
        )
        rows = res.table[res.table["form"] == form]
        np.testing.assert_allclose(rows["estimate"], own.table["estimate"], rtol=1e-12)
        weight = cmp.table.set_index("form").loc[form, "weight_aicc"]
        assert (rows["weight"] == weight).all()


def test_the_average_recovers_the_true_capacity(saturating):
    """Data of known truth: the weighted answer lies within 5 % of the true rank."""
    ds, cmp = saturating
    lengths = [128, 256, 512]
    res = capacity_by_form(cmp, length=lengths, target=LN2, target_kind="loss_after", data=ds)
    l0 = ds["loss_before"].mean([d for d in ds["loss_before"].dims if d != "length"])
    for _, row in res.averaged.iterrows():
        truth = _true_rank(row["length"], float(l0.sel(length=row["length"])))
        assert row["estimate"] == pytest.approx(truth, rel=0.05)
        eps = 1e-9 * row["estimate"]  # one form of weight ~1: the average is its answer
        assert row["low_form"] - eps <= row["estimate"] <= row["high_form"] + eps
    assert (res.averaged["best_form"] == cmp.best).all()


def test_weighted_average_and_spread_by_hand():
    table = pd.DataFrame(
        {
            "form": ["a", "b", "c", "d"],
            "weight": [0.6, 0.2, 0.195, 0.005],
            "length": [512.0] * 4,
            "estimate": [4.0, 8.0, np.inf, 100.0],
        }
    )
    row = _average(table, "length").iloc[0]
    w = np.array([0.6, 0.2, 0.005])  # the unreachable form is left out, the others renormalised
    est = np.array([4.0, 8.0, 100.0])
    mean = np.sum(w * est) / w.sum()
    assert row["estimate"] == pytest.approx(mean, rel=1e-12)
    assert row["between_form_sd"] == pytest.approx(
        math.sqrt(np.sum(w * (est - mean) ** 2) / w.sum()), rel=1e-12
    )
    assert row["weight_finite"] == pytest.approx(0.805)
    # the range covers forms of weight >= MIN_WEIGHT only: d (0.005) is out, c's inf is in
    assert 0.005 < MIN_WEIGHT and row["low_form"] == 4.0 and math.isinf(row["high_form"])
    assert row["best_form"] == "a" and row["best_estimate"] == 4.0


def test_a_wide_spread_between_forms_is_flagged(saturating):
    # the synthetic sweep singles out its true form (Akaike weight ~1): no spread, no flag
    ds, cmp = saturating
    res = capacity_by_form(cmp, length=[64, 65536], target=LN2, target_kind="loss_after", data=ds)
    assert (res.averaged["low_form"] == res.averaged["high_form"]).all() and not res.flags
    assert "Capacity by form" in str(res.summary())
    # two forms of equal weight that disagree by a factor 2 at the longest query
    table = pd.DataFrame(
        {
            "form": ["a", "b", "a", "b"],
            "weight": [0.5, 0.5, 0.5, 0.5],
            "length": [512.0, 512.0, 4096.0, 4096.0],
            "estimate": [5.0, 5.2, 30.0, 60.0],
        }
    )
    (flag,) = _flags(_average(table, "length"), table)
    assert flag.code == "form_sensitive" and "length = 4096" in flag.message
    assert not _flags(_average(table.iloc[:2], "length"), table.iloc[:2])  # 4 % apart: no flag


def test_a_form_that_never_reaches_the_target_is_named_not_read_as_a_spread():
    # c saturates below the target (inf) at both lengths; a and b agree within 4 %
    table = pd.DataFrame(
        {
            "form": ["a", "b", "c"] * 2,
            "weight": [0.5, 0.45, 0.05] * 2,
            "length": [512.0] * 3 + [1024.0] * 3,
            "estimate": [5.0, 5.2, np.inf, 9.0, 9.3, np.inf],
        }
    )
    averaged = _average(table, "length")
    assert math.isinf(averaged["high_form"].iloc[0])  # the table still shows c's answer
    (flag,) = _flags(averaged, table)
    assert flag.code == "form_never_reaches" and "length = 512-1024" in flag.message
    assert flag.message.startswith("c (weight 0.05)")
    assert not _flags(averaged, table.assign(weight=[0.5, 0.495, 0.005] * 2))  # c too light


def test_bad_requests_are_refused_before_any_work(saturating):
    ds, cmp = saturating
    with pytest.raises(LawfitError, match="lawfit.compare result"):
        capacity_by_form(object(), length=512, target=LN2)
    with pytest.raises(LawfitError, match="criterion"):
        capacity_by_form(cmp, criterion="aic", length=512, target=LN2)
    with pytest.raises(LawfitError, match="one target"):
        capacity_by_form(cmp, length=512, target=[0.5, 1.0])
    with pytest.raises(LawfitError, match="one target"):
        capacity_by_form(cmp, length=512, target=LN2, interval="cluster")


def test_the_result_saves_and_loads_as_json(saturating, tmp_path):
    import lawfit

    ds, cmp = saturating
    res = capacity_by_form(cmp, length=[128, 512], target=LN2, target_kind="loss_after", data=ds)
    res.save(tmp_path / "by_form.json")
    back = lawfit.load(tmp_path / "by_form.json")
    assert type(back) is type(res) and back.quantity == res.quantity
    pd.testing.assert_frame_equal(back.averaged, res.averaged)
    pd.testing.assert_frame_equal(back.table, res.table)
    assert back.to_dataset()["estimate"].size == len(res.averaged)
