"""Extrapolate training curves past the step budget, and backtest the extrapolation.

A cell stopped by the step budget ``B`` while ΔL still grew slowly has a ΔL that measures
the budget a little as well as the adapter. :func:`lawfit.budget_sensitivity` shows how the
exponents drift when the same cells are cut *shorter*; this module asks the opposite
question, what a *longer* budget would give, without training longer, and checks on the
sweep's own data whether that answer can be trusted:

1. Each budget-stopped cell's tail (logged steps in ``[fit_from·B, B]``) is fitted by a
   saturating power law in the step count, ΔL(t) = D − A·t^(−c) with A ≥ 0 and c > 0
   (robust least squares, several starts), and read at ``horizon·B``.
   Cells that stopped early (memorized, plateau) keep their ΔL.
2. **Backtest**: the same procedure, run on the cells cut at ``B / horizon``
   (:func:`lawfit.at_budget`), predicts ΔL at ``B``, which was measured. The per-cell
   errors and, more to the point, the law fitted on the backtest's predictions against the
   law fitted on the measured cells, say how far the extrapolation can be trusted.

The model of the tail is an assumption, not a measurement: an extrapolated ΔL is a
sensitivity analysis. Report it beside the measured law with its backtest, never instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import least_squares

from lawfit import _validate as V
from lawfit._tokens import CELL_DIMS, load
from lawfit.budget import (
    _ok,
    _require_curves,
    at_budget,
    fit_columns,
    max_steps,
    same_cells,
    with_end_of_training,
)
from lawfit.errors import LawfitError
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

__all__ = ["BudgetExtrapolation", "at_extrapolated_budget", "budget_extrapolation", "fit_tail"]

#: Starting values of the decay exponent c; the best of the fits is kept.
_C_STARTS = (0.25, 0.5, 1.0, 2.0)
_C_BOUNDS = (1e-3, 10.0)


def fit_tail(steps, delta_l) -> tuple[float, float, float]:
    """Fit ΔL(t) = D − A·t^(−c) (A ≥ 0, c > 0) to one cell's training curve.

    Robust least squares (soft-L1, its scale the curve's step-to-step noise), started at
    several decay exponents; the lowest-cost fit is returned.

    Parameters
    ----------
    steps : array_like
        Logged steps, all > 0, at least 4.
    delta_l : array_like
        ΔL (loss_before − loss) at those steps.

    Returns
    -------
    tuple of float
        ``(D, A, c)``; the curve's value at step ``t`` is ``D − A·t**(−c)``.

    Raises
    ------
    LawfitError
        Fewer than 4 finite points, or a step ≤ 0.
    """
    t, y = np.asarray(steps, float), np.asarray(delta_l, float)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if t.size < 4 or np.any(t <= 0):
        raise LawfitError(
            f"a tail fit needs at least 4 logged steps, all > 0; got {t.size} finite points "
            f"with smallest step {t.min() if t.size else 'none'}. Log the loss more often "
            "(train.log_every) or fit a longer stretch (fit_from)."
        )
    scale = t / t[-1]  # steps in units of the last one: A is then ΔL's remaining gain scale
    noise = 1.4826 * float(np.median(np.abs(np.diff(y)))) / math.sqrt(2.0)
    f_scale = max(noise, 1e-9 * max(1.0, float(np.abs(y).max())))
    log_scale = np.log(scale)

    def gain(p):  # A·t^(−c) in the scaled steps, with p = (D, log A, c)
        return np.exp(p[1] - p[2] * log_scale)

    def jacobian(p):  # of the residuals D − gain − y: (1, −gain, gain·ln s)
        g = gain(p)
        return np.column_stack([np.ones_like(g), -g, g * log_scale])

    best = None
    for c0 in _C_STARTS:
        span = max(float(scale[0] ** -c0 - 1.0), 1e-12)
        a0 = max(float(y[-1] - y[0]) / span, 1e-9)
        start = [float(y[-1]) + a0, math.log(a0), c0]
        fit = least_squares(
            lambda p: p[0] - gain(p) - y,
            start,
            jac=jacobian,
            bounds=([-np.inf, -np.inf, _C_BOUNDS[0]], [np.inf, np.inf, _C_BOUNDS[1]]),
            loss="soft_l1",
            f_scale=f_scale,
        )
        if best is None or fit.cost < best.cost:
            best = fit
    d, log_a, c = (float(v) for v in best.x)
    return d, math.exp(log_a) * t[-1] ** c, c


def _predict(params: tuple[float, float, float], step: float) -> float:
    d, a, c = params
    return d - a * step ** (-c)


def _budget_cells(ds: xr.Dataset, budget: int) -> xr.DataArray:
    """Ok cells trained to the budget (the ones whose ΔL the budget may have cut)."""
    return _ok(ds) & (ds["steps"] >= budget)


def _extrapolated_losses(ds, budget: int, horizon: float, fit_from: float):
    """Per cell: extrapolated loss_after at ``horizon·budget`` and the tail fit's exponent."""
    steps = np.asarray(ds["step"].values, float)
    window = (steps >= fit_from * budget) & (steps <= budget) & (steps > 0)
    target = horizon * budget
    loss_before = ds["loss_before"].broadcast_like(ds["loss_after"])
    curves = (
        ds["loss_curve"].broadcast_like(ds["loss_after"]).transpose(*ds["loss_after"].dims, "step")
    )
    chosen = _budget_cells(ds, budget).broadcast_like(ds["loss_after"]).values
    after = ds["loss_after"].values.copy()
    exponent = np.full(after.shape, np.nan)
    for idx in zip(*np.nonzero(chosen), strict=True):
        lb = float(loss_before.values[idx])
        params = fit_tail(steps[window], lb - curves.values[idx][window])
        # a loss is >= 0, and the tail model only lets ΔL grow past the budget
        after[idx] = min(max(lb - _predict(params, target), 0.0), float(after[idx]))
        exponent[idx] = params[2]
    dims = ds["loss_after"].dims
    return xr.DataArray(after, dims=dims), xr.DataArray(exponent, dims=dims)


def at_extrapolated_budget(
    ds, horizon: float = 2.0, *, budget: int | None = None, fit_from: float = 0.5
) -> xr.Dataset:
    """Return the dataset as a budget of ``horizon·budget`` steps would give it, extrapolated.

    Cells trained to ``budget`` get ``loss_after`` from their fitted tail (:func:`fit_tail`)
    at ``horizon·budget``, never below 0 nor above the measured value; ``loss_reduction``
    follows, ``steps`` becomes ``horizon·budget`` and the end-of-training measurements
    (``exact_match``, ``p_after``, ...) become NaN. The trajectories stay as measured.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``loss_curve`` over ``step``.
    horizon : float
        How far past the budget, as a multiple of it (> 1).
    budget : int, optional
        A logged step to cut the cells at first (:func:`lawfit.at_budget`); default the
        sweep's budget.
    fit_from : float
        The tail fitted starts at ``fit_from·budget`` (in (0, 1)).

    Returns
    -------
    xarray.Dataset
        A copy with ``attrs['extrapolated']`` (JSON: budget, horizon, fit_from, model) and
        ``tail_exponent`` (c of each extrapolated cell's tail fit; NaN elsewhere).

    Raises
    ------
    LawfitError
        No trajectories; a bad ``horizon``, ``budget`` or ``fit_from``; too few logged
        steps in a cell's tail.
    """
    ds = load(ds)
    _require_curves(ds)
    horizon = _horizon(horizon)
    fit_from = _fraction(fit_from)
    budget = max_steps(ds) if budget is None else int(budget)
    ds = at_budget(ds, budget)
    after, exponent = _extrapolated_losses(ds, budget, horizon, fit_from)
    moved = _budget_cells(ds, budget)
    out = with_end_of_training(ds, moved, after, float(horizon * budget))
    out["tail_exponent"] = exponent.where(moved)
    out["tail_exponent"].attrs["description"] = (
        "c of the tail fit ΔL(t) = D − A·t^(−c); near its bounds (1e-3, 10) the tail is "
        "ill-determined"
    )
    out.attrs["extrapolated"] = json.dumps(
        {"budget": budget, "horizon": horizon, "fit_from": fit_from, "model": "D - A*t^-c"}
    )
    return out


def _horizon(horizon) -> float:
    value = V.positive_number(horizon, "horizon")
    if value <= 1:
        raise LawfitError(
            f"horizon must be > 1 (a multiple of the budget to extrapolate to); got {horizon!r}."
        )
    return float(value)


def _fraction(fit_from) -> float:
    value = V.positive_number(fit_from, "fit_from")
    if not value < 1:
        raise LawfitError(
            f"fit_from must lie in (0, 1): the tail fitted starts at fit_from × budget; "
            f"got {fit_from!r}."
        )
    return float(value)


def _nearest_logged(ds: xr.Dataset, step: float) -> int:
    logged = np.asarray(ds["step"].values)
    return int(logged[np.argmin(np.abs(logged - step))])


@dataclass(frozen=True)
class BudgetExtrapolation(ResultProtocol):
    """The law past the step budget, extrapolated, with the extrapolation's backtest.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per fit: ``source`` (measured / extrapolated), ``from_budget`` (the steps
        the cells were trained or cut to), ``budget`` (the steps the ΔL stands for), ``r2``
        and, per parameter, the estimate and interval.
    cells : pandas.DataFrame
        Per budget-stopped cell: ΔL measured at ``B/h`` and ``B``, the backtest's
        prediction at ``B`` and its relative error, the prediction at ``h·B`` and the tail
        exponents.
    fits : dict
        The :class:`~lawfit.FitResult` per row of ``table`` (keys as its ``label``).
    notes : list of str
        Plain-language findings, the backtest's verdict first.
    flags : tuple of Flag
        Warnings (none set yet; the field completes the common result interface).
    """

    table: pd.DataFrame
    cells: pd.DataFrame
    fits: dict
    notes: list = field(default_factory=list)
    flags: tuple[Flag, ...] = ()

    _main_table = "table"

    def _tables(self):
        return [("law measured and extrapolated", self.table), ("cells", self.cells)]

    def summary(self) -> SummaryText:
        """Return the table, the per-cell backtest and the notes as text.

        Returns
        -------
        str
            The findings.
        """
        fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
        lines = [self.table.to_string(**fmt), "", self.cells.to_string(**fmt)]
        lines += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(lines))


