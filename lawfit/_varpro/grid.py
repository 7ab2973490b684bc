"""The grid search of variable projection.

The reduced sum of squares on a grid of the nonlinear parameters (with the power
law's fast path, :func:`power_law_logs`) and the grid itself.
"""

from __future__ import annotations

import numpy as np

from lawfit._varpro.linear import _solve_spd


def grid_sse(model, nl_grid, Y, W, chunk=512):
    """Weighted SSE of the variable-projection problem on a grid of nonlinear params.

    Parameters
    ----------
    nl_grid : (G, knl) values of the nonlinear parameters.
    Y : (R, n) or (1, n) responses; W : (R, n) weights.

    Returns
    -------
    sse : (R, G); lin : (R, G, p) closed-form linear parameters.

    For each (k, l) pair the normal-equation entries for all replicates and grid
    points come from one matrix product ``W @ (Phi_k * Phi_l).T`` of shape
    (R x n) @ (n x G).
    """
    G = nl_grid.shape[0]
    R = W.shape[0]
    Y = np.broadcast_to(Y, W.shape)
    logs = power_law_logs(model)
    if logs is not None:
        return _grid_sse_power(logs, nl_grid, Y, W, chunk)
    p = model.lin.size
    sse = np.empty((R, G))
    lin = np.empty((R, G, p))
    W = np.ascontiguousarray(W, dtype=float)
    WY = np.ascontiguousarray(W * Y)
    WYY = np.sum(WY * Y, axis=1)
    C = np.ascontiguousarray  # BLAS needs contiguous operands (else a slow generic loop)
    for s in range(0, G, chunk):
        sl = slice(s, min(G, s + chunk))
        th = np.zeros((sl.stop - s, model.k))
        th[:, model.nl] = nl_grid[sl]
        g0, Phi = model.basis(th)  # (g, n), (g, n, p)
        zz = WYY[:, None] - 2.0 * (WY @ C(g0.T)) + W @ C((g0 * g0).T)  # (R, g)
        if p == 0:
            sse[:, sl] = zz
            continue
        A = np.empty((R, sl.stop - s, p, p))
        bvec = np.empty((R, sl.stop - s, p))
        for a in range(p):
            Pa = Phi[:, :, a]
            bvec[:, :, a] = WY @ C(Pa.T) - W @ C((g0 * Pa).T)
            for c in range(a, p):
                A[:, :, a, c] = W @ C((Pa * Phi[:, :, c]).T)
                A[:, :, c, a] = A[:, :, a, c]
        cc = _solve_spd(A, bvec)
        lin[:, sl] = cc
        sse[:, sl] = zz - np.einsum("rgk,rgk->rg", cc, bvec)
    sse = np.where(np.isfinite(sse), np.maximum(sse, 0.0), np.inf)
    return sse, lin


def power_law_logs(model):
    """``(log r, log l)`` when ``model`` is the built-in power law on positive inputs.

    The law C * exp(alpha log r - beta log l) + b then has the basis (g, 1) with
    g = exp(alpha log r - beta log l): one ``exp`` per point and no offset, which the
    fast paths (:func:`grid_sse`, :func:`lm_power`) use. Any other form (or inputs
    <= 0) returns None and takes the generic path.
    """
    from lawfit import forms  # local: forms does not import this module, but stay lazy

    if (
        model.func is not forms._power_law
        or model.names != ("C", "alpha", "beta", "b")
        or model.lin.tolist() != [0, 3]
        or len(model.X) != 2
    ):
        return None
    x, ell = model.X
    if not (
        np.all(x > 0) and np.all(ell > 0) and np.all(np.isfinite(x)) and np.all(np.isfinite(ell))
    ):
        return None
    return np.log(x), np.log(ell)


def _grid_sse_power(logs, nl_grid, Y, W, chunk):
    """:func:`grid_sse` for the power law: basis (g, 1), offset 0 (see power_law_logs)."""
    lr, ll = logs
    G = nl_grid.shape[0]
    R = W.shape[0]
    W = np.ascontiguousarray(W, dtype=float)
    WY = np.ascontiguousarray(W * Y)
    sw = W.sum(axis=1)[:, None]
    swy = WY.sum(axis=1)[:, None]
    swyy = np.einsum("rn,rn->r", WY, Y)[:, None]
    L = np.stack([lr, -ll])  # (2, n)
    sse = np.empty((R, G))
    lin = np.empty((R, G, 2))
    for s in range(0, G, chunk):
        sl = slice(s, min(G, s + chunk))
        with np.errstate(all="ignore"):
            gT = np.exp(L.T @ np.ascontiguousarray(nl_grid[sl].T))  # (n, g)
            sg = W @ gT
            sgg = W @ (gT * gT)
            syg = WY @ gT
            # 2x2 normal equations [[sgg, sg], [sg, sw]] (C, b) = (syg, swy), Cramer
            det = sgg * sw - sg * sg
            scale = np.abs(sgg * sw) + sg * sg
            det = np.where(np.abs(det) > 1e-13 * scale, det, np.nan)
            c = (sw * syg - sg * swy) / det
            b = (sgg * swy - sg * syg) / det
            lin[:, sl, 0] = c
            lin[:, sl, 1] = b
            sse[:, sl] = swyy - (c * syg + b * swy)
    sse = np.where(np.isfinite(sse), np.maximum(sse, 0.0), np.inf)
    return sse, lin


def make_grid(ranges, n_per):
    axes = [np.linspace(lo, hi, n_per) for lo, hi in ranges]
    if not axes:
        return np.empty((1, 0))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)
