"""Training budget diagnostics: is ΔL converged, and do the exponents drift with the budget.

A memorization sweep trains every cell for at most ``max_steps`` optimizer steps. Cells
that memorize (every target token above p = 0.5) or plateau stop early; the others stop
at the budget, and if their loss was still falling there, their ΔL measures the budget as
much as the adapter's capacity. The collection records each cell's training trajectory
(``loss_curve`` over ``step``), so any smaller budget can be read back exactly
(DESIGN.md §5). This module uses that to answer two questions:

- :func:`convergence` — which cells stopped at the budget while still improving (their
  ΔL gain over the last ``window`` steps, relative to ΔL);
- :func:`budget_sensitivity` — the law refitted as if the sweep had been run with
  smaller budgets (:func:`at_budget`): if the exponents still drift between the last
  budgets, the reported exponents are budget-limited and a longer budget is needed.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from lawfit import _validate as V
from lawfit._tokens import CELL_DIMS, load
from lawfit.data import LN2, as_frame
from lawfit.errors import LawfitError
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag
from lawfit.robust import preferred_interval

__all__ = [
    "BudgetSensitivity",
    "at_budget",
    "at_convergence_stop",
    "budget_sensitivity",
    "convergence",
    "delta_by_budget",
    "first_converged_step",
    "max_steps",
]

#: Per-token variables that describe the end of training and cannot be read back from
#: the trajectory at an earlier step: set to NaN where :func:`at_budget` truncates a cell.
_END_ONLY = ("exact_match", "token_accuracy", "p_after", "greedy_correct")


def _require_curves(ds: xr.Dataset) -> None:
    missing = [v for v in ("loss_curve", "loss_before", "loss_after", "steps") if v not in ds]
    if missing:
        raise LawfitError(
            f"the budget analysis needs the variables loss_before, loss_after, steps and the "
            f"training trajectory loss_curve over 'step'; the dataset lacks {missing}. "
            "Collect with trajectories (collect logs them every [train] log_every steps)."
        )
    if "step" not in ds["loss_curve"].dims:
        raise LawfitError(
            f"loss_curve must have a 'step' dim; it has dims {ds['loss_curve'].dims}."
        )


def max_steps(ds: xr.Dataset) -> int:
    """Return the sweep's step budget.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset; the budget is read from ``attrs['config']`` (``train.max_steps``)
        and otherwise taken as the largest logged step.

    Returns
    -------
    int
        The step budget.
    """
    cfg = ds.attrs.get("config")
    if cfg:
        try:
            return int(json.loads(cfg)["train"]["max_steps"])
        except (KeyError, TypeError, ValueError):
            pass
    return int(np.nanmax(ds["step"].values))


def _ok(ds: xr.Dataset) -> xr.DataArray:
    ok = ds["loss_reduction"].notnull() if "loss_reduction" in ds else ds["loss_after"].notnull()
    if "status" in ds:
        ok = ok & (ds["status"] == "ok")
    return ok


def at_budget(ds, steps: int) -> xr.Dataset:
    """Return the dataset as it would be had every cell been trained for at most ``steps``.

    Cells that stopped at or before ``steps`` are unchanged. For cells trained longer,
    ``loss_after`` is read from ``loss_curve`` at ``steps`` (the loss after ``steps``
    updates), ``loss_reduction`` is recomputed as ``loss_before − loss_after``, ``steps``
    is set to the budget, the trajectories are cut there, and the end-of-training
    measurements that the trajectory does not record (``exact_match``,
    ``token_accuracy``, ``p_after``, ``greedy_correct``) become NaN.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``loss_curve`` over ``step``.
    steps : int
        The budget: one of the logged steps (``ds.step``).

    Returns
    -------
    xarray.Dataset
        A copy with ``attrs['budget_steps'] = steps``.

    Raises
    ------
    LawfitError
        No trajectories; ``steps`` not a logged step; a truncated cell without a logged
        loss at ``steps``.
    """
    ds = load(ds)
    _require_curves(ds)
    logged = np.asarray(ds["step"].values)
    if int(steps) not in set(logged.tolist()):
        shown = ", ".join(str(int(s)) for s in logged[:4])
        raise LawfitError(
            f"budget {steps!r} is not a logged step; the trajectory was logged at steps "
            f"{shown}, ..., {int(logged[-1])}. Pick one of those (ds.step)."
        )
    steps = int(steps)
    truncated = _ok(ds) & (ds["steps"] > steps)
    at = ds["loss_curve"].sel(step=steps, drop=True)
    if bool((truncated & at.isnull()).any()):
        raise LawfitError(
            f"some cells trained past {steps} steps have no logged loss at step {steps}; "
            "their ΔL at this budget cannot be read back. Choose another budget."
        )
    # a cut cell stopped at this budget, whatever ended it later
    out = _stopped_early(ds, truncated, at, float(steps), "budget", ds["step"] <= steps)
    out.attrs["budget_steps"] = steps
    return out


def _stopped_early(ds: xr.Dataset, cells, loss_after, steps, reason: str, kept) -> xr.Dataset:
    """Return a copy where ``cells`` stopped after ``steps`` steps, for ``reason``.

    :func:`with_end_of_training`, then ``stop_reason`` set to ``reason`` there and every
    trajectory kept only where ``kept`` (step, cell) holds. What :func:`at_budget` and
    :func:`at_convergence_stop` share.
    """
    out = with_end_of_training(ds, cells, loss_after, steps)
    if "stop_reason" in out:
        out["stop_reason"] = xr.where(cells, reason, out["stop_reason"].astype(str))
    for name in [v for v in ds.data_vars if "step" in ds[v].dims]:
        out[name] = ds[name].where(kept)
        out[name].attrs = dict(ds[name].attrs)
    return out


#: Status given to a cell memorized at one of several compared budgets (:func:`same_cells`).
MEMORIZED_ELSEWHERE = "memorized_at_a_compared_budget"


def same_cells(datasets: dict, exclude="memorized") -> dict:
    """Drop from every dataset the cells memorized in any of them, so that fits share cells.

    A cell memorized after 3,000 steps may not be memorized after 1,500: fitted at one
    budget and excluded at another, it would make two fits differ by their cells as well as
    by their budget. Such a cell gets ``status`` :data:`MEMORIZED_ELSEWHERE` in every dataset
    (so :func:`lawfit.fit` lists it among the exclusions).

    Parameters
    ----------
    datasets : dict
        Datasets of the same cells (e.g. :func:`at_budget` at several budgets), by label.
    exclude : {"memorized"} or float or None
        As :func:`lawfit.fit`: the ``loss_after`` threshold of a memorized cell (``ln 2``
        for ``"memorized"``); None keeps every cell.

    Returns
    -------
    dict
        The datasets, same labels, with the shared exclusions marked.
    """
    if exclude is None:
        return dict(datasets)
    threshold = LN2 if exclude == "memorized" else float(exclude)
    memorized = None
    for data in datasets.values():
        hit = _ok(data) & (data["loss_after"] <= threshold)
        memorized = hit if memorized is None else memorized | hit
    out = {}
    for label, data in datasets.items():
        data = data.copy()
        status = (
            data["status"] if "status" in data else xr.full_like(data["loss_after"], "ok", object)
        )
        data["status"] = xr.where(memorized, MEMORIZED_ELSEWHERE, status)
        out[label] = data
    return out


def with_end_of_training(ds: xr.Dataset, cells, loss_after, steps: float) -> xr.Dataset:
    """Return a copy where ``cells`` end with ``loss_after`` after ``steps`` steps.

    ``loss_reduction`` follows, and the end-of-training measurements no trajectory records
    (``exact_match``, ``p_after``, ...) become NaN there; variable and dataset attributes
    are kept. What :func:`at_budget` and :func:`lawfit.at_extrapolated_budget` share.
    """
    out = ds.copy()
    out["loss_after"] = xr.where(cells, loss_after, ds["loss_after"])
    if "loss_reduction" in ds:
        out["loss_reduction"] = xr.where(
            cells, ds["loss_before"] - loss_after, ds["loss_reduction"]
        )
    out["steps"] = xr.where(cells, steps, ds["steps"])
    for name in _END_ONLY:
        if name in ds:
            out[name] = ds[name].where(~cells)
    for name in ds.data_vars:
        out[name].attrs = dict(ds[name].attrs)
    out.attrs = dict(ds.attrs)
    return out


def _stop_reasons(ds: xr.Dataset, budget: int) -> xr.DataArray:
    """Say why each ok cell stopped: 'budget', 'converged', 'memorized', 'plateau' or 'written'.

    'converged' (collect's convergence stop) and 'written' (a carrier written without
    training, such as the Memory³ sparse KV memory: no steps, so no plateau either) are read
    from the recorded ``stop_reason``; the others are inferred from the steps run and the
    end-of-training probabilities.
    """
    at_budget_ = ds["steps"] >= budget
    if "p_after" in ds and "token" in ds["p_after"].dims:
        p = ds["p_after"]
        memorized = ((p > 0.5) | p.isnull()).all("token") & p.notnull().any("token")
    else:
        memorized = ds["loss_after"] <= LN2
    reason = xr.where(at_budget_, "budget", xr.where(memorized, "memorized", "plateau"))
    if "stop_reason" in ds:
        recorded = ds["stop_reason"].astype(str)
        converged = (recorded == "converged") & ~at_budget_ & ~memorized
        reason = xr.where(converged, "converged", reason)
        reason = xr.where(recorded == "written", "written", reason)
    return reason.where(_ok(ds))


#: share of the budget :func:`convergence` looks back over by default (issue 10's criterion:
#: no cell may still gain more than 1 % of its ΔL over its last 10 % of steps)
DEFAULT_WINDOW_SHARE = 0.1


def convergence(ds, *, window: int | None = None, tol: float = 0.01) -> pd.DataFrame:
    """Say, per cell, why training stopped and whether ΔL was still growing when it did.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``loss_curve`` over ``step``.
    window : int, optional
        Look-back in optimizer steps (a multiple of the logging interval). Default: the last
        10 % of each cell's own steps, rounded to the logging interval (issue 10's test).
    tol : float
        A cell stopped by the budget (or by collect's convergence stop) is *still improving*
        when its best ΔL grew by more than ``tol`` (relative) over its last ``window`` steps
        (best-so-far losses, as :func:`collect.probe.converged` reads them: an oscillating
        loss neither passes nor fails the test on one logged value).

    Returns
    -------
    pandas.DataFrame
        One row per ok cell: its coordinates, ``steps``, ``stop_reason``
        (``budget``/``converged``/``memorized``/``plateau``/``written``), ``loss_reduction``,
        ``gain_last_window`` (nats), ``rel_gain_last_window`` (the gain over the cell's
        best ΔL, which is ``loss_reduction`` unless its last loss sits above its best) and
        ``still_improving`` (NaN gains for cells that memorized, plateaued or were written
        without training).
        ``attrs``: ``max_steps``, ``window`` (steps; None when the default window differs
        between cells), ``window_text`` (for labels) and ``tol``.

    Raises
    ------
    LawfitError
        No trajectories, or ``window`` not a positive multiple of the logging interval.
    """
    window = None if window is None else V.positive_int(window, "window")
    tol = V.positive_number(tol, "tol")
    ds = load(ds)
    _require_curves(ds)
    budget, every = max_steps(ds), _smallest_window(ds)
    if window is not None and (window % every or window >= budget):
        raise LawfitError(
            f"window must be a positive multiple of the logging interval ({every} steps) "
            f"and shorter than the budget ({budget}); got {window!r}."
        )
    reason = _stop_reasons(ds, budget)
    ends = ds["steps"].where(reason.isin(["budget", "converged"]))
    if window is None:
        lookback = np.maximum(1, (DEFAULT_WINDOW_SHARE * ends / every).round()) * every
    else:
        lookback = xr.full_like(ends, float(window)).where(ends.notnull())
    start = (ends - lookback).fillna(float(ds["step"].values[0]))
    if bool((start < ds["step"].values[0]).any()):
        raise LawfitError(f"window {window!r} reaches back before the first logged step.")
    best = _running_min(ds["loss_curve"])  # best-so-far, as collect's convergence stop reads it
    best_then = best.sel(step=start, method="ffill").drop_vars("step", errors="ignore")
    best_now = np.fmin(best.sel(step=ends.fillna(start), method="ffill"), ds["loss_after"])
    best_now = best_now.drop_vars("step", errors="ignore")
    gain = (best_then - best_now).where(ends.notnull())
    cells = xr.Dataset(
        {
            "steps": ds["steps"],
            "stop_reason": reason,
            "loss_reduction": ds["loss_before"] - ds["loss_after"],
            "gain_last_window": gain,
            # relative to the best dL, as collect's stop divides (collect.probe.converged):
            # the last loss of an oscillating cell can sit above its best, and the two
            # readings of one cell must agree
            "rel_gain_last_window": gain / abs(ds["loss_before"] - best_now),
        }
    )
    # a coordinate selected down to one value (ds.sel(rank=1)) is still a column of the table
    cells = cells.expand_dims([d for d in CELL_DIMS if d in cells.coords and d not in cells.dims])
    dims = [d for d in CELL_DIMS if d in cells.dims]
    frame = cells.to_dataframe().reset_index()
    frame = frame[frame["stop_reason"].notna()].reset_index(drop=True)
    frame = frame[
        dims
        + ["steps", "stop_reason", "loss_reduction", "gain_last_window", "rel_gain_last_window"]
    ]
    frame["still_improving"] = frame["rel_gain_last_window"] > tol
    windows = np.unique(lookback.values[np.isfinite(lookback.values)])
    shared = int(windows[0]) if windows.size == 1 else window
    frame.attrs.update(
        max_steps=budget,
        window=shared,
        window_text=f"last {shared} steps"
        if shared is not None
        else f"last {DEFAULT_WINDOW_SHARE:.0%} of its steps",
        tol=tol,
    )
    return frame


def first_converged_step(
    ds, *, window: float = DEFAULT_WINDOW_SHARE, tol: float = 0.01, start: int = 0
) -> xr.DataArray:
    """Find, per cell, the first step at which collect's convergence stop would have fired.

    :func:`collect.probe.converged`'s test, read off the trajectory at every step: at step
    ``t`` the best ΔL so far exceeds the best of steps ``0..t - w``, ``w = max(1,
    round(window * t))``, by at most ``tol`` times itself. This says how many steps a cell
    needed under a convergence stop with ``converge_from = start``, whatever stopped it, so
    protocols that ran past that point (a fixed budget, a later ``converge_from``) can be
    compared by the steps they needed.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset, or one cell file, with ``loss_before`` and ``loss_curve`` logged at
        every step (``[train] log_every = 1``).
    window : float
        Look-back as a share of the steps run (the sweep's ``converge_window``).
    tol : float
        Largest relative gain over the look-back that counts as converged
        (``converge_tol``).
    start : int
        No earlier step counts (``converge_from``).

    Returns
    -------
    xarray.DataArray
        ``first_converged_step`` over the cell dims: NaN where the test never passed before
        the cell stopped.

    Raises
    ------
    LawfitError
        No trajectories, a trajectory not logged at every step, or a bad ``window``/``tol``.
    """
    window, tol = V.positive_number(window, "window"), V.positive_number(tol, "tol")
    ds = load(ds)
    _require_curves(ds)
    steps = ds["step"].values
    if not np.array_equal(steps, np.arange(steps.size)):
        raise LawfitError(
            "first_converged_step needs the loss at every step from 0 (collect with [train] "
            f"log_every = 1); the trajectory is logged at steps {steps[:3].tolist()}... "
            "Use lawfit.convergence, which reads a coarser trajectory at the stop only."
        )
    curve = ds["loss_curve"].transpose(..., "step")
    best = _running_min(curve).values
    t = np.arange(steps.size)
    lookback = np.maximum(1, np.round(window * t)).astype(int)
    before = ds["loss_before"].broadcast_like(curve.isel(step=0, drop=True)).values[..., None]
    now, then = before - best, before - best[..., np.clip(t - lookback, 0, None)]
    with np.errstate(invalid="ignore"):
        passes = (t >= lookback) & (t >= start) & (now > 0) & (now - then <= tol * now)
    passes &= np.isfinite(curve.values)  # no step after the cell stopped
    first = np.where(passes.any(axis=-1), passes.argmax(axis=-1), np.nan)
    return curve.isel(step=0, drop=True).copy(data=first).rename("first_converged_step")


def at_convergence_stop(
    ds, *, start: int, window: float = DEFAULT_WINDOW_SHARE, tol: float = 0.01
) -> xr.Dataset:
    """Return the dataset as collect's convergence stop from step ``start`` would have left it.

    Each ok cell whose :func:`first_converged_step` (from ``start``) comes before the step
    it stopped at ends there instead: ``loss_after`` is the logged loss at that step, the
    trajectories are cut there, ``stop_reason`` becomes "converged" and the end-of-training
    measurements no trajectory records become NaN, as in :func:`at_budget`. The other cells
    are unchanged. With ``start`` below a sweep's ``converge_from`` this shows what a lower
    floor would have cost in ΔL, and in the exponents fitted to it.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with trajectories logged at every step.
    start : int
        The floor (``[train] converge_from``): no cell stops before it.
    window, tol : float
        ``converge_window`` and ``converge_tol``.

    Returns
    -------
    xarray.Dataset
        A copy with ``attrs['converge_from'] = start``.
    """
    ds = load(ds)
    first = first_converged_step(ds, window=window, tol=tol, start=start)
    cut = _ok(ds) & (first < ds["steps"])  # NaN (never converged) compares False
    at = ds["loss_curve"].isel(step=first.where(cut, 0).astype(int))
    out = _stopped_early(ds, cut, at, first, "converged", ~cut | (ds["step"] <= first))
    out.attrs["converge_from"] = int(start)
    return out


def _running_min(curve: xr.DataArray) -> xr.DataArray:
    """Return the lowest loss logged up to each step (NaN-aware), over ``step``."""
    axis = curve.get_axis_num("step")
    return curve.copy(data=np.fmin.accumulate(curve.values, axis=axis))


def delta_by_budget(ds, budgets: Sequence[int] | None = None) -> pd.DataFrame:
    """ΔL of every collected cell as it stood at each of several step budgets.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``loss_curve`` over ``step``.
    budgets : sequence of int, optional
        Logged steps (default: about ¼, ½, ¾ and all of the budget).

    Returns
    -------
    pandas.DataFrame
        One row per ok cell (its coordinates), one column ``ΔL@<steps>`` per budget, plus
        ``steps`` and ``stop_reason`` of the full run. A cell that stopped before a budget
        keeps its final ΔL there (:func:`at_budget`).
    """
    ds = load(ds)
    budgets = _default_budgets(ds) if budgets is None else sorted({int(b) for b in budgets})
    table = convergence(ds, window=_smallest_window(ds))
    keys = [d for d in CELL_DIMS if d in table.columns]
    out = table[keys + ["steps", "stop_reason"]].copy()
    for b in budgets:
        sub = at_budget(ds, b)
        sub = sub.expand_dims([d for d in keys if d in sub.coords and d not in sub.dims])
        dl = sub["loss_reduction"].to_dataframe().reset_index()[keys + ["loss_reduction"]]
        out = out.merge(dl.rename(columns={"loss_reduction": f"ΔL@{b}"}), on=keys, how="left")
    return out


def _smallest_window(ds: xr.Dataset) -> int:
    """Return the logging interval, the shortest look-back :func:`convergence` accepts."""
    logged = np.asarray(ds["step"].values)
    return int(np.min(np.diff(logged))) if logged.size > 1 else 1


def _default_budgets(ds: xr.Dataset, n: int = 4) -> list[int]:
    budget = max_steps(ds)
    logged = np.asarray(ds["step"].values)
    logged = logged[(logged > 0) & (logged <= budget)]
    picks = {int(logged[np.argmin(np.abs(logged - budget * k / n))]) for k in range(1, n + 1)}
    return sorted(picks)


@dataclass(frozen=True)
class BudgetSensitivity(ResultProtocol):
    """The law refitted at several step budgets, plus the per-cell convergence table.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per budget: ``budget``, ``n_obs``, ``n_excluded`` (collected cells left
        out, e.g. memorized; grid points without a cell are not counted), ``n_truncated``
        (cells trained past that budget), ``r2`` and, per parameter, the estimate and
        its interval (``alpha``, ``alpha_low``, ``alpha_high``, ...).
    convergence : pandas.DataFrame
        :func:`convergence` at the full budget.
    fits : dict
        The :class:`~lawfit.FitResult` per budget.
    drift : dict
        Per parameter, the change between the last two budgets relative to the final
        interval's half-width (> 1 means the estimate still moves by more than its
        uncertainty).
    notes : list of str
        Plain-language findings.
    flags : tuple of Flag
        Warnings (none set yet; the field completes the common result interface).
    """

    table: pd.DataFrame
    convergence: pd.DataFrame
    fits: dict
    drift: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    flags: tuple[Flag, ...] = ()

    _main_table = "table"

    def _tables(self):
        return [("law per step budget", self.table), ("convergence per cell", self.convergence)]

    def summary(self) -> SummaryText:
        """Return the findings as text.

        Returns
        -------
        str
            Convergence counts, the per-budget table and the notes.
        """
        conv = self.convergence
        counts = conv["stop_reason"].value_counts().to_dict() if len(conv) else {}
        lines = [
            f"Stop reasons over {len(conv)} ok cells: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            f"Still improving at the budget (ΔL gain > {conv.attrs.get('tol', 0):.0%} over "
            f"the {conv.attrs.get('window_text', 'window')}): "
            f"{int(conv['still_improving'].sum())}",
            "",
            self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        ]
        lines += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(lines))


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


def with_still_improving(cells: pd.DataFrame, ds, notes: list[str] | None = None) -> pd.DataFrame:
    """Add :func:`convergence`'s ``still_improving`` to a per-cell frame (NaN where unknown).

    Joined on the cell dims both hold. NaN without trajectories, or (with a note appended
    to ``notes``) where the trajectories cannot be read.
    """
    if "loss_curve" not in ds:
        return cells.assign(still_improving=np.nan)
    try:
        conv = convergence(ds)
    except LawfitError as exc:
        if notes is not None:
            notes.append(f"convergence of the cells not checked: {exc}")
        return cells.assign(still_improving=np.nan)
    keys = [c for c in CELL_DIMS if c in conv.columns and c in cells.columns]
    flags = conv[[*keys, "still_improving"]].astype({"still_improving": float})
    return cells.merge(flags, on=keys, how="left")
