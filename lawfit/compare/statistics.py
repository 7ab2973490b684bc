"""Statistics of model comparison: pointwise likelihoods, Akaike weights and tests.

:func:`pointwise_loglik` gives each point's Gaussian log-likelihood on the fit scale (with
the Jacobian of the log transform when ``space="log"``), :func:`akaike_weights` turns
AIC, AICc or BIC values into weights, :func:`likelihood_ratio_test` tests a nested
restriction and :func:`vuong_test` a non-nested pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from lawfit.errors import LawfitError


def pointwise_loglik(
    residuals: np.ndarray, y: np.ndarray | None = None, space: str = "linear"
) -> np.ndarray:
    """Gaussian log-likelihood of each point at the ML error variance.

    Parameters
    ----------
    residuals : array_like
        Residuals on the fit scale (ΔL, or log ΔL when ``space="log"``).
    y : array_like, optional
        Responses on the original scale; needed for ``space="log"`` (Jacobian −log y
        makes the likelihood one of ΔL, comparable with linear-space fits).
    space : {"linear", "log"}
        Fit scale.

    Returns
    -------
    numpy.ndarray
        ``log N(e_i; 0, σ̂²)`` with ``σ̂² = Σe²/n``; the sum is the model's log-likelihood.
    """
    e = np.asarray(residuals, float)
    s2 = float(np.mean(e * e))
    s2 = max(s2, 1e-300)
    ll = -0.5 * (math.log(2 * math.pi * s2) + e * e / s2)
    if space == "log":
        if y is None:
            raise LawfitError("space='log' needs y (the ΔL values) for the Jacobian term.")
        ll = ll - np.log(np.asarray(y, float))
    return ll


def akaike_weights(values: Sequence[float]) -> np.ndarray:
    """Akaike (or Schwarz) weights ``exp(−Δᵢ/2) / Σ exp(−Δⱼ/2)`` of criterion values.

    Parameters
    ----------
    values : sequence of float
        AIC, AICc or BIC values (non-finite values get weight 0).

    Returns
    -------
    numpy.ndarray
        Weights summing to 1.
    """
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    w = np.zeros_like(v)
    if ok.any():
        d = v[ok] - v[ok].min()
        e = np.exp(-0.5 * d)
        w[ok] = e / e.sum()
    return w


def likelihood_ratio_test(
    loglik_restricted: float, loglik_general: float, df: int
) -> tuple[float, float]:
    """Wilks likelihood-ratio test of a nested restriction.

    Parameters
    ----------
    loglik_restricted, loglik_general : float
        Maximised log-likelihoods of the restricted and general model.
    df : int
        Number of restrictions.

    Returns
    -------
    statistic, pvalue : float
        ``2 (ℓ_general − ℓ_restricted)`` (clipped at 0) and its χ²(df) upper tail.
    """
    stat = max(2.0 * (loglik_general - loglik_restricted), 0.0)
    return stat, float(stats.chi2.sf(stat, df))


def vuong_test(
    ll1: np.ndarray, ll2: np.ndarray, k1: int, k2: int, clusters: np.ndarray | None = None
) -> tuple[float, float]:
    """Vuong's (1989) test for non-nested models, with Schwarz correction.

    Parameters
    ----------
    ll1, ll2 : array_like
        Pointwise log-likelihoods of models 1 and 2 on the same points.
    k1, k2 : int
        Numbers of parameters (the correction is ``(k1 − k2) log(n) / 2``).
    clusters : array_like, optional
        Cluster labels (e.g. seeds): the log-likelihood differences are summed within
        clusters before the variance is taken (robust to correlated points).

    Returns
    -------
    z, pvalue : float
        ``z > 0`` favours model 1; two-sided p-value of H0 "equally close to the truth".
    """
    m = np.asarray(ll1, float) - np.asarray(ll2, float)
    n = m.size
    corr = 0.5 * (k1 - k2) * math.log(n)
    if clusters is not None:
        _, inv = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inv, weights=m)
        g = sums.size
        var = g / max(g - 1, 1) * float(np.sum((sums - sums.mean()) ** 2))
    else:
        var = n * float(np.var(m))
    if var <= 0:
        return 0.0, 1.0
    z = (m.sum() - corr) / math.sqrt(var)
    return float(z), float(2 * stats.norm.sf(abs(z)))
