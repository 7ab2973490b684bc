"""Training-budget diagnostics on sweeps whose trajectories are known in closed form."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lawfit
from lawfit.budget import at_budget, budget_sensitivity, convergence, max_steps
from lawfit.errors import LawfitError
from lawfit.testing.curves import trajectory_dataset

RANKS = np.array([1, 2, 4, 8, 16])
LENGTHS = np.array([64, 128, 256, 512])
BUDGET, EVERY, L0 = 600, 10, 12.0
C, ALPHA, BETA = 10.0, 0.6, 0.5


def _sweep(tau, *, noise: float = 0.0, stop_early=None, rng: int = 0) -> xr.Dataset:
    """Cells whose loss falls as L0 − ΔL∞·(1 − exp(−k/τ)), ΔL∞ = C·r^α·ℓ^−β.

    ``tau(rank, length)`` sets the time scale; ``stop_early(rank, length)`` returns the
    step at which a cell stopped (None: at the budget).
    """
    gen = np.random.default_rng(rng)
    steps = np.arange(0, BUDGET + 1, EVERY)
    curve = np.full((len(RANKS), len(LENGTHS), steps.size), np.nan)
    for i, r in enumerate(RANKS):
        for j, ln in enumerate(LENGTHS):
            dl_inf = C * r**ALPHA * ln**-BETA * math.exp(noise * gen.standard_normal())
            stop = stop_early(r, ln) if stop_early else None
            stop = BUDGET if stop is None else stop
            logged = steps[steps <= stop]
            curve[i, j, : logged.size] = L0 - dl_inf * (1 - np.exp(-logged / tau(r, ln)))
    return trajectory_dataset(RANKS, LENGTHS, steps, curve, L0, BUDGET)


def test_at_budget_reads_the_trajectory_back_exactly():
    ds = _sweep(lambda r, ln: 300.0, stop_early=lambda r, ln: 200 if r == 16 else None)
    sub = at_budget(ds, 300)
    dl_inf = C * RANKS[:, None] ** ALPHA * LENGTHS[None, :] ** -BETA
    expect = dl_inf * (1 - math.exp(-1.0))
    got = sub["loss_reduction"].values
    np.testing.assert_allclose(got[:-1], expect[:-1], rtol=1e-12)
    # rank 16 stopped at step 200 < 300: unchanged, end-of-training variables kept
    np.testing.assert_array_equal(got[-1], ds["loss_reduction"].values[-1])
    assert np.all(sub["exact_match"].values[-1] == 0)
    # truncated cells: steps = budget, end-only measurements unknown, curves cut
    assert np.all(sub["steps"].values[:-1] == 300)
    assert np.isnan(sub["exact_match"].values[:-1]).all()
    assert np.isnan(sub["loss_curve"].sel(step=310).values).all()
    assert sub.attrs["budget_steps"] == 300
    np.testing.assert_allclose(sub["loss_reduction"], sub["loss_before"] - sub["loss_after"])


def test_at_budget_full_budget_is_identity_on_the_law_variables():
    ds = _sweep(lambda r, ln: 100.0)
    sub = at_budget(ds, BUDGET)
    xr.testing.assert_identical(sub["loss_reduction"], ds["loss_reduction"])


def test_convergence_flags_exactly_the_cells_still_improving():
    # slow cells (tau = 400) are still improving at 600 steps, fast ones (tau = 40) are not
    slow = {(1, 512), (2, 512), (1, 256)}
    ds = _sweep(
        lambda r, ln: 400.0 if (r, ln) in slow else 40.0,
        stop_early=lambda r, ln: 150 if r == 16 else None,
    )
    conv = convergence(ds, window=100, tol=0.01)
    flagged = {
        (int(r), int(ln))
        for r, ln in conv.loc[conv["still_improving"], ["rank", "length"]].to_numpy()
    }
    assert flagged == slow
    rel = conv.set_index(["rank", "length"])["rel_gain_last_window"]
    truth = (math.exp(-500 / 400) - math.exp(-600 / 400)) / (1 - math.exp(-600 / 400))
    assert rel[(1, 512)] == pytest.approx(truth, rel=1e-9)
    reasons = conv.set_index(["rank", "length"])["stop_reason"]
    assert set(reasons[reasons.index.get_level_values(0) == 16]) == {"plateau"}
    assert set(reasons[reasons.index.get_level_values(0) < 16]) == {"budget"}
    assert conv.attrs == {
        "max_steps": BUDGET,
        "window": 100,
        "window_text": "last 100 steps",
        "tol": 0.01,
    }


def test_exponents_do_not_drift_when_every_cell_shares_one_time_scale():
    # ΔL(k) = ΔL∞·f(k): only C depends on the budget; α and β must be the same at every budget
    ds = _sweep(lambda r, ln: 250.0, noise=0.02)
    res = budget_sensitivity(ds, [200, 400, 600], bootstrap=0, exclude=None)
    tab = res.table.set_index("budget")
    np.testing.assert_allclose(tab["alpha"], tab.loc[600, "alpha"], atol=1e-6)
    np.testing.assert_allclose(tab["beta"], tab.loc[600, "beta"], atol=1e-6)
    assert tab.loc[600, "alpha_low"] < ALPHA < tab.loc[600, "alpha_high"]
    assert tab.loc[600, "C"] > tab.loc[200, "C"]
    assert res.drift["alpha"] < 1e-3
    assert not any("falls" in n or "rises" in n for n in res.notes)


def test_rank_dependent_time_scale_is_reported_as_a_budget_trend():
    # small ranks learn slowly: at short budgets ΔL grows faster with rank (α too high)
    ds = _sweep(lambda r, ln: 600.0 / r, noise=0.0)
    res = budget_sensitivity(ds, [100, 200, 400, 600], bootstrap=0, exclude=None)
    alpha = res.table["alpha"].to_numpy()
    assert np.all(np.diff(alpha) < 0)
    assert any(n.startswith("alpha falls at every budget") for n in res.notes)
    assert any("still improving at the budget" in n for n in res.notes)
    assert "Stop reasons over 20 ok cells" in res.summary()


def test_every_budget_is_fitted_on_the_same_cells():
    # rank 16, l = 64 is memorized at 600 steps (loss 12·e^-4 < ln 2) but not at 300 (12·e^-2):
    # fitted at 300 and excluded at 600, it would make the budgets differ by a cell as well
    ds = _sweep(lambda r, ln: 100.0)
    curve = L0 * np.exp(-ds["step"].values / 150.0)
    ds["loss_curve"].loc[{"rank": 16, "length": 64}] = curve
    ds["loss_after"].loc[{"rank": 16, "length": 64}] = curve[-1]
    ds["loss_reduction"] = ds["loss_before"] - ds["loss_after"]
    assert lawfit.fit(at_budget(ds, 300), bootstrap=0).n_obs == 20
    res = budget_sensitivity(ds, [300, 600], bootstrap=0)
    assert res.table["n_obs"].tolist() == [19, 19]
    for fit in res.fits.values():
        excluded = fit.exclusions.set_index(["rank", "length"])["reason"]
        assert excluded[(16, 64)] == "status=memorized_at_a_compared_budget"
    # without the memorized rule nothing is dropped anywhere
    res = budget_sensitivity(ds, [300, 600], bootstrap=0, exclude=None)
    assert res.table["n_obs"].tolist() == [20, 20]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ds: at_budget(ds, 305), "not a logged step"),
        (lambda ds: at_budget(ds.drop_vars("loss_curve"), 300), "lacks \\['loss_curve'\\]"),
        (lambda ds: convergence(ds, window=15), "multiple of the logging interval"),
        (lambda ds: budget_sensitivity(ds.expand_dims(task=["a", "b"])), "by="),
    ],
)
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(LawfitError, match=match):
        call(_sweep(lambda r, ln: 100.0))


def test_max_steps_falls_back_to_the_last_logged_step():
    ds = _sweep(lambda r, ln: 100.0)
    assert max_steps(ds) == BUDGET
    del ds.attrs["config"]
    assert max_steps(ds) == BUDGET


def test_cli_and_report_show_the_budget_analysis(tmp_path, capsys):
    from lawfit.cli import main

    ds = _sweep(lambda r, ln: 600.0 / r)
    path = tmp_path / "sweep.nc"
    ds.to_netcdf(path)
    assert (
        main(["budget", str(path), "--bootstrap", "0", "--csv", str(tmp_path / "cells.csv")]) == 0
    )
    out = capsys.readouterr().out
    assert "Stop reasons over 20 ok cells: budget 20" in out
    assert (tmp_path / "cells.csv").read_text().startswith("rank,length,steps,stop_reason")
    md = lawfit.build_report(ds, bootstrap=50).to_markdown()
    assert "### Training budget: had ΔL stopped moving?" in md
    assert "Still improving at the budget" in md


def test_no_fit_reads_a_sweep_of_several_carriers_and_counts_per_carrier(tmp_path, capsys):
    """No law spans carriers; the per-cell test does, and says how many fail per carrier."""
    from lawfit.cli import main

    converged, slow = _sweep(lambda r, ln: 50.0), _sweep(lambda r, ln: 1e5)
    ds = xr.concat([converged, slow], dim=pd.Index(["mlp@1", "kv:1@2"], name="modules"))
    path = tmp_path / "carriers.nc"
    ds.to_netcdf(path)
    assert main(["budget", str(path), "--bootstrap", "0"]) != 0  # no law over carriers
    assert "pass --no-fit for the per-cell test alone" in capsys.readouterr().err
    assert main(["budget", str(path), "--no-fit", "--csv", str(tmp_path / "cells.csv")]) == 0
    out = capsys.readouterr().out
    n = len(RANKS) * len(LENGTHS)
    assert f"{n} of {2 * n} cells stopped by the budget or the convergence stop" in out
    counts = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[-2:]}
    assert counts == {"kv:1@2": [str(n), str(n)], "mlp@1": ["0", str(n)]}
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert cells.groupby("modules")["still_improving"].sum().to_dict() == {"kv:1@2": n, "mlp@1": 0}


def test_one_cell_probe_gets_its_convergence_row_and_a_clear_note(tmp_path, capsys):
    from lawfit.cli import main

    ds = _sweep(lambda r, ln: 300.0)
    path = tmp_path / "sweep.nc"
    ds.to_netcdf(path)
    # one cell: rank and length are selected down to scalars; the law cannot be fitted
    assert (
        main(
            [
                "budget",
                str(path),
                "--sel",
                "rank=1",
                "--sel",
                "length=128",
                "--bootstrap",
                "0",
                "--budgets",
                "300",
                "600",
                "--trajectory",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "ΔL@300  ΔL@600" in out
    assert "rank  length  steps stop_reason" in out
    assert "note: the law could not be fitted at any budget" in out
    assert "only a single rank" in out
    table = convergence(ds.sel(rank=1, length=128))
    assert table[["rank", "length"]].to_numpy().tolist() == [[1, 128]]
    with pytest.raises(LawfitError, match="only a single rank"):
        lawfit.fit(ds.sel(rank=1, length=128), bootstrap=0)  # not a traceback from xarray


def test_delta_by_budget_reads_each_cells_closed_form_trajectory():
    from lawfit.budget import delta_by_budget

    ds = _sweep(lambda r, ln: 200.0, stop_early=lambda r, ln: 250 if r == 16 else None)
    table = delta_by_budget(ds, [100, 300, 600])
    assert len(table) == len(RANKS) * len(LENGTHS)
    for _, row in table.iterrows():
        dl_inf = C * row["rank"] ** ALPHA * row["length"] ** -BETA
        for b in (100, 300, 600):
            reached = min(b, 250) if row["rank"] == 16 else b  # stopped early: final ΔL stays
            assert row[f"ΔL@{b}"] == pytest.approx(
                dl_inf * (1 - math.exp(-reached / 200.0)), rel=1e-12
            )
    assert set(table.loc[table["rank"] == 16, "steps"]) == {250}


def test_budget_tables_quote_the_cluster_robust_interval_over_few_target_sequences():
    """3 target sequences: a bootstrap over them is too narrow, so the table quotes CR2."""
    import pandas as pd

    seqs = [_sweep(lambda r, ln: 200.0, noise=0.05, rng=k) for k in range(3)]
    ds = xr.concat(seqs, dim=pd.Index([0, 1, 2], name="data_seed"))
    res = budget_sensitivity(ds, [300, BUDGET], bootstrap=40, unit="data_seed")
    assert (res.table["ci"] == "cluster-robust CI").all()
    for _, row in res.table.iterrows():
        ci = res.fits[int(row["budget"])].conf_int("cluster")
        assert row["alpha_low"] == pytest.approx(ci.loc["alpha", "low"], rel=1e-12)
        assert row["beta_high"] == pytest.approx(ci.loc["beta", "high"], rel=1e-12)
    cells = budget_sensitivity(ds, [300, BUDGET], bootstrap=40)  # case bootstrap: its own
    assert (cells.table["ci"] == "percentile").all()
    own = cells.fits[BUDGET].to_dataframe()
    assert cells.table["alpha_low"].iloc[-1] == pytest.approx(own.loc["alpha", "low"])


def test_budget_tables_count_left_out_cells_not_empty_grid_points():
    ds = _sweep(lambda r, ln: 200.0, noise=0.05)
    status = ds["status"].values.copy()
    status[0, 0] = "not_run"  # a grid point the sweep has not collected
    res = budget_sensitivity(ds.assign(status=(ds["status"].dims, status)), [300, BUDGET])
    assert "status=not_run" in set(res.fits[BUDGET].exclusions["reason"])
    assert (res.table["n_excluded"] == 0).all()
    assert (res.table["n_obs"] == RANKS.size * LENGTHS.size - 1).all()


def test_by_default_convergence_looks_back_over_the_last_tenth_of_the_budget():
    ds = _sweep(lambda r, ln: 400.0)
    w = round(0.1 * BUDGET / EVERY) * EVERY
    conv = convergence(ds)
    assert conv.attrs["window"] == w
    explicit = convergence(ds, window=w)
    assert conv.equals(explicit)
    rel = conv.set_index(["rank", "length"])["rel_gain_last_window"]
    end = math.exp(-BUDGET / 400)
    truth = (math.exp(-(BUDGET - w) / 400) - end) / (1 - end)
    assert rel[(1, 512)] == pytest.approx(truth, rel=1e-9)
    steps = np.arange(0, 601, 25)
    flat = np.full((len(RANKS), len(LENGTHS), steps.size), L0 - 1.0)
    coarse = trajectory_dataset(RANKS, LENGTHS, steps, flat, L0, 600)
    assert convergence(coarse).attrs["window"] == 50  # 60 steps rounded to the 25-step interval


def test_cells_of_a_convergence_stop_are_checked_over_their_own_last_tenth():
    """collect's convergence stop ends cells before the cap: each is checked at its own end."""
    ds = _sweep(lambda r, ln: 400.0, stop_early=lambda r, ln: 300 if ln == 64 else None)
    ds["stop_reason"] = xr.where(ds["length"] == 64, "converged", "budget").broadcast_like(
        ds["steps"]
    )
    conv = convergence(ds).set_index(["rank", "length"])
    assert set(conv.loc[(slice(None), 64), "stop_reason"]) == {"converged"}
    end = math.exp(-300 / 400)  # a converged cell's window: 10 % of its 300 steps
    truth = (math.exp(-270 / 400) - end) / (1 - end)
    assert conv.loc[(1, 64), "rel_gain_last_window"] == pytest.approx(truth, rel=1e-9)
    end = math.exp(-BUDGET / 400)  # a capped cell's: 10 % of the budget
    truth = (math.exp(-(BUDGET - 60) / 400) - end) / (1 - end)
    assert conv.loc[(1, 512), "rel_gain_last_window"] == pytest.approx(truth, rel=1e-9)
    assert conv.attrs["window"] is None and "10% of its steps" in conv.attrs["window_text"]
    # cut at a budget before its stop, a converged cell stopped at that budget
    cut = at_budget(ds, 200)
    assert set(np.unique(cut["stop_reason"].values)) == {"budget"}


