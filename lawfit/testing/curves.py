"""A rank × length sweep built from given training curves (tests of the budget analyses)."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr


def trajectory_dataset(
    ranks, lengths, steps, loss_curve, loss_before: float, budget: int
) -> xr.Dataset:
    """Return a contract dataset whose cells end where their logged curves end.

    Parameters
    ----------
    ranks, lengths : array_like
        The grid.
    steps : array_like
        Logged steps (the ``step`` coordinate).
    loss_curve : numpy.ndarray
        Shape (rank, length, step): each cell's loss at every logged step, NaN after the
        step the cell stopped at.
    loss_before : float
        Untrained loss of every cell.
    budget : int
        The sweep's step budget (``attrs['config']``).

    Returns
    -------
    xarray.Dataset
        ``loss_before``, ``loss_after`` (the last logged loss), ``loss_reduction``,
        ``steps`` (the last logged step), ``status`` ok, ``exact_match`` 0 and
        ``loss_curve``.
    """
    steps = np.asarray(steps)
    curve = np.asarray(loss_curve, float)
    logged = np.isfinite(curve)
    last = logged.shape[-1] - 1 - np.argmax(logged[..., ::-1], axis=-1)
    after = np.take_along_axis(curve, last[..., None], axis=-1)[..., 0]
    shape, cell = after.shape, ("rank", "length")
    ds = xr.Dataset(
        {
            "loss_before": (cell, np.full(shape, float(loss_before))),
            "loss_after": (cell, after),
            "loss_reduction": (cell, loss_before - after),
            "steps": (cell, steps[last].astype(float)),
            "status": (cell, np.full(shape, "ok", dtype=object)),
            "exact_match": (cell, np.zeros(shape)),
            "loss_curve": (cell + ("step",), curve),
        },
        coords={"rank": np.asarray(ranks), "length": np.asarray(lengths), "step": steps},
    )
    ds.attrs["config"] = json.dumps({"train": {"max_steps": int(budget)}})
    return ds
