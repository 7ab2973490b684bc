"""Cluster-robust intervals of a fitted law: a CR1 sandwich with t(G − 1) quantiles.

Cells that share a target sequence (or an initialisation seed) share errors: a sequence
that is easier to store raises every cell of it. The case bootstrap then treats
correlated cells as independent and its intervals are too narrow, and the cluster
bootstrap, which resamples whole sequences, is too narrow as well with few of them (71 %
coverage of a 95 % interval at 3 clusters; docs/lawfit.md, calibration) and cannot refit
a resample that loses the only cell at some design point.

This interval keeps every cell. At the estimate θ̂ of a least-squares fit with Jacobian J
(in the fit's space) and residuals e,

    Cov(θ̂) = c · (JᵀJ)⁻¹ [Σ_g (J_gᵀ e_g)(J_gᵀ e_g)ᵀ] (JᵀJ)⁻¹,   c = G/(G − 1) · (n − 1)/(n − k),

summing over the G clusters g (the CR1 estimator; Cameron & Miller 2015, J. Human
Resources 50:317), and the interval is θ̂ ± t_{G−1} · se, with G − 1 degrees of freedom
since the G cluster scores carry the only independent information about the spread
(Bester, Conley & Hansen 2011, J. Econometrics 165:137). On synthetic sweeps with a
random effect per seed it covers 92–97 % at 3–20 clusters
(``benchmarks/calibration.py``, scenarios ``cluster-t/run*``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.design import form_jacobian
from lawfit.errors import LawfitError

__all__ = ["cluster_covariance", "cluster_interval"]


def cluster_covariance(result, cluster: str) -> tuple[np.ndarray, int]:
    """Return the CR1 cluster-robust covariance of a fit's estimate and the cluster count.

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit (``loss="l2"``), in linear or log space.
    cluster : str
        Column of ``result.points`` whose values define the clusters, e.g.
        ``"data_seed"`` (target sequences) or ``"seed"`` (initialisations).

    Returns
    -------
    cov : numpy.ndarray
        ``(k, k)`` covariance, parameters in ``result.param_names`` order.
    n_clusters : int
        Number of distinct clusters G.

    Raises
    ------
    LawfitError
        For a Huber fit, an unknown column, or fewer than 2 clusters.
    """
    points = result.points
    groups = _clusters(result, cluster)
    theta = dict(zip(result.param_names, result.theta, strict=True))
    J = form_jacobian(result.form, points, theta)
    if result.space == "log":  # residuals are log(y) - log(f): d log f = df / f
        J = J / points["fitted"].to_numpy(float)[:, None]
    e = points["residual"].to_numpy(float)
    bread = np.linalg.pinv(J.T @ J)
    G = int(groups.max()) + 1
    scores = np.zeros((G, J.shape[1]))
    np.add.at(scores, groups, J * e[:, None])
    n, k = J.shape
    scale = G / (G - 1) * (n - 1) / (n - k)
    return scale * bread @ (scores.T @ scores) @ bread, G


def cluster_interval(result, cluster: str, level: float) -> pd.DataFrame:
    """Return θ̂ ± t_{G−1} · se with the cluster-robust standard errors.

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit.
    cluster : str
        Column of ``result.points`` defining the clusters.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    pandas.DataFrame
        Index: parameter names; columns ``low``, ``high``, ``se``; ``attrs`` hold
        ``n_clusters`` and ``dof`` (G − 1).
    """
    cov, G = cluster_covariance(result, cluster)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    t = stats.t.ppf(0.5 + level / 2, G - 1)
    out = pd.DataFrame(
        {"low": result.theta - t * se, "high": result.theta + t * se, "se": se},
        index=pd.Index(result.param_names, name="param"),
    )
    out.attrs.update({"n_clusters": G, "dof": G - 1, "cluster": cluster})
    return out


def _clusters(result, cluster: str) -> np.ndarray:
    """Cluster index (0..G-1) of each fitted cell; refuse what the interval cannot use."""
    if result.loss != "l2":
        raise LawfitError(
            f"the cluster-robust interval is for least-squares fits; this fit used "
            f"loss={result.loss!r}. Refit with loss='l2', or use the bootstrap."
        )
    points = result.points
    if cluster not in points.columns:
        have = [c for c in ("seed", "data_seed", "run") if c in points.columns]
        raise LawfitError(
            f"cluster={cluster!r} is not a column of the fitted cells; they have "
            f"{list(points.columns)}. Pass one of {have or 'the replicate columns'} "
            "(data_seed: target sequences; seed: initialisations)."
        )
    _, groups = np.unique(points[cluster].to_numpy(), return_inverse=True)
    if groups.max() < 1:
        raise LawfitError(
            f"cluster={cluster!r} has a single value over the fitted cells: a "
            "cluster-robust interval needs at least 2 clusters (better 3+). Use "
            "method='wald', 'profile' or the bootstrap."
        )
    return np.ravel(groups)
