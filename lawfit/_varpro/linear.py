"""Closed-form weighted least squares of the linear parameters, batched.

Also the exact merge of points with identical inputs (:func:`collapse`).
"""

from __future__ import annotations

import numpy as np


def _solve_small(A, b):
    """Closed-form batched solve for p = 1 or 2 (Cramer's rule); NaN where singular."""
    p = A.shape[-1]
    with np.errstate(all="ignore"):
        if p == 1:
            x = b / A[..., 0]
        else:
            a, c, d, e = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
            det = a * e - c * d
            scale = np.abs(a * e) + np.abs(c * d)
            det = np.where(np.abs(det) > 1e-13 * scale, det, np.nan)
            x = np.stack(
                [(e * b[..., 0] - c * b[..., 1]) / det, (a * b[..., 1] - d * b[..., 0]) / det],
                axis=-1,
            )
    return x


def _solve_spd(A, b):
    """Solve batched (R,p,p) x = (R,p) with diagonal scaling; NaN where singular."""
    if A.shape[-1] <= 2:
        return _solve_small(A, b)
    d = np.sqrt(np.abs(np.einsum("...ii->...i", A)))
    d = np.where(d > 0, d, 1.0)
    As = A / (d[..., :, None] * d[..., None, :])
    bs = b / d
    p = A.shape[-1]
    As = As + 1e-13 * np.eye(p)
    out = np.full(b.shape, np.nan)
    try:
        out = np.linalg.solve(As, bs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        for idx in np.ndindex(A.shape[:-2]):
            try:
                out[idx] = np.linalg.solve(As[idx], bs[idx])
            except np.linalg.LinAlgError:
                out[idx] = np.nan
    return out / d


def solve_linear(Phi, z, W):
    """Weighted LS of z on the columns of Phi, batched. Returns c (R, p)."""
    if Phi.shape[-1] == 0:
        return np.empty(Phi.shape[:1] + (0,))
    PW = Phi * W[..., None]
    A = np.matmul(PW.transpose(0, 2, 1), Phi)
    b = np.einsum("rnk,rn->rk", PW, z)
    return _solve_spd(A, b)


def collapse(X, Y, W):
    """Merge points with identical inputs (exact for least squares).

    sum_i W_i (y_i - f(x_i))^2 = sum_u W_u (ybar_u - f(x_u))^2 + const, with
    W_u = sum_{i in u} W_i and ybar_u the W-weighted mean of y in u. The sums over
    replicates are matrix products (R x n) @ (n x U).

    Returns (X_u, Ybar (R, U), W_u (R, U)) or None if nothing merges.
    """
    keys = np.stack([np.asarray(x, float) for x in X], axis=1)
    order = np.lexsort(keys.T[::-1])
    ks = keys[order]
    new = np.ones(ks.shape[0], bool)
    new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    starts = np.flatnonzero(new)
    if starts.size == keys.shape[0]:
        return None
    uniq = ks[starts]
    W = np.asarray(W, float)
    Y = np.broadcast_to(Y, W.shape)
    Wo = W[:, order]
    Wu = np.add.reduceat(Wo, starts, axis=1)
    WYu = np.add.reduceat(Wo * Y[:, order], starts, axis=1)
    with np.errstate(all="ignore"):
        Yu = np.where(Wu > 0, WYu / np.where(Wu > 0, Wu, 1.0), 0.0)
    return tuple(uniq[:, j] for j in range(uniq.shape[1])), Yu, Wu
