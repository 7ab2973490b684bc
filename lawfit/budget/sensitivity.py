"""The law refitted as if the sweep had been run with smaller step budgets.

:func:`budget_sensitivity` fits the law at each budget (:func:`_fit_budgets`: one fit
space and one set of cells for all), tabulates the fits (:func:`fit_columns`, which
:func:`lawfit.budget_extrapolation` uses too) and measures how far each exponent still
moves between the last two budgets (:func:`_drift`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit._tokens import load
from lawfit.budget.result import BudgetSensitivity
from lawfit.budget.smaller_budgets import at_budget, same_cells
from lawfit.budget.stopping import convergence
from lawfit.budget.trajectories import _default_budgets, _ok, _require_curves
from lawfit.data import as_frame
from lawfit.errors import LawfitError
from lawfit.robust import preferred_interval


def _fit_budgets(ds, budgets, form, bootstrap, confidence_level, rng, fit_kwargs, notes):
    """Fit the law at every budget, largest first; return the fits by budget, ascending.

    One fit space for every budget: "auto" is decided on the largest budget (fitted first)
    and kept, and one set of cells (:func:`same_cells`: a cell memorized at any budget is
    left out at all), so that the drift compares exponents fitted the same way on the same
    cells.
    """
    from lawfit.fitting import fit

    fits = {}
    cut = same_cells({b: at_budget(ds, b) for b in budgets}, fit_kwargs.get("exclude", "memorized"))
    for b in sorted(budgets, reverse=True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fit(
                    cut[b],
                    form,
                    bootstrap=int(bootstrap),
                    confidence_level=confidence_level,
                    rng=rng,
                    **fit_kwargs,
                )
        except LawfitError as exc:
            notes.append(f"budget {b}: not fitted ({exc})")
            continue
        fits[b] = res
        if fit_kwargs.get("space", "auto") == "auto":
            fit_kwargs["space"] = res.space
            notes.append(
                f"every budget is fitted in {res.space} space, the space chosen at "
                f"the largest budget ({b} steps)"
            )
    return dict(sorted(fits.items()))


def fit_columns(res) -> dict:
    """Return one fit's row: counts, R² and each parameter with its interval.

    The interval is :func:`lawfit.robust.preferred_interval`'s (cluster-robust where the
    bootstrap has too few clusters); ``ci`` names it.
    """
    row = {"n_obs": res.n_obs, "n_excluded": _n_collected_excluded(res), "r2": res.r2}
    tab = res.to_dataframe()
    ci, method, _ = preferred_interval(res)
    for p in res.param_names:
        row[p], row[f"{p}_low"], row[f"{p}_high"] = (
            float(tab.loc[p, "estimate"]),
            float(ci.loc[p, "low"]),
            float(ci.loc[p, "high"]),
        )
    row["ci"] = method or str(tab["ci_method"].iloc[0])
    return row


def _n_collected_excluded(res) -> int:
    """Count the collected cells a fit left out (memorized, failed, ...), not empty grid points."""
    ex = res.exclusions
    if not len(ex) or "reason" not in ex:
        return int(res.n_excluded)
    return int((ex["reason"].astype(str) != "status=not_run").sum())


def _budget_row(budget: int, res, n_truncated: int) -> dict:
    """One row of the budget table: :func:`fit_columns` with the budget and truncations."""
    cols = fit_columns(res)
    head = {"budget": budget, "n_obs": cols.pop("n_obs"), "n_excluded": cols.pop("n_excluded")}
    return {**head, "n_truncated": n_truncated, **cols}


def _drift(table: pd.DataFrame, fits: dict, notes: list[str]) -> dict:
    """Each parameter's move between the last two budgets in half-widths; notes on trends."""
    last, prev = table.iloc[-1], table.iloc[-2]
    drift = {}
    for p in fits[int(last["budget"])].param_names:
        half = (last[f"{p}_high"] - last[f"{p}_low"]) / 2
        drift[p] = float(abs(last[p] - prev[p]) / half) if half > 0 else math.nan
    moving = [p for p in ("alpha", "beta") if drift.get(p, 0) > 1]
    if moving:
        notes.append(
            f"{' and '.join(moving)} still move by more than their interval's half-width "
            f"between {int(prev['budget'])} and {int(last['budget'])} steps: the exponents "
            "are budget-limited; a longer budget would change them."
        )
    else:
        notes.append(
            f"between {int(prev['budget'])} and {int(last['budget'])} steps the exponents move "
            "by less than their interval's half-width."
        )
    for p in ("alpha", "beta"):
        vals = table[p].to_numpy() if p in table else np.array([])
        steps_ = np.sign(np.diff(vals))
        if vals.size >= 3 and (np.all(steps_ > 0) or np.all(steps_ < 0)):
            trend = " → ".join(f"{v:.3g}" for v in vals)
            notes.append(
                f"{p} {'rises' if steps_[0] > 0 else 'falls'} at every budget ({trend} at "
                f"{', '.join(str(int(b)) for b in table['budget'])} steps): a systematic "
                "budget trend, even where it is within the intervals."
            )
    return drift