def _fit_rows(datasets: dict, form, bootstrap, confidence_level, rng, fit_kwargs):
    """Fit the law on each labelled dataset in one fit space; return (table, fits)."""
    from lawfit.fitting import fit

    fits, rows = {}, []
    kwargs = dict(fit_kwargs)
    for label, (source, from_budget, budget, data) in datasets.items():
        res = fit(
            data, form, bootstrap=bootstrap, confidence_level=confidence_level, rng=rng, **kwargs
        )
        kwargs.setdefault("space", res.space)  # the first fit's space for every row
        fits[label] = res
        row = fit_columns(res)
        rows.append({"fit": label, "source": source, "from_budget": from_budget,
                     "budget": budget, **row})  # fmt: skip
    return pd.DataFrame(rows), fits


def _cells_table(ds, cut, backtest, extrapolated, budget, short) -> pd.DataFrame:
    """Per budget-stopped cell: measured, backtested and extrapolated ΔL."""
    lb = ds["loss_before"]
    table = xr.Dataset(
        {
            f"ΔL@{short}": lb - cut["loss_after"],
            f"backtest ΔL@{budget}": lb - backtest["loss_after"],
            f"ΔL@{budget}": lb - ds["loss_after"],
            "extrapolated ΔL": lb - extrapolated["loss_after"],
            "tail c": extrapolated["tail_exponent"],
        }
    ).where(_budget_cells(ds, budget))
    table = table.expand_dims([d for d in CELL_DIMS if d in table.coords and d not in table.dims])
    frame = table.to_dataframe().reset_index().dropna(subset=[f"ΔL@{budget}"])
    keys = [d for d in CELL_DIMS if d in frame.columns and frame[d].nunique() > 1]
    frame = frame[keys + [c for c in table.data_vars]].reset_index(drop=True)
    frame["backtest error"] = frame[f"backtest ΔL@{budget}"] / frame[f"ΔL@{budget}"] - 1
    frame["extrapolated gain"] = frame["extrapolated ΔL"] / frame[f"ΔL@{budget}"] - 1
    return frame