def test_a_carrier_written_without_training_is_not_called_a_plateau():
    """A Memory³ sparse KV cell records 'written' after 0 steps: that is why it stopped."""
    ds = _sweep(lambda r, ln: 400.0, stop_early=lambda r, ln: 0 if ln == 64 else None)
    ds["stop_reason"] = xr.where(ds["length"] == 64, "written", "budget").broadcast_like(
        ds["steps"]
    )
    conv = convergence(ds)
    written, trained = conv[conv["length"] == 64], conv[conv["length"] != 64]
    assert len(written) == len(RANKS) and set(written["stop_reason"]) == {"written"}
    assert written["gain_last_window"].isna().all() and not written["still_improving"].any()
    assert set(trained["stop_reason"]) == {"budget"}


def test_a_spike_in_the_loss_is_not_a_gain():
    """Best-so-far losses: a loss that jumps up at the window's start and falls back is flat."""
    steps = np.arange(0, BUDGET + 1, EVERY)
    curve = np.full((len(RANKS), len(LENGTHS), steps.size), L0 - 2.0)
    curve[..., 0] = L0
    curve[0, 0, steps == BUDGET - 60] = L0  # one logged spike at the start of the last 10 %
    ds = trajectory_dataset(RANKS, LENGTHS, steps, curve, L0, BUDGET)
    conv = convergence(ds).set_index(["rank", "length"])
    assert conv.loc[(1, 64), "rel_gain_last_window"] == 0.0
    assert not conv["still_improving"].any()


