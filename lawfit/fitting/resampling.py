"""The bootstrap of a fit: case, cluster, residual or wild resampling, and the jackknife.

:func:`_bootstrap` draws the replicates (batched, see :mod:`lawfit.bootstrap`), adds the
jackknife BCa intervals need, and returns the :class:`~lawfit.bootstrap.BootstrapResult`.
"""

from __future__ import annotations

import math

import numpy as np

from lawfit import _varpro as vp
from lawfit.bootstrap import BootstrapResult, cluster_index, fit_batch, fit_resampled


def _bootstrap(
    model, frame, theta, cov, y, fitted, resid, space, loss, delta, unit, R, ci_method, rng
):
    n = y.size
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    z_hat = vp.transform(fitted, space)
    dof = n - model.k
    n_clusters = None
    if unit in ("residual", "wild"):
        W = np.ones((R, n))
        if unit == "residual":
            e = (resid - resid.mean()) * math.sqrt(n / dof)
            Z = z_hat + e[rng.integers(0, n, size=(R, n))]
        else:
            v = rng.choice([-1.0, 1.0], size=(R, n))
            Z = z_hat + resid * math.sqrt(n / dof) * v
        Yb = np.exp(Z) if space == "log" else Z
        clusters = np.arange(n)
    else:
        if unit == "cell":
            clusters = np.arange(n)
        else:
            clusters = cluster_index(frame, unit, fix="unit='cell' or 'residual'")
            n_clusters = int(clusters.max()) + 1
    if unit in ("residual", "wild"):
        draws, status = fit_batch(model, theta, se, Yb, W, space=space, loss=loss, delta=delta)
    else:  # multinomial weights, reduced to per-design-point sums (same draws)
        draws, status = fit_resampled(
            model, theta, se, y, clusters, R, rng, space=space, loss=loss, delta=delta
        )
    jack = None
    if ci_method == "bca":
        G = int(clusters.max()) + 1
        Wj = np.ones((G, n))
        Wj[clusters[None, :] == np.arange(G)[:, None]] = 0.0
        jack, jstatus = fit_batch(
            model, theta, se, y[None, :], Wj, space=space, loss=loss, delta=delta, local_grid=False
        )
        jack = np.where(np.isin(jstatus, ("converged", "at_bound"))[:, None], jack, np.nan)
    # residuals on the fit scale, for bootstrap prediction intervals
    return BootstrapResult(
        draws=draws,
        status=status,
        unit=unit,
        jack=jack,
        n_clusters=n_clusters,
        resid=np.asarray(resid, float),
    )
