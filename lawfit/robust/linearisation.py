"""The fit as the sandwich reads it: its Jacobian and residuals, and each cell's cluster.

:func:`linearised` linearises a fit at its estimate in its fitting space (J, e);
:func:`_clusters` turns a column of the fitted cells into a cluster index 0 .. G − 1 and
refuses what a cluster-robust interval cannot use (a Huber fit, an unknown column, one
cluster).
"""

from __future__ import annotations

import numpy as np

from lawfit.design import form_jacobian
from lawfit.errors import LawfitError


def linearised(result) -> tuple[np.ndarray, np.ndarray]:
    """Return the Jacobian and residuals of a fit, both in its fitting space."""
    points = result.points
    theta = dict(zip(result.param_names, result.theta, strict=True))
    J = form_jacobian(result.form, points, theta)
    if result.space == "log":  # residuals are log(y) - log(f): d log f = df / f
        J = J / points["fitted"].to_numpy(float)[:, None]
    return J, points["residual"].to_numpy(float)


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
