"""Budget extrapolation on sweeps whose training curves are known in closed form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import lawfit
from lawfit.budget import at_budget
from lawfit.errors import LawfitError
from lawfit.extrapolate import at_extrapolated_budget, budget_extrapolation, fit_tail
from lawfit.testing.curves import trajectory_dataset

RANKS = np.array([1, 2, 4, 8])
LENGTHS = np.array([64, 128, 256, 512])
BUDGET, EVERY, L0 = 600, 5, 12.0
C, ALPHA, BETA = 10.0, 0.6, 0.5
#: share of ΔL∞ still missing at the budget
GAP = 0.2


def _decay(rank: int) -> float:
    """Higher ranks converge more slowly: the exponents drift with the budget."""
    return 0.8 / (1 + np.log2(rank) / 2)


def _truth(rank: int, length: int, step: float) -> float:
    """ΔL(t) = D − A·t^(−c), D = C·r^α·ℓ^(−β), A such that a share GAP of D is left at BUDGET."""
    d = C * rank**ALPHA * length**-BETA
    c = _decay(rank)
    return d - GAP * d * (step / BUDGET) ** -c


def _sweep(*, noise: float = 0.0, rng: int = 0, stop_early=None) -> xr.Dataset:
    """A sweep whose cells follow :func:`_truth` (step 0: ΔL = 0), with optional step noise."""
    gen = np.random.default_rng(rng)
    steps = np.arange(0, BUDGET + 1, EVERY)
    curve = np.full((len(RANKS), len(LENGTHS), steps.size), np.nan)
    for i, r in enumerate(RANKS):
        for j, ln in enumerate(LENGTHS):
            stop = (stop_early(r, ln) if stop_early else None) or BUDGET
            logged = steps[steps <= stop]
            dl = np.array([0.0] + [_truth(r, ln, s) for s in logged[1:]])
            dl[1:] += noise * gen.standard_normal(logged.size - 1)
            curve[i, j, : logged.size] = L0 - dl
    return trajectory_dataset(RANKS, LENGTHS, steps, curve, L0, BUDGET)


def _truth_grid(step: float) -> np.ndarray:
    return np.array([[_truth(r, ln, step) for ln in LENGTHS] for r in RANKS])


def test_fit_tail_recovers_an_exact_power_tail():
    t = np.arange(200.0, 601.0, 5.0)
    d, a, c = fit_tail(t, 7.0 - 3.0 * (t / 100) ** -0.7)
    assert d == pytest.approx(7.0, rel=1e-6)
    assert c == pytest.approx(0.7, rel=1e-6)
    assert a * 1200.0**-c == pytest.approx(3.0 * 12.0**-0.7, rel=1e-5)


def test_extrapolating_a_cut_sweep_reproduces_the_measured_one():
    ds = _sweep()
    back = at_extrapolated_budget(ds, 2.0, budget=300)
    np.testing.assert_allclose(back["loss_reduction"].values, _truth_grid(BUDGET), rtol=1e-6)
    ahead = at_extrapolated_budget(ds, 4.0)
    np.testing.assert_allclose(ahead["loss_reduction"].values, _truth_grid(4 * BUDGET), rtol=1e-6)
    assert np.all(ahead["steps"].values == 4 * BUDGET)
    assert np.isnan(ahead["exact_match"].values).all()
    assert json.loads(ahead.attrs["extrapolated"])["horizon"] == 4.0
    decay = np.array([[_decay(r)] * len(LENGTHS) for r in RANKS])
    np.testing.assert_allclose(ahead["tail_exponent"].values, decay, rtol=1e-5)
    xr.testing.assert_identical(ahead["loss_curve"], ds["loss_curve"])


def test_cells_that_stopped_early_keep_their_delta():
    ds = _sweep(stop_early=lambda r, ln: 200 if r == 8 else None)
    ahead = at_extrapolated_budget(ds, 2.0)
    np.testing.assert_array_equal(ahead["loss_after"].values[-1], ds["loss_after"].values[-1])
    np.testing.assert_array_equal(ahead["exact_match"].values[-1], 0.0)
    assert np.isnan(ahead["tail_exponent"].values[-1]).all()
    assert np.all(ahead["loss_after"].values[:-1] < ds["loss_after"].values[:-1])


def test_backtest_recovers_the_exponents_drift_on_exact_tails():
    res = budget_extrapolation(_sweep(), horizon=2.0, exclude=None)
    tab = res.table.set_index("fit")
    # the exponents drift with the budget (ranks converge at different rates) ...
    assert tab.loc["measured@budget", "alpha"] - tab.loc["measured@short", "alpha"] < -0.01
    # ... and extrapolating the cut cells lands on the measured law
    for p in ("alpha", "beta", "C"):
        assert tab.loc["extrapolated@budget", p] == pytest.approx(
            tab.loc["measured@budget", p], rel=1e-5
        )
    full = lawfit.fit(at_extrapolated_budget(_sweep(), 2.0), bootstrap=0, exclude=None)
    assert tab.loc["extrapolated@horizon", "alpha"] == pytest.approx(full.params["alpha"])
    np.testing.assert_allclose(res.cells["backtest error"], 0.0, atol=1e-6)
    assert "100% of the measured drift" in res.summary()


def test_noisy_tails_predict_better_than_assuming_convergence():
    # calibration over 20 noisy sweeps: the extrapolated ΔL at twice the budget is closer to
    # the truth than the ΔL at the budget (the "already converged" answer), and unbiased
    errors, gaps = [], []
    truth = _truth_grid(2 * BUDGET)
    for seed in range(20):
        ds = _sweep(noise=0.01, rng=seed)
        ahead = at_extrapolated_budget(ds, 2.0)
        errors.append(ahead["loss_reduction"].values / truth - 1)
        gaps.append(ds["loss_reduction"].values / truth - 1)
    errors, gaps = np.array(errors), np.array(gaps)
    assert np.sqrt(np.mean(errors**2)) < 0.4 * np.sqrt(np.mean(gaps**2))
    assert abs(np.mean(errors)) < 0.002


def test_every_fit_of_the_comparison_shares_its_cells():
    # rank 8, l = 64 crosses ln 2 only in the extrapolation: it is left out of all four fits
    ds = _sweep()
    sel, lb = {"rank": 8, "length": 64}, _truth(8, 64, BUDGET) + 0.75
    ds["loss_curve"].loc[sel] = ds["loss_curve"].loc[sel] - L0 + lb
    ds["loss_before"].loc[sel], ds["loss_after"].loc[sel] = lb, 0.75
    ds["loss_reduction"] = ds["loss_before"] - ds["loss_after"]
    res = budget_extrapolation(ds, horizon=2.0)
    assert res.table["n_obs"].tolist() == [15, 15, 15, 15]
    for fit in res.fits.values():
        excluded = fit.exclusions.set_index(["rank", "length"])["reason"]
        assert excluded[(8, 64)] == "status=memorized_at_a_compared_budget"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ds: at_extrapolated_budget(ds, 1.0), "horizon must be > 1"),
        (lambda ds: at_extrapolated_budget(ds, 2.0, fit_from=1.5), "fit_from must lie in"),
        (lambda ds: at_extrapolated_budget(ds.drop_vars("loss_curve"), 2.0), "loss_curve"),
        (lambda ds: at_extrapolated_budget(ds, 2.0, budget=303), "not a logged step"),
        (lambda ds: budget_extrapolation(ds.assign(steps=ds["steps"] * 0 + 100)), "no cell"),
        (lambda ds: fit_tail([0.0, 1.0, 2.0, 3.0], [0, 1, 2, 3]), "all > 0"),
        (lambda ds: fit_tail([1.0, 2.0, 3.0], [1, 2, 3]), "at least 4"),
    ],
)
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(LawfitError, match=match):
        call(_sweep())


def test_cut_budget_is_at_budget():
    # the backtest's cut cells are lawfit.at_budget's
    ds = _sweep()
    res = budget_extrapolation(ds, horizon=2.0)
    cut = at_budget(ds, 300)
    np.testing.assert_allclose(
        np.sort(res.cells["ΔL@300"].to_numpy()), np.sort(cut["loss_reduction"].values.ravel())
    )


def test_cli_prints_the_extrapolation_with_its_backtest(tmp_path, capsys):
    from lawfit.cli import main

    path = tmp_path / "sweep.nc"
    _sweep().to_netcdf(path)
    assert main(["budget", str(path), "--bootstrap", "0", "--extrapolate", "2"]) == 0
    out = capsys.readouterr().out
    assert "Past the budget (extrapolated; trust it as far as its backtest)" in out
    assert "extrapolated@horizon" in out
    assert "note: backtest on 16 cells: extrapolated from 300 steps" in out