def _notes(table: pd.DataFrame, cells: pd.DataFrame, short: int, budget: int, target) -> list:
    """Give the backtest's verdict on cells and on the exponents, then the extrapolation."""
    err = cells["backtest error"].to_numpy()
    notes = [
        f"backtest on {err.size} cells: extrapolated from {short} steps, ΔL at {budget} is "
        f"off by {np.median(np.abs(err)):.1%} (median |error|; range {err.min():+.1%} to "
        f"{err.max():+.1%})."
    ]
    rows = table.set_index("fit")
    for p in ("alpha", "beta"):
        if p not in rows.columns:
            continue
        cut, back = rows.loc["measured@short", p], rows.loc["extrapolated@budget", p]
        full, ahead = rows.loc["measured@budget", p], rows.loc["extrapolated@horizon", p]
        moved = full - cut
        share = f"{(back - cut) / moved:.0%} of" if abs(moved) > 1e-12 else "none of"
        notes.append(
            f"{p}: {cut:.3f} measured at {short} steps, {full:.3f} at {budget}; the law on "
            f"the cells extrapolated from {short} gives {back:.3f} ({share} the measured "
            f"drift). Extrapolated to {target:g} steps: {ahead:.3f}."
        )
    notes.append(
        "extrapolated values assume the tail model D − A·t^(−c); where the backtest misses "
        "the exponents' drift, a longer budget can move them more than the extrapolation says."
    )
    return notes


