"""Ending cells at a new loss: what every re-reading of a sweep at an earlier stop shares.

:func:`with_end_of_training` gives the cells a new ``loss_after`` after a new number of steps
(:func:`lawfit.at_extrapolated_budget` uses it too); :func:`_stopped_early` also records why
they stopped and cuts their trajectories there (:func:`~lawfit.budget.at_budget`,
:func:`~lawfit.budget.at_convergence_stop`).
"""

from __future__ import annotations

import xarray as xr

#: Per-token variables that describe the end of training and cannot be read back from
#: the trajectory at an earlier step: set to NaN where :func:`at_budget` truncates a cell.
_END_ONLY = ("exact_match", "token_accuracy", "p_after", "greedy_correct")


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
