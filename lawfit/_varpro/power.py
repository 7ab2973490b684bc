"""The dedicated vectorised Levenberg-Marquardt of the power law (:func:`lm_power`).

With its objective and normal equations at trial points (:func:`_power_pieces`) and
at one point shared by all replicates (:func:`power_shared_pieces`).
"""

from __future__ import annotations

import numpy as np

from lawfit._varpro.lm_step import _damped_step, _lm_accept
from lawfit._varpro.loss import transform


def lm_power(
    logs,
    theta0,
    Y,
    W,
    lower,
    upper,
    *,
    space="linear",
    max_iter=200,
    ftol=1e-12,
    xtol=1e-10,
    lam0=1e-3,
    init=None,
):
    """Batched Levenberg-Marquardt for the power law, least squares in linear or log space.

    The same algorithm as :func:`lm` with ``mode="full"`` (all four parameters,
    projection on the bounds, the same acceptance, damping and convergence rules),
    written for the basis g = exp(alpha log r - beta log l): per iteration one ``exp``
    and a few (R x n) passes; the 4 x 4 normal equations come from matrix products of
    the weighted basis with the columns (1, log r, log l, ...), computed together with
    the objective at every trial point (kept when the step is accepted), in blocks of
    replicates small enough to stay in cache.

    Parameters
    ----------
    logs : tuple of ndarray
        ``(log r, log l)``, each shape (n,), from :func:`power_law_logs`.
    theta0 : ndarray, shape (R, 4)
        Starts (C, alpha, beta, b).
    Y, W : ndarray, shape (R, n) or broadcastable
        Responses (linear scale) and weights.
    lower, upper : ndarray, shape (4,)
        Bounds.
    space : {"linear", "log"}
        Least squares of y - f, or of log y - log f (the Jacobian divided by f, as in
        :func:`lm`; a trial point with f <= 0 somewhere has an infinite objective).
    max_iter : int
        Iteration limit; replicates still active then are not converged.
    ftol, xtol : float
        Relative objective decrease / relative step that end an accepted step.
    lam0 : float
        Initial damping (relative to the diagonal); small for warm starts.
    init : tuple, optional
        ``(obj, A, grad)`` at ``theta0`` when already known (see
        :func:`power_shared_pieces`); ``theta0`` must then lie within the bounds.

    Returns
    -------
    theta : ndarray, shape (R, 4)
    obj : ndarray, shape (R,)
        Weighted sum of squares.
    conv : ndarray of bool, shape (R,)
    nit : ndarray of int, shape (R,)
    """
    lr, ll = (np.asarray(v, float) for v in logs)
    theta = np.clip(np.array(theta0, float, copy=True), lower, upper)
    R = theta.shape[0]
    n = lr.size
    W = np.ascontiguousarray(np.broadcast_to(W, (R, n)), dtype=float)
    Y = np.ascontiguousarray(np.broadcast_to(Y, (R, n)), dtype=float)
    log = _log_space(space)
    if log:
        Y = transform(Y, "log")
    consts = (
        np.stack([lr, -ll]),  # (2, n): exponent = (alpha, beta) @ L
        np.stack([np.ones(n), lr, ll], axis=1),  # (n, 3)
        np.stack([np.ones(n), lr, ll, lr * lr, ll * ll, lr * ll], axis=1),
    )  # (n, 6)
    sw = W.sum(axis=1)
    if init is None:
        obj, A, grad = _power_pieces(theta, W, Y, sw, np.arange(R), consts, log=log)
    else:
        obj, A, grad = (np.array(v, float) for v in init)
    lam = np.full(R, float(lam0))
    done = ~np.isfinite(obj)
    conv = np.zeros(R, bool)
    nit = np.zeros(R, int)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        th = theta[act]
        step, singular = _damped_step(A[act], grad[act], lam[act], act, done, conv)
        new = np.clip(th + step, lower, upper)
        # objective and normal equations at the trial points (kept where accepted)
        o_new, A_new, g_new = _power_pieces(new, W, Y, sw, act, consts, log=log)
        _lm_accept(
            act,
            new,
            o_new,
            np.linalg.norm(new - th, axis=1),
            np.linalg.norm(th, axis=1) + xtol,
            singular,
            state=(theta, obj, lam, conv, done, nit),
            ftol=ftol,
            xtol=xtol,
            carry=((A, A_new), (grad, g_new)),
        )
    conv &= np.isfinite(obj) & np.all(np.isfinite(theta), axis=1)
    return theta, obj, conv, nit


_IU = np.triu_indices(4, 1)


def _log_space(space: str) -> bool:
    if space not in ("linear", "log"):
        raise ValueError(f"space must be 'linear' or 'log'; got {space!r}")
    return space == "log"