def budget_sensitivity(
    ds,
    budgets: Sequence[int] | None = None,
    *,
    form: str = "power_law",
    bootstrap: int = 200,
    confidence_level: float = 0.95,
    window: int | None = None,
    tol: float = 0.01,
    rng: int = 0,
    **fit_kwargs,
) -> BudgetSensitivity:
    """Refit the law as if the sweep had been run with smaller step budgets.

    Parameters
    ----------
    ds : xarray.Dataset or path
        One setting of a contract dataset (what :func:`lawfit.fit` accepts without
        ``by=``) with ``loss_curve`` over ``step``.
    budgets : sequence of int, optional
        Logged steps to refit at (default: about ¼, ½, ¾ and all of the budget).
    form : str
        Form to fit at every budget.
    bootstrap : int
        Bootstrap replicates per fit (0: profile-likelihood intervals).
    confidence_level : float
        Level of the intervals.
    window, tol : int or None, float
        Passed to :func:`convergence` (default window: the last 10 % of the budget).
    rng : int
        Seed (the same for every budget).
    **fit_kwargs
        Further arguments of :func:`lawfit.fit` (``space``, ``exclude``, ...).

    Returns
    -------
    BudgetSensitivity
        Per-budget table, convergence table, fits, drift and notes.

    Raises
    ------
    LawfitError
        As :func:`at_budget` and :func:`lawfit.fit`; also when no budget could be fitted.
    """
    ds = load(ds)
    bootstrap, _ = V.bootstrap_count(bootstrap), V.confidence_level(confidence_level)
    V.random_generator(rng)
    _require_curves(ds)
    as_frame(ds, capacity=fit_kwargs.get("capacity", "rank"))  # one setting, valid data
    conv = convergence(ds, window=window, tol=tol)
    budgets = _default_budgets(ds) if budgets is None else sorted({int(b) for b in budgets})
    notes: list[str] = []
    fits = _fit_budgets(ds, budgets, form, bootstrap, confidence_level, rng, fit_kwargs, notes)
    if not fits:
        raise LawfitError("the law could not be fitted at any budget: " + "; ".join(notes))
    rows = [
        _budget_row(b, res, int((_ok(ds) & (ds["steps"] > b)).sum())) for b, res in fits.items()
    ]
    table = pd.DataFrame(rows).sort_values("budget", ignore_index=True)
    drift = _drift(table, fits, notes) if len(table) >= 2 else {}
    n_imp = int(conv["still_improving"].sum())
    if n_imp:
        notes.append(
            f"{n_imp} of {len(conv)} ok cells were still improving at the budget "
            f"(ΔL grew by more than {tol:.0%} over the {conv.attrs['window_text']}): "
            "their ΔL is "
            "partly a budget effect."
        )
    return BudgetSensitivity(table=table, convergence=conv, fits=fits, drift=drift, notes=notes)