def test_a_cell_whose_last_loss_sits_above_its_best_reads_as_collect_stopped_it():
    """The gain is relative to the best ΔL, as collect's stop divides, not to the last one.

    Session 31's memtok:8@20 cell at ℓ = 512 stopped converged at step 3,057 (best ΔL 9.40,
    gain 0.9987 % of it), but its last loss sat 0.06 above its best: divided by the last
    ΔL the gain read 1.005 % and the cell was counted still improving.
    """
    from collect.probe import converged

    steps, best_dl, gain, spike = np.arange(301), 9.4, 0.0099 * 9.4, 0.2
    curve = np.empty(steps.size)
    curve[:271] = L0 - (best_dl - gain) * steps[:271] / 270
    curve[271:300] = np.linspace(L0 - (best_dl - gain), L0 - best_dl, 30)[1:]
    curve[300] = L0 - best_dl + spike  # the last loss, above the best
    assert converged(list(curve), L0, 0.1, 0.01)  # collect stops it here...
    assert not converged(list(curve[:300]), L0, 0.1, 0.01)  # ...and not one step earlier
    assert gain / (best_dl - spike) > 0.01  # the last ΔL's reading would call it improving
    ds = trajectory_dataset([1], [64], steps, curve[None, None, :], L0, 6000)
    ds["stop_reason"] = xr.full_like(ds["steps"], "converged", dtype=object)
    row = convergence(ds).iloc[0]
    assert row["loss_reduction"] == pytest.approx(best_dl - spike)
    assert row["rel_gain_last_window"] == pytest.approx(gain / best_dl, rel=1e-9)
    assert not row["still_improving"]


