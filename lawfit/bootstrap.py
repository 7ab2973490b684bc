"""Batched bootstrap of a fitted law: case, cluster, residual and wild; percentile and BCa.

All replicates are fitted *together* on arrays (see :mod:`lawfit._varpro`): the case
and cluster bootstraps are multinomial weights on the same design, so for a local grid
of exponents the weighted normal equations of all replicates come from matrix products
``W @ (g_k * g_l)``; the best grid point per replicate then starts a vectorised
variable-projection Levenberg-Marquardt polish. No Python loop over replicates.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from lawfit import _varpro as vp
from lawfit.errors import LawfitError

__all__ = ["bootstrap_weights", "fit_batch", "percentile_interval", "bca_interval",
           "RESAMPLING_UNITS"]

RESAMPLING_UNITS = ("cell", "seed", "run", "residual", "wild")


def bootstrap_weights(n_boot, clusters, rng):
    """Multinomial resampling weights (R, n) for the case/cluster bootstrap.

    Parameters
    ----------
    n_boot : int
        Number of replicates R.
    clusters : array of int, shape (n,)
        Cluster index of each point (``arange(n)`` for the case bootstrap).
    rng : numpy.random.Generator
        Random generator.
    """
    G = int(clusters.max()) + 1
    draws = rng.integers(0, G, size=(n_boot, G))
    flat = (draws + G * np.arange(n_boot)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_boot * G).reshape(n_boot, G).astype(float)
    return counts[:, clusters]


def fit_batch(model, theta_hat, se, Y, W, *, space, loss, delta, local_grid=True):
    """Fit R problems on the same design at once; returns theta (R, k), converged (R,).

    Starts: for variable projection, the best point per replicate of a local grid of
    the nonlinear parameters (theta_hat +- 3 SE; 9, 5x5 or 4x4x4 points),
    with the linear parameters in closed form; otherwise theta_hat.
    """
    R = W.shape[0]
    if loss == "l2":
        # exact: least squares only sees per-design-point weighted means
        with np.errstate(all="ignore"):
            Yt = np.log(Y) if space == "log" else Y
        col = vp.collapse(model.X, Yt, W)
        if col is not None:
            Xu, Yu, W = col
            Y = np.exp(Yu) if space == "log" else Yu
            model = model.with_inputs(Xu)
    identified = identifiable_rows(model.X, W, model.k)
    knl = model.nl.size
    varpro = model.lin.size > 0 and space == "linear" and knl > 0
    start = np.tile(theta_hat, (R, 1))
    if varpro and local_grid and knl <= 3:
        n_per = {1: 9, 2: 5, 3: 4}[knl]
        ranges = []
        for j in model.nl:
            s = se[j] if np.isfinite(se[j]) and se[j] > 0 else 0.05 * max(abs(theta_hat[j]), 1)
            lo = max(theta_hat[j] - 3 * s, model.lower[j])
            hi = min(theta_hat[j] + 3 * s, model.upper[j])
            ranges.append((lo, hi))
        grid = vp.make_grid(ranges, n_per)
        Wg = W / np.broadcast_to(Y, W.shape) ** 2 if space == "log" else W
        sse, lin = vp.grid_sse(model, grid, Y, Wg)
        best = np.argmin(sse, axis=1)
        start[:, model.nl] = grid[best]
        start[:, model.lin] = lin[np.arange(R), best]
        bad = ~np.all(np.isfinite(start), axis=1)
        start[bad] = theta_hat
    theta, obj, conv, _ = vp.lm(model, start, Y, W, space=space, loss=loss, delta=delta,
                                mode="full", ftol=1e-10, xtol=1e-8)
    return theta, conv & identified & np.all(np.isfinite(theta), axis=1)


def identifiable_rows(X, W, k):
    """Replicates whose resampled design can identify the law (else: failed).

    Each input needs >= 2 distinct values among points with positive weight, and
    there must be more distinct design points than parameters.
    """
    pos = (np.asarray(W) > 0).astype(float)
    ok = np.ones(pos.shape[0], bool)
    keys = []
    for x in X:
        u, inv = np.unique(np.asarray(x), return_inverse=True)
        keys.append(inv)
        ind = np.zeros((u.size, len(inv)))
        ind[inv, np.arange(len(inv))] = 1.0
        ok &= ((pos @ ind.T) > 0).sum(axis=1) >= 2
    _, pt = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    pt = np.ravel(pt)
    ind = np.zeros((pt.max() + 1, len(pt)))
    ind[pt, np.arange(len(pt))] = 1.0
    ok &= ((pos @ ind.T) > 0).sum(axis=1) > k
    return ok


def percentile_interval(draws, level):
    """Percentile interval per column of ``draws`` (NaN rows ignored)."""
    a = (1 - level) / 2
    with np.errstate(all="ignore"):
        lo = np.nanquantile(draws, a, axis=0)
        hi = np.nanquantile(draws, 1 - a, axis=0)
    return lo, hi


def bca_interval(draws, theta_hat, jack, level):
    """Bias-corrected and accelerated interval (Efron 1987).

    ``z0`` from the share of draws below the estimate; the acceleration ``a`` from
    the jackknife values ``jack`` (leave-one-unit-out estimates, shape (m, k)):
    ``a = sum(d^3) / (6 * sum(d^2)^1.5)`` with ``d = mean(jack) - jack``.
    """
    if jack is None:
        raise LawfitError("BCa intervals need jackknife values; refit with ci_method='bca'.")
    k = draws.shape[1]
    lo = np.full(k, np.nan)
    hi = np.full(k, np.nan)
    a_lo, a_hi = (1 - level) / 2, 1 - (1 - level) / 2
    for j in range(k):
        d = draws[:, j]
        d = d[np.isfinite(d)]
        if d.size < 10:
            continue
        prop = (np.sum(d < theta_hat[j]) + 0.5 * np.sum(d == theta_hat[j])) / d.size
        prop = min(max(prop, 1.0 / (d.size + 1)), d.size / (d.size + 1))
        z0 = stats.norm.ppf(prop)
        jj = jack[:, j]
        jj = jj[np.isfinite(jj)]
        dd = jj.mean() - jj
        den = 6.0 * np.sum(dd ** 2) ** 1.5
        acc = np.sum(dd ** 3) / den if den > 0 else 0.0
        qs = []
        for a in (a_lo, a_hi):
            z = stats.norm.ppf(a)
            qs.append(stats.norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z))))
        lo[j], hi[j] = np.quantile(d, qs[0]), np.quantile(d, qs[1])
    return lo, hi
