"""Which cells of a sweep were collected: the ok cells and the lengths that hold them.

:func:`ok_cells` marks the cells that finished with a ``loss_reduction`` (and status
``ok``), and :func:`collected_lengths` lists the lengths with at least one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xarray as xr


def ok_cells(ds: xr.Dataset) -> xr.DataArray:
    """Where a cell finished with a ``loss_reduction`` (and status ``ok``, if recorded)."""
    ok = ds["loss_reduction"].notnull()
    return ok & (ds["status"] == "ok") if "status" in ds else ok


def collected_lengths(ds: xr.Dataset) -> np.ndarray:
    """Sorted lengths holding at least one ok cell (a sweep plans lengths not yet run)."""
    ok = ok_cells(ds)
    held = ok.any([d for d in ok.dims if d != "length"]).values if ok.ndim > 1 else ok.values
    return np.unique(ds["length"].values[np.asarray(held, bool)])