def _first_step_by_collects_rule(curve, loss_before, window, tol, start):
    """The first step at which collect's own stop test passes, run step by step."""
    from collect.probe import converged

    finite = curve[np.isfinite(curve)]
    for t in range(start, finite.size):
        if converged(list(finite[: t + 1]), loss_before, window, tol):
            return t
    return None


@pytest.mark.parametrize("start", [0, 150])
def test_first_converged_step_is_where_collects_convergence_stop_fires(start):
    """Noisy, oscillating and stopped-early curves: the vectorised read equals the stop rule."""
    gen = np.random.default_rng(3)
    ranks, lengths, steps = np.array([1, 2]), np.array([64, 128, 256]), np.arange(401)
    curve = np.full((2, 3, steps.size), np.nan)
    for i, j in np.ndindex(2, 3):
        tau = gen.uniform(20, 400)  # some cells converge early, some never within 400 steps
        fall = 8.0 * (1 - np.exp(-steps / tau))
        wiggle = 0.05 * np.sin(steps / gen.uniform(3, 9)) + 0.02 * gen.standard_normal(steps.size)
        stop = 400 if (i, j) != (1, 2) else 250  # one cell stopped before the others
        curve[i, j, : stop + 1] = (L0 - fall + wiggle)[: stop + 1]
    ds = trajectory_dataset(ranks, lengths, steps, curve, L0, 400)
    got = lawfit.budget.first_converged_step(ds, window=0.1, tol=0.01, start=start)
    expected = [
        _first_step_by_collects_rule(curve[i, j], L0, 0.1, 0.01, start) for i, j in np.ndindex(2, 3)
    ]
    assert any(e is None for e in expected) and any(e is not None for e in expected)
    found = got.transpose("rank", "length").values.ravel()
    assert [None if np.isnan(v) else int(v) for v in found] == expected


