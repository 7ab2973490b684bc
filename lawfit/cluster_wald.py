"""A cluster-robust test of several linear restrictions at once (CR2 Wald, HTZ F reference).

Do LoRA, memory tokens and a KV prefix share the law's exponents? The likelihood-ratio F
test of :mod:`lawfit.shared` answers under independent cells. Cells that share a target
sequence do not have independent errors (a sequence that is easier to store raises every
cell of it, under every carrier), and then that F test rejects a true null far more often
than its level. This module tests the same restrictions with the cluster-robust
covariance instead.

The q restrictions are Cθ = 0 (e.g. α_LoRA − α_KV = 0 and β_LoRA − β_KV = 0, q = 2) on a fit
linearised at its estimate (Jacobian J, residuals e, clusters g). The Wald statistic

    Q = (Cθ̂)ᵀ (C V C ᵀ)⁻¹ (Cθ̂),      V the CR2 covariance (:mod:`lawfit.robust`),

is referred to Hotelling's T² with η degrees of freedom, (η − q + 1)/(η q) · Q ~
F(q, η − q + 1): the "HTZ" test of Pustejovsky & Tipton (2018, Journal of Business &
Economic Statistics 36:672), which holds its level with few clusters where the plain
χ²(q) reference of a cluster-robust Wald test rejects several times too often. η matches
the total variance of the standardised CR2 matrix to a Wishart's under the working model
(independent errors of one variance):

    η = q(q + 1) / Σ_{i,j} [tr(M_ij)² + tr(M_ij M_ij)],   M_ij = P_i P_jᵀ,
    P_i = Ω^(−1/2) C (JᵀJ)⁻¹ J_iᵀ A_i (I − H)_{i·},   Ω = C (JᵀJ)⁻¹ Cᵀ,

which for q = 1 is the Bell-McCaffrey dof of :func:`lawfit.robust.bell_mccaffrey_dof`.
The test needs more clusters than restrictions: the CR2 matrix is a sum of one term per
cluster, so with G clusters it has rank G − 1 at most on the restrictions, and η − q + 1
must be positive. Otherwise no test is returned, and the reason says so.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from lawfit.errors import LawfitError
from lawfit.robust import _cr2_parts, _inverse_sqrt, _sandwich

__all__ = ["ClusterWaldTest", "cluster_wald_test"]


class ClusterWaldTest(NamedTuple):
    """One cluster-robust Wald test (all NaN but the counts when it cannot be run).

    Attributes
    ----------
    statistic : float
        The Wald statistic Q with the CR2 covariance.
    q : int
        Number of restrictions.
    eta : float
        Hotelling degrees of freedom η of the CR2 matrix.
    f_statistic : float
        (η − q + 1)/(η q) · Q.
    df1, df2 : float
        q and η − q + 1: the F reference.
    pvalue : float
        Upper tail of F(df1, df2) at ``f_statistic``.
    n_clusters : int
        Number of clusters G.
    reason : str
        Empty when the test ran; otherwise why it could not.
    """

    statistic: float
    q: int
    eta: float
    f_statistic: float
    df1: float
    df2: float
    pvalue: float
    n_clusters: int
    reason: str = ""


def cluster_wald_test(
    J: np.ndarray,
    e: np.ndarray,
    groups: np.ndarray,
    estimate: np.ndarray,
    contrasts: np.ndarray,
) -> ClusterWaldTest:
    """Test Cθ = 0 with the CR2 covariance and the HTZ F reference.

    Parameters
    ----------
    J : numpy.ndarray
        ``(n, k)`` Jacobian of the fit at its estimate (regressors of a linear model).
    e : numpy.ndarray
        ``(n,)`` least-squares residuals.
    groups : numpy.ndarray
        ``(n,)`` cluster index of each row, 0 .. G − 1.
    estimate : numpy.ndarray
        ``(k,)`` the fitted parameters θ̂.
    contrasts : numpy.ndarray
        ``(q, k)`` the restriction matrix C, of full row rank.

    Returns
    -------
    ClusterWaldTest
        The statistic, η, the F reference and its p-value; NaN with ``reason`` set when
        there are too few clusters for q restrictions.

    Raises
    ------
    LawfitError
        Shapes that do not match, or restrictions the design does not identify.
    """
    C = np.atleast_2d(np.asarray(contrasts, float))
    q, G = C.shape[0], int(groups.max()) + 1
    if C.shape[1] != J.shape[1] or len(estimate) != J.shape[1] or len(e) != len(J):
        raise LawfitError(
            f"expected contrasts (q, {J.shape[1]}), estimate ({J.shape[1]},) and residuals "
            f"({len(J)},); got {C.shape}, {np.shape(estimate)} and {np.shape(e)}."
        )
    if G - 1 < q:
        return _untested(
            q, G, f"{q} restrictions need at least {q + 1} clusters; the data have {G}"
        )
    parts = _cr2_parts(J, groups)
    omega = C @ parts["bread"] @ C.T
    if np.linalg.matrix_rank(omega) < q:
        raise LawfitError(
            "the restrictions are not identified by the design (C (JᵀJ)⁻¹ Cᵀ is singular): "
            "some restriction repeats another or involves an unestimable parameter."
        )
    eta = _hotelling_dof(J, C, parts, _inverse_sqrt(omega))
    df2 = eta - q + 1
    if not df2 > 0:
        return _untested(q, G, f"η = {eta:.2f} leaves no denominator dof for {q} restrictions")
    z = C @ np.asarray(estimate, float)
    V = C @ _sandwich(J, e, parts) @ C.T
    Q = float(z @ np.linalg.pinv(V) @ z)
    f_stat = df2 / (eta * q) * Q
    return ClusterWaldTest(
        statistic=Q,
        q=q,
        eta=eta,
        f_statistic=f_stat,
        df1=float(q),
        df2=df2,
        pvalue=float(stats.f.sf(f_stat, q, df2)),
        n_clusters=G,
    )


def _hotelling_dof(J: np.ndarray, C: np.ndarray, parts: dict, omega_isqrt: np.ndarray) -> float:
    """η of the Wishart whose total variance matches the standardised CR2 matrix's."""
    direction = omega_isqrt @ C @ parts["bread"]  # (q, k)
    P = np.vstack(
        [
            direction @ J[ix].T @ A @ parts["resid_maker"][ix]
            for ix, A in zip(parts["members"], parts["adjust"], strict=True)
        ]
    )  # (G q, n): cluster i's q rows, then the next cluster's
    q = C.shape[0]
    G = P.shape[0] // q
    M = (P @ P.T).reshape(G, q, G, q).transpose(0, 2, 1, 3)  # M[i, j] = P_i P_jᵀ
    traces = np.trace(M, axis1=2, axis2=3)
    squares = np.einsum("ijst,ijts->ij", M, M)
    return float(q * (q + 1) / np.sum(traces**2 + squares))


def _untested(q: int, G: int, reason: str) -> ClusterWaldTest:
    """Return a test that could not be run: NaN statistics, the counts and the reason."""
    nan = float("nan")
    return ClusterWaldTest(nan, q, nan, nan, float(q), nan, nan, G, reason)
