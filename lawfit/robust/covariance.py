"""The CR2 cluster-robust covariance and the Bell-McCaffrey degrees of freedom.

Cov(θ̂) = (JᵀJ)⁻¹ [Σ_g J_gᵀ A_g e_g e_gᵀ A_g J_g] (JᵀJ)⁻¹ with A_g = (I − H_gg)^(−1/2)
(:func:`cr2_covariance`, :func:`cluster_covariance` for a fit), and per coefficient or
contrast the dof (Σλ)² / Σλ² over the eigenvalues λ of GᵀG (:func:`bell_mccaffrey_dof`,
which needs the design only). The private pieces (:func:`_cr2_parts`,
:func:`_sandwich`, :func:`_bell_mccaffrey_dof`, :func:`_inverse_sqrt`) are shared with
the contrasts here and the Wald test of :mod:`lawfit.cluster_wald`.
"""

from __future__ import annotations

import warnings

import numpy as np

from lawfit.robust.linearisation import _clusters, linearised


def cluster_covariance(result, cluster: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Return the CR2 cluster-robust covariance, each parameter's dof and the cluster count.

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
    dof : numpy.ndarray
        ``(k,)`` Bell-McCaffrey degrees of freedom of each parameter's t interval.
    n_clusters : int
        Number of distinct clusters G.

    Raises
    ------
    LawfitError
        For a Huber fit, an unknown column, or fewer than 2 clusters.
    """
    groups = _clusters(result, cluster)
    J, e = linearised(result)
    cov, dof = cr2_covariance(J, e, groups)
    return cov, dof, int(groups.max()) + 1


def cr2_covariance(
    J: np.ndarray, e: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the CR2 covariance and the Bell-McCaffrey dof of each coefficient.

    Parameters
    ----------
    J : numpy.ndarray
        ``(n, k)`` regressors (a nonlinear fit's Jacobian at its estimate).
    e : numpy.ndarray
        ``(n,)`` least-squares residuals.
    groups : numpy.ndarray
        ``(n,)`` cluster index of each row, 0 .. G − 1.

    Returns
    -------
    cov : numpy.ndarray
        ``(k, k)``; unbiased for (JᵀJ)⁻¹σ² when the errors are independent with
        variance σ² (the property that defines CR2).
    dof : numpy.ndarray
        ``(k,)`` degrees of freedom of each coefficient's t interval.
    """
    parts = _cr2_parts(J, groups)
    return _sandwich(J, e, parts), _dofs(J, parts)


def _sandwich(J: np.ndarray, e: np.ndarray, parts: dict) -> np.ndarray:
    """Return the CR2 covariance from the bread and each cluster's adjusted scores."""
    bread, members, adjust = parts["bread"], parts["members"], parts["adjust"]
    scores = np.array([J[ix].T @ (A @ e[ix]) for ix, A in zip(members, adjust, strict=True)])
    return bread @ (scores.T @ scores) @ bread


def bell_mccaffrey_dof(J: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Return each coefficient's Bell-McCaffrey dof for a design, before any cell is run.

    The degrees of freedom depend on the regressors and the clusters only, not on the
    residuals, so a sweep's design says in advance how informative its cluster-robust
    intervals will be (:func:`lawfit.next_cells` with ``cluster=``).

    Parameters
    ----------
    J : numpy.ndarray
        ``(n, k)`` regressors (a form's Jacobian over the design points).
    groups : numpy.ndarray
        ``(n,)`` cluster index of each row, 0 .. G − 1.

    Returns
    -------
    numpy.ndarray
        ``(k,)``; G − 1 for equal clusters, towards 1 when one cluster dominates.
    """
    return _dofs(J, _cr2_parts(J, groups))


def _cr2_parts(J: np.ndarray, groups: np.ndarray) -> dict:
    """Bread (JᵀJ)⁻¹, I − H, each cluster's rows and its adjustment A_g."""
    bread = np.linalg.pinv(J.T @ J)
    resid_maker = np.eye(len(J)) - J @ bread @ J.T  # I - H
    members = [np.flatnonzero(groups == g) for g in range(int(groups.max()) + 1)]
    blocks = [resid_maker[np.ix_(ix, ix)] for ix in members]
    _warn_if_confined(blocks)
    adjust = [_inverse_sqrt(b) for b in blocks]
    return {"bread": bread, "resid_maker": resid_maker, "members": members, "adjust": adjust}


def _dofs(J: np.ndarray, parts: dict) -> np.ndarray:
    """Bell-McCaffrey dof of every coefficient."""
    return np.array(
        [
            _bell_mccaffrey_dof(
                parts["resid_maker"], J, parts["bread"][:, j], parts["members"], parts["adjust"]
            )
            for j in range(J.shape[1])
        ]
    )


def _warn_if_confined(blocks: list[np.ndarray]) -> None:
    """Warn when some parameter direction is informed by one cluster alone.

    Then I − H is singular on that cluster's block: its residuals carry nothing about
    that direction, the sandwich cannot see its spread, and CR2 is no longer unbiased
    for it (Pustejovsky & Tipton 2018, J. Bus. Econ. Stat. 36:672).
    """
    confined = [g for g, b in enumerate(blocks) if np.linalg.eigvalsh(b)[0] < 1e-8]
    if confined:
        warnings.warn(
            f"cluster(s) {confined} alone inform some combination of the parameters (I - H "
            "is singular on their cells): the cluster-robust variance of that combination "
            "is biased low. Add cells of other clusters at those design points.",
            UserWarning,
            stacklevel=4,
        )


def _inverse_sqrt(m: np.ndarray) -> np.ndarray:
    """Return the symmetric inverse square root of a positive semi-definite block."""
    w, v = np.linalg.eigh(m)
    w = np.clip(w, 1e-12 * max(w.max(), 1e-300), None)
    return (v * w**-0.5) @ v.T


def _bell_mccaffrey_dof(resid_maker, J, direction, members, adjust) -> float:
    """Return (Σλ)²/Σλ² over the eigenvalues of GᵀG for the contrast ``direction``."""
    cols = [
        resid_maker[:, ix] @ (A @ (J[ix] @ direction))
        for ix, A in zip(members, adjust, strict=True)
    ]
    G = np.column_stack(cols)
    lam = np.linalg.eigvalsh(G.T @ G)
    return float(lam.sum() ** 2 / (lam**2).sum())