def test_first_converged_step_needs_every_step_logged():
    with pytest.raises(LawfitError, match="log_every = 1"):
        lawfit.budget.first_converged_step(_sweep(lambda r, n: 100.0))


def test_at_convergence_stop_ends_each_cell_where_the_rule_fires_from_the_floor():
    """Cells cut at their first converged step from the floor; the others left as they were."""
    steps = np.arange(601)
    taus = {(1, 64): 50.0, (1, 128): 150.0, (2, 64): 2000.0, (2, 128): 30.0}
    curve = np.full((2, 2, steps.size), np.nan)
    for (i, r), (j, n) in itertools.product(enumerate([1, 2]), enumerate([64, 128])):
        stop = 400 if (r, n) == (2, 128) else 600  # this one stopped early
        curve[i, j, : stop + 1] = (L0 - 8.0 * (1 - np.exp(-steps / taus[r, n])))[: stop + 1]
    ds = trajectory_dataset([1, 2], [64, 128], steps, curve, L0, 600)
    first = lawfit.budget.first_converged_step(ds, start=100)
    out = lawfit.budget.at_convergence_stop(ds, start=100)
    assert out.attrs["converge_from"] == 100
    for r, n in taus:
        cell = dict(rank=r, length=n)
        f, ran = first.sel(cell).item(), int(ds["steps"].sel(cell))
        if np.isfinite(f) and f < ran:  # cut where the rule fires
            assert out["steps"].sel(cell).item() == f
            assert out["loss_after"].sel(cell).item() == ds["loss_curve"].sel(cell).sel(step=int(f))
            assert out["loss_curve"].sel(cell).dropna("step")["step"].max() == f
        else:  # the slow cell never converges: it keeps its end
            assert out["steps"].sel(cell).item() == ran
            assert out["loss_after"].sel(cell).item() == ds["loss_after"].sel(cell).item()
    assert np.isnan(first.sel(rank=2, length=64))  # τ = 2,000 steps: still gaining at 600
    assert (first.sel(rank=1) < 600).all()