def _power_pieces(th, W, Y, sw, rows, consts, chunk=128, log=False):
    """Objective, J'WJ (m, 4, 4) and J'W r (m, 4) of the power law at th (m, 4).

    ``th[i]`` belongs to replicate ``rows[i]`` (rows of W, Y). Works through blocks of
    ``chunk`` replicates so that the (chunk x n) temporaries stay in cache. With ``log``,
    ``Y`` holds log responses, r = log y - log f and the Jacobian is J/f: the same sums
    with the weights W/f² (normal matrix) and W r/f (gradient) in place of W and W r.
    """
    L, H1, H2 = consts
    m = th.shape[0]
    obj = np.empty(m)
    A = np.empty((m, 4, 4))
    grad = np.empty((m, 4))
    full = rows.size == W.shape[0]
    with np.errstate(all="ignore"):
        for s in range(0, m, chunk):
            sl = slice(s, min(m, s + chunk))
            t = th[sl]
            Wc = W[sl] if full else W[rows[sl]]
            Yc = Y[sl] if full else Y[rows[sl]]
            g = np.exp(t[:, 1:3] @ L)
            if log:
                f = t[:, :1] * g + t[:, 3:4]
                r = Yc - np.log(np.where(f > 0, f, np.nan))
                obj[sl] = np.einsum("rn,rn->r", Wc * r, r)
                Wr = Wc * r / f
                Wc = Wc / (f * f)
                swc = Wc.sum(axis=1)
            else:
                r = t[:, :1] * g
                np.subtract(Yc, r, out=r)
                r -= t[:, 3:4]  # r = y - (C g + b)
                Wr = Wc * r
                obj[sl] = np.einsum("rn,rn->r", Wr, r)
                swc = sw[rows[sl]]
            sr = Wr.sum(axis=1)
            Wr *= g
            t1 = Wr @ H1  # sum W r g {1, lr, ll}
            Wg = Wc * g
            s1 = Wg @ H1  # sum W g {1, lr, ll}
            Wg *= g
            s2 = Wg @ H2  # sum W g^2 {1, lr, ll, lr^2, ll^2, lr ll}
            C = t[:, 0]
            Ab = A[sl]
            Ab[:, 0, 0] = s2[:, 0]
            Ab[:, 0, 1] = C * s2[:, 1]
            Ab[:, 0, 2] = -C * s2[:, 2]
            Ab[:, 0, 3] = s1[:, 0]
            Ab[:, 1, 1] = C * C * s2[:, 3]
            Ab[:, 1, 2] = -C * C * s2[:, 5]
            Ab[:, 1, 3] = C * s1[:, 1]
            Ab[:, 2, 2] = C * C * s2[:, 4]
            Ab[:, 2, 3] = -C * s1[:, 2]
            Ab[:, 3, 3] = swc
            Ab[:, _IU[1], _IU[0]] = Ab[:, _IU[0], _IU[1]]
            gb = grad[sl]
            gb[:, 0] = t1[:, 0]
            gb[:, 1] = C * t1[:, 1]
            gb[:, 2] = -C * t1[:, 2]
            gb[:, 3] = sr
    obj = np.where(np.isfinite(obj), obj, np.inf)
    return obj, A, grad


def power_shared_pieces(logs, theta_hat, Y, W, space="linear"):
    """Objective, J'WJ and J'W r of every replicate at the common point ``theta_hat``.

    At one parameter vector the model values m and the Jacobian J (n, 4) are shared
    by all replicates, so these are products, not per-replicate evaluations:
    ``J'WJ = W @ (J_k J_l)`` (R x n @ n x 10) and ``J'W r = (W * (Y - m)) @ J``. They
    start :func:`lm_power` at ``theta_hat`` (argument ``init``); its first step is
    then a Gauss-Newton step with the full-data Jacobian.

    Parameters
    ----------
    logs : tuple of ndarray
        ``(log r, log l)`` from :func:`power_law_logs`.
    theta_hat : ndarray, shape (4,)
        The common point (C, alpha, beta, b).
    Y, W : ndarray, shape (R, n)
        Responses (linear scale) and weights.
    space : {"linear", "log"}
        As in :func:`lm_power` (in log space J/f and log y - log f are shared the same way).

    Returns
    -------
    obj : ndarray, shape (R,)
    A : ndarray, shape (R, 4, 4)
    grad : ndarray, shape (R, 4)
    """
    lr, ll = logs
    C, a, b_, b = (float(v) for v in theta_hat)
    R = W.shape[0]
    with np.errstate(all="ignore"):
        g = np.exp(a * lr - b_ * ll)
        J = np.stack([g, C * g * lr, -C * g * ll, np.ones_like(g)], axis=1)  # (n, 4)
        f = C * g + b
        if _log_space(space):
            J = J / np.where(f > 0, f, np.nan)[:, None]
            Y, f = transform(Y, "log"), transform(f, "log")
        iu = np.triu_indices(4)
        Avec = W @ (J[:, iu[0]] * J[:, iu[1]])
        A = np.empty((R, 4, 4))
        A[:, iu[0], iu[1]] = Avec
        A[:, iu[1], iu[0]] = Avec
        r = Y - f
        Wr = W * r
        grad = Wr @ J
        obj = np.einsum("rn,rn->r", Wr, r)
    return np.where(np.isfinite(obj), obj, np.inf), A, grad
