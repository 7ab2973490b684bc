"""The sweep as it stood at a smaller logged step budget.

:func:`at_budget` (the dataset as if every cell had been trained for at most that many
steps), :func:`same_cells` (a cell memorized at any of several compared budgets left out of
all of them) and :func:`delta_by_budget` (every cell's ΔL at several budgets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from lawfit._tokens import CELL_DIMS, load
from lawfit.budget.end_of_training import _stopped_early
from lawfit.budget.stopping import convergence
from lawfit.budget.trajectories import _default_budgets, _ok, _require_curves, _smallest_window
from lawfit.data import memorized_threshold
from lawfit.errors import LawfitError


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
    threshold = memorized_threshold(exclude)
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
