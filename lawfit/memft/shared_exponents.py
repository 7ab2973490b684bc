"""Savings under the assumption that MemFT changes only the prefactor C of the SFT law.

:func:`_shared_exponent_savings` keeps α, β and b of the SFT law (each bootstrap draw)
and refits only C on the non-memorized MemFT cells (:func:`_unmemorized_cells`,
:func:`_refit_prefactor`), so that two MemFT cells suffice; the rank each method needs
comes from the law's closed-form inverse (:func:`_rank_needed`), the estimates and
intervals from :func:`_rank_quantiles`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lawfit._tokens import ok_mask
from lawfit.data import memorized_threshold
from lawfit.errors import LawfitError
from lawfit.memft._common import xr_mask


def _rank_needed(C, alpha, beta, b, length, T):
    """Closed-form inverse of C r^alpha l^-beta + b = T (inf where unreachable)."""
    with np.errstate(all="ignore"):
        base = (T - b) / C
        r = np.exp((np.log(base) + beta * np.log(length)) / alpha)
    ok = (base > 0) & (alpha > 0) & np.isfinite(r)
    return np.where(ok, r, np.inf)


def _shared_exponent_savings(
    sub, m, fit_sft, lengths, target, target_kind, l0, exclude, level, gen, per_rank, notes
):
    """Predict savings assuming MemFT changes only the prefactor C of the SFT law."""
    from lawfit.capacity import _loss_before_fn

    if tuple(fit_sft.param_names) != ("C", "alpha", "beta", "b") or fit_sft.boot is None:
        raise LawfitError("needs the SFT power law (C, alpha, beta, b) with bootstrap draws")
    df = _unmemorized_cells(sub, m, exclude)
    sft, c_memft, rmse = _refit_prefactor(fit_sft, df, gen)
    l0fn, _ = _loss_before_fn(None, l0) if target_kind == "loss_after" else (None, "")
    rows = []
    for L in lengths:
        T = target if target_kind == "loss_reduction" else float(l0fn(np.array([L]))[0]) - target
        rs = _rank_needed(*sft, L, T)
        rm = _rank_needed(c_memft, *sft[1:], L, T)
        row = {
            "objective": m,
            "model": "shared exponents",
            "length": float(L),
            **_rank_quantiles(rs, rm, level),
            "extrapolated": bool(
                not (fit_sft.input_ranges["length"][0] <= L <= fit_sft.input_ranges["length"][1])
                or not np.isfinite(rs[0])
                or rs[0] > fit_sft.input_ranges[fit_sft.inputs[0]][1]
            ),
            "memft_cells": len(df),
            "memft_rmse": rmse,
            "C_ratio": float(c_memft[0] / sft[0][0]),
        }
        if per_rank is not None:
            row["params_saved"] = (float(rs[0]) - float(rm[0])) * per_rank
        rows.append(row)
    notes.append(
        f"shared exponents ({m}): alpha, beta, b from the SFT law (each bootstrap draw), only C "
        f"refitted on {len(df)} non-memorized {m} cells (case bootstrap), C_memft/C_sft = "
        f"{c_memft[0] / sft[0][0]:.3g}, RMSE on those cells {rmse:.3g} nats: an assumption that "
        "MemFT scales the law without changing its exponents; check it against "
        "saving_measured in the validation table"
    )
    return rows


def _unmemorized_cells(sub, m, exclude) -> pd.DataFrame:
    """Return the ok MemFT cells of one objective as a frame, memorized ones dropped."""
    okm = ok_mask(sub, tuple(sub["loss_reduction"].dims))
    df = (
        sub[["loss_reduction"] + (["loss_after"] if "loss_after" in sub else [])]
        .where(xr_mask(sub, okm))
        .to_dataframe()
        .reset_index()
        .dropna(subset=["loss_reduction"])
    )
    if exclude is not None and "loss_after" in df:
        df = df[df["loss_after"] > memorized_threshold(exclude)]
    if len(df) < 2:
        raise LawfitError(f"{len(df)} non-memorized {m} cell(s); need at least 2 to fit C")
    return df


def _refit_prefactor(fit_sft, df, gen):
    """C of the MemFT cells under the SFT law's α, β, b: point estimate and one per draw.

    Returns
    -------
    sft : tuple of numpy.ndarray
        C, α, β, b of the SFT law: row 0 the estimate, then its bootstrap draws.
    c_memft : numpy.ndarray
        The MemFT prefactor under each row's exponents (least squares in C; each draw on a
        case resample of the MemFT cells).
    rmse : float
        Root mean square residual of the point estimate on the MemFT cells (nats).
    """
    r, ell = df["rank"].to_numpy(float), df["length"].to_numpy(float)
    y = df["loss_reduction"].to_numpy(float)
    draws = fit_sft.boot.usable_draws()
    allth = np.vstack([np.asarray(fit_sft.theta, float), draws])  # row 0: point estimate
    Cs, al, be, bb = (allth[:, j : j + 1] for j in range(4))
    G = np.exp(al * np.log(r) - be * np.log(ell))  # (R+1, n)
    W = np.ones_like(G)
    n = y.size
    idx = gen.integers(0, n, size=(draws.shape[0], n))
    W[1:] = np.apply_along_axis(lambda i: np.bincount(i, minlength=n), 1, idx)
    Cm = (W * G * (y - bb)).sum(1, keepdims=True) / (W * G * G).sum(1, keepdims=True)
    rmse = float(np.sqrt(np.mean((y - (Cm[0, 0] * G[0] + bb[0, 0])) ** 2)))
    return (Cs[:, 0], al[:, 0], be[:, 0], bb[:, 0]), Cm[:, 0], rmse


def _rank_quantiles(rs, rm, level) -> dict:
    """Ranks needed under SFT and MemFT and the saving: estimates (row 0) and intervals."""
    a = (1 - level) / 2
    with np.errstate(all="ignore"):
        sv = 1 - rm / rs
    sv = np.where(np.isinf(rs) & np.isfinite(rm), 1.0, sv)

    def interval(v):  # inverted_cdf when some draws are unreachable (inf)
        meth = "linear" if np.all(np.isfinite(v[1:])) else "inverted_cdf"
        return np.quantile(v[1:], [a, 1 - a], method=meth)

    qs, qm = interval(rs), interval(rm)
    svd = sv[1:][np.isfinite(sv[1:])]
    q = np.quantile(svd, [a, 1 - a]) if svd.size >= 20 else (math.nan, math.nan)
    return {
        "rank_sft": float(rs[0]),
        "rank_sft_low": float(qs[0]),
        "rank_sft_high": float(qs[1]),
        "rank_memft": float(rm[0]),
        "rank_memft_low": float(qm[0]),
        "rank_memft_high": float(qm[1]),
        "saving": float(sv[0]),
        "saving_low": float(q[0]),
        "saving_high": float(q[1]),
        "n_unreachable_sft": int(np.isinf(rs[1:]).sum()),
        "n_unreachable_memft": int(np.isinf(rm[1:]).sum()),
    }
