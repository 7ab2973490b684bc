"""What every budget analysis reads off a sweep and its recorded trajectories.

:func:`max_steps` (the sweep's step budget), :func:`_require_curves` (the variables a budget
analysis needs), :func:`_ok` (the cells that ran), :func:`_running_min` (the best loss so far,
as collect's convergence stop reads it), :func:`_smallest_window` (the logging interval) and
:func:`_default_budgets` (about ¼, ½, ¾ and all of the budget).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from lawfit.errors import LawfitError


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


def _running_min(curve: xr.DataArray) -> xr.DataArray:
    """Return the lowest loss logged up to each step (NaN-aware), over ``step``."""
    axis = curve.get_axis_num("step")
    return curve.copy(data=np.fmin.accumulate(curve.values, axis=axis))


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
