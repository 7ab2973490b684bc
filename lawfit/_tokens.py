"""Shared numpy helpers for token-level data (transition/, memft/, capacity/).

Private module: turns the token variables of a contract dataset into flat per-run
arrays, with status filtering and the checks that give LawfitError messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from lawfit.data import CELL_DIMS, GROUP_DIMS, as_dataset
from lawfit.errors import LawfitError

__all__ = ["CELL_DIMS", "GROUP_DIMS", "load", "ok_mask", "TokenArrays", "token_arrays"]


def load(ds) -> xr.Dataset:
    """Accept a Dataset, a tidy DataFrame or a path (see :func:`lawfit.data.as_dataset`)."""
    return as_dataset(ds)


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
        _check_padding_only("greedy_correct", greedy[keep], valid[keep])
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
    for name, arr in (("p_after", p_after), ("p_before", p_before)):
        if arr is not None:
            _check_probabilities(name, arr[keep] if arr is not p_after else arr, valid)
    if greedy is not None:
        _check_flags("greedy_correct", greedy[keep], valid)
    return TokenArrays(
        p_after=p_after,
        p_before=None if p_before is None else p_before[keep],
        greedy=None if greedy is None else greedy[keep],
        entry=ent,
        valid=valid,
        runs=runs,
        cell_dims=cell_dims,
    )


def _check_probabilities(name: str, values: np.ndarray, valid: np.ndarray) -> None:
    v = values[valid]
    bad = np.isfinite(v) & ((v < 0) | (v > 1))
    if bad.any():
        raise LawfitError(
            f"{name} must be probabilities in [0, 1]; got {int(bad.sum())} values outside "
            f"(e.g. {v[bad][0]!r}). Store probabilities, not logits or log-probs."
        )


def _check_padding_only(name: str, values: np.ndarray, target: np.ndarray) -> None:
    """A NaN flag on a target token (finite ``p_after``) is an error, not padding.

    Dropping such tokens would split an entry and count failures that did not happen
    (the recall cascade is read along each entry), so they are refused.
    """
    lost = target & ~np.isfinite(values)
    if lost.any():
        runs = int(lost.any(axis=1).sum())
        raise LawfitError(
            f"{name} is NaN on {int(lost.sum())} target token(s) of {runs} run(s) whose "
            "p_after is finite; NaN marks padding only (DESIGN.md §3). Fill the flag for "
            "those tokens (1.0 recalled, 0.0 not), or set p_after to NaN there too if they "
            "are padding."
        )


def _check_flags(name: str, values: np.ndarray, valid: np.ndarray) -> None:
    """A 0/1 flag variable (NaN only on padding) holding anything else is an error."""
    v = values[valid]
    bad = (v != 0) & (v != 1)
    if bad.any():
        got = sorted(set(np.unique(v[bad]).tolist()))[:5]
        raise LawfitError(
            f"{name} must hold 1 (correct) or 0 (wrong) on every target token (NaN on "
            f"padding); got {int(bad.sum())} other value(s), e.g. {got}. Store it as 1.0/0.0, "
            f"e.g. ds[{name!r}] = (ds[{name!r}] > 0).where(ds[{name!r}].notnull())."
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