def budget_extrapolation(
    ds,
    *,
    horizon: float = 2.0,
    fit_from: float = 0.5,
    form: str = "power_law",
    bootstrap: int = 0,
    confidence_level: float = 0.95,
    rng: int = 0,
    **fit_kwargs,
) -> BudgetExtrapolation:
    """Extrapolate every budget-stopped cell to ``horizon × budget`` and backtest it.

    Four fits of the law, in one fit space: measured at ``B/horizon`` (the nearest logged
    step), extrapolated from there to ``B`` (the backtest), measured at ``B``, and
    extrapolated from ``B`` to ``horizon·B``. The backtest's per-cell errors and the share
    of the exponents' measured drift it recovers say how far the last row can be trusted.

    Parameters
    ----------
    ds : xarray.Dataset or path
        One setting of a contract dataset (what :func:`lawfit.fit` accepts without ``by=``)
        with ``loss_curve`` over ``step``.
    horizon : float
        Multiple of the budget to extrapolate to (> 1), and of the backtest's cut.
    fit_from : float
        Each tail fit starts at ``fit_from`` × the budget it extrapolates from.
    form : str
        Form of the law.
    bootstrap : int
        Bootstrap replicates per fit (0: asymptotic intervals).
    confidence_level : float
        Level of the intervals.
    rng : int
        Seed of the bootstrap.
    **fit_kwargs
        Further arguments of :func:`lawfit.fit` (``space``, ``exclude``, ``unit``, ...).

    Returns
    -------
    BudgetExtrapolation
        The four fits, the per-cell backtest and the notes.

    Raises
    ------
    LawfitError
        As :func:`at_extrapolated_budget` and :func:`lawfit.fit`; also when no cell was
        stopped by the budget.
    """
    ds = load(ds)
    _require_curves(ds)
    horizon, fit_from = _horizon(horizon), _fraction(fit_from)
    bootstrap, _ = V.bootstrap_count(bootstrap), V.confidence_level(confidence_level)
    budget = max_steps(ds)
    if not bool(_budget_cells(ds, budget).any()):
        raise LawfitError(
            f"no cell was trained to the budget ({budget} steps): every cell stopped early "
            "(memorized or plateau), so there is nothing to extrapolate."
        )
    short = _nearest_logged(ds, budget / horizon)
    cut = at_budget(ds, short)
    backtest = at_extrapolated_budget(ds, budget / short, budget=short, fit_from=fit_from)
    ahead = at_extrapolated_budget(ds, horizon, fit_from=fit_from)
    target = horizon * budget
    datasets = {
        "measured@budget": ("measured", budget, budget, ds),
        "measured@short": ("measured", short, short, cut),
        "extrapolated@budget": ("extrapolated", short, budget, backtest),
        "extrapolated@horizon": ("extrapolated", budget, target, ahead),
    }
    shared = same_cells(
        {k: v[-1] for k, v in datasets.items()}, fit_kwargs.get("exclude", "memorized")
    )
    datasets = {k: (*v[:-1], shared[k]) for k, v in datasets.items()}
    table, fits = _fit_rows(datasets, form, bootstrap, confidence_level, rng, fit_kwargs)
    cells = _cells_table(ds, cut, backtest, ahead, budget, short)
    notes = _notes(table, cells, short, budget, target)
    order = ["measured@short", "extrapolated@budget", "measured@budget", "extrapolated@horizon"]
    table = table.set_index("fit").loc[order].reset_index()
    return BudgetExtrapolation(table=table, cells=cells, fits=fits, notes=notes)
