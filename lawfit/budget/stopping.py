"""Why each cell stopped, and whether its ΔL was still growing when it did.

:func:`convergence` (per cell: the stop reason and the ΔL gain over the last window),
:func:`first_converged_step` and :func:`at_convergence_stop` (collect's convergence stop
read off a trajectory logged at every step) and :func:`with_still_improving`
(:func:`convergence`'s verdict joined to another per-cell frame).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from lawfit import _validate as V
from lawfit._tokens import CELL_DIMS, load
from lawfit.budget.end_of_training import _stopped_early
from lawfit.budget.trajectories import (
    _ok,
    _require_curves,
    _running_min,
    _smallest_window,
    max_steps,
)
from lawfit.data import LN2
from lawfit.errors import LawfitError


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
