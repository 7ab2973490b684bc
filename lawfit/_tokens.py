"""Shared numpy helpers for token-level data (transition.py, memft.py, capacity.py).

Private module: turns the token variables of a contract dataset into flat per-run
arrays, with status filtering and the checks that give LawfitError messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from lawfit.data import migrate_objective
from lawfit.errors import LawfitError

CELL_DIMS = ("model", "task", "random_ratio", "objective", "modules", "rank", "length", "seed")
GROUP_DIMS = ("model", "task", "random_ratio", "objective", "modules")


def load(ds) -> xr.Dataset:
    """Accept a Dataset or a path to a NetCDF file."""
    if isinstance(ds, xr.Dataset):
        return migrate_objective(ds)
    if isinstance(ds, str | os.PathLike):
        if not os.path.exists(ds):
            raise LawfitError(
                f"expected an xarray.Dataset or the path of a NetCDF file; got the path "
                f"{os.fspath(ds)!r}, which does not exist. Check the path."
            )
        return migrate_objective(xr.load_dataset(ds))
    raise LawfitError(
        f"expected an xarray.Dataset (the data contract, DESIGN.md §3) or a path to a .nc "
        f"file; got {type(ds).__name__}. Load the file with xarray.open_dataset(path) or "
        "pass the path."
    )


def ok_mask(ds: xr.Dataset, dims: tuple[str, ...]) -> np.ndarray:
    """Boolean mask over ``dims`` of cells whose status is ``ok`` (all true if no status)."""
    if "status" not in ds:
        return np.ones([ds.sizes[d] for d in dims], dtype=bool)
    st = ds["status"]
    st = st.broadcast_like(xr.DataArray(np.zeros([ds.sizes[d] for d in dims]), dims=dims))
    return np.asarray(st.transpose(*dims).values == "ok", dtype=bool)


@dataclass(frozen=True)
class TokenArrays:
    """Token variables of every ok run, flattened to (run, token)."""

    p_after: np.ndarray  # (n_run, n_tok) float, NaN on padding
    p_before: np.ndarray | None
    greedy: np.ndarray | None  # 1/0/NaN
    entry: np.ndarray  # int, -1 on padding
    valid: np.ndarray  # bool
    runs: pd.DataFrame  # one row per run: the cell coordinates
    cell_dims: tuple[str, ...]


def token_arrays(ds: xr.Dataset, *, need_greedy: bool = True) -> TokenArrays:
    """Flatten ``p_after`` (+ ``p_before``, ``greedy_correct``, ``entry``) to run × token."""
    need = ("p_after", "greedy_correct") if need_greedy else ("p_after",)
    missing = [v for v in need if v not in ds]
    if missing:
        raise LawfitError(
            f"token-level analysis needs the variables {missing} with a 'token' dimension "
            f"(data contract, DESIGN.md §3); the dataset has {sorted(ds.data_vars)}. Collect "
            "per-token probabilities and greedy correctness, or skip the token-level part."
        )
    pa = ds["p_after"]
    if "token" not in pa.dims:
        raise LawfitError(
            f"'p_after' must have a 'token' dimension; got dims {pa.dims}. Store one value "
            "per target token along 'token'."
        )
    cell_dims = tuple(d for d in pa.dims if d not in ("token", "step"))
    if "step" in pa.dims:
        raise LawfitError(
            "'p_after' must not have a 'step' dimension (final probabilities only); got "
            f"dims {pa.dims}. Select the final checkpoint first, e.g. ds.isel(step=-1)."
        )
    order = cell_dims + ("token",)
    p_after = np.asarray(pa.transpose(*order).values, dtype=float)
    shape = p_after.shape
    okm = ok_mask(ds, cell_dims)
    p_after = p_after.reshape(-1, shape[-1])
    keep = okm.reshape(-1)

    def _get(name):
        if name not in ds:
            return None
        v = ds[name].broadcast_like(pa).transpose(*order).values
        return np.asarray(v, dtype=float).reshape(-1, shape[-1])

    p_before = _get("p_before")
    greedy = _get("greedy_correct")
    if "entry" in ds:
        ent = np.asarray(ds["entry"].broadcast_like(pa).transpose(*order).values, dtype=float)
        ent = np.where(np.isfinite(ent), ent, -1).reshape(-1, shape[-1]).astype(np.int64)
    else:
        ent = np.zeros_like(p_after, dtype=np.int64)
    valid = np.isfinite(p_after)
    if greedy is not None:
        valid &= np.isfinite(greedy)
    # runs with no finite value at all are treated as not collected
    keep &= valid.any(axis=1)
    idx = pd.MultiIndex.from_product([pa[d].values for d in cell_dims], names=list(cell_dims))
    runs = idx.to_frame(index=False)[keep].reset_index(drop=True)
    p_after = p_after[keep]
    valid = valid[keep]
    ent = np.where(valid, ent[keep], -1)
    if not len(runs):
        raise LawfitError(
            "no run with status 'ok' and finite per-token values was found; got "
            f"{int(np.prod(shape[:-1]))} cells, none usable. Check ds['status'] and that "
            "p_after/greedy_correct are filled for collected cells."
        )
    bad = (p_after[valid] < 0) | (p_after[valid] > 1)
    if bad.any():
        raise LawfitError(
            f"p_after must be probabilities in [0, 1]; got {int(bad.sum())} values outside "
            f"(e.g. {p_after[valid][bad][0]!r}). Store probabilities, not logits or log-probs."
        )
    return TokenArrays(
        p_after=p_after,
        p_before=None if p_before is None else p_before[keep],
        greedy=None if greedy is None else greedy[keep],
        entry=ent,
        valid=valid,
        runs=runs,
        cell_dims=cell_dims,
    )


def fails_before(greedy: np.ndarray, entry: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Number of greedy failures earlier in the same entry, per (run, token)."""
    fail = ((greedy == 0) & valid).astype(np.int64)
    cs = np.cumsum(fail, axis=1) - fail  # failures strictly before t (whole run)
    n_tok = entry.shape[1]
    prev = np.concatenate([np.full((entry.shape[0], 1), -2), entry[:, :-1]], axis=1)
    start = entry != prev
    idx = np.where(start, np.arange(n_tok)[None, :], 0)
    idx = np.maximum.accumulate(idx, axis=1)
    base = np.take_along_axis(cs, idx, axis=1)
    return cs - base


def logit(p: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Log-odds, with p clipped to [eps, 1 - eps]."""
    p = np.clip(p, eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def sigmoid(x):
    """Logistic function, overflow-free."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))
