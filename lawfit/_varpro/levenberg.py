"""The generic batched Levenberg-Marquardt (:func:`lm`) and its helpers.

Full or variable projection (Kaufman), IRLS for Huber, linear or log space.
"""

from __future__ import annotations

import numpy as np

from lawfit._varpro.linear import _solve_spd, solve_linear
from lawfit._varpro.lm_step import _damped_step, _lm_accept
from lawfit._varpro.loss import irls_weights, rho, transform
from lawfit._varpro.model import Model


def _relinearise(
    model: Model, th: np.ndarray, z: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Solve the linear parameters in closed form at ``th``'s nonlinear part.

    Parameters
    ----------
    model : Model
        Form bound to the design.
    th : numpy.ndarray, shape (R, k)
        Parameters (the linear ones are replaced).
    z, w : numpy.ndarray, shape (R, n)
        Responses and weights.

    Returns
    -------
    theta : numpy.ndarray, shape (R, k)
        A copy of ``th`` with the weighted least-squares linear parameters.
    f : numpy.ndarray, shape (R, n)
        Model values there.
    """
    g0, Phi = model.basis(th)
    th = th.copy()
    c = solve_linear(Phi, z - g0, w)
    th[:, model.lin] = c
    return th, g0 + np.einsum("rnk,rk->rn", Phi, c)


def _finite_objective(
    f: np.ndarray, z: np.ndarray, w: np.ndarray, space: str, loss: str, delta: float
) -> np.ndarray:
    """Weighted loss of each replicate at model values ``f``; inf where not finite.

    Parameters
    ----------
    f : numpy.ndarray, shape (R, n)
        Model values (linear scale).
    z, w : numpy.ndarray, shape (R, n)
        Responses on the fit scale and weights.
    space, loss : str
        Fit space and loss.
    delta : float
        Huber threshold.

    Returns
    -------
    numpy.ndarray, shape (R,)
        Objective per replicate.
    """
    r = z - transform(f, space)
    s = np.sum(w * rho(r, loss, delta), axis=1)
    return np.where(np.isfinite(s), s, np.inf)


def _free_parameters(
    model: Model, k: int, fixed: np.ndarray, mode: str, space: str
) -> tuple[bool, np.ndarray]:
    """Choose variable projection or a full iteration, and the parameters iterated on.

    Parameters
    ----------
    model : Model
        Form bound to the design.
    k : int
        Number of parameters.
    fixed : numpy.ndarray of bool, shape (k,)
        Parameters held at their start.
    mode : {"full", "varpro"}
        Requested mode (variable projection needs linear space, linear parameters and
        nothing fixed).
    space : str
        Fit space.

    Returns
    -------
    varpro : bool
        Whether variable projection is used.
    opt : numpy.ndarray of int
        Indices of the parameters the iteration moves.
    """
    varpro = mode == "varpro" and model.lin.size > 0 and space == "linear" and not fixed.any()
    if varpro:
        return True, model.nl
    return False, np.array([j for j in range(k) if not fixed[j]], int)


def _normal_equations(
    model: Model,
    th: np.ndarray,
    f: np.ndarray,
    Za: np.ndarray,
    Wa: np.ndarray,
    *,
    space: str,
    loss: str,
    delta: float,
    varpro: bool,
    opt: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Newton normal equations of the active replicates (IRLS weights for Huber).

    Parameters
    ----------
    model : Model
        Form bound to the design.
    th : numpy.ndarray, shape (a, k)
        Current parameters.
    f : numpy.ndarray, shape (a, n)
        Model values there.
    Za, Wa : numpy.ndarray, shape (a, n)
        Their responses (log in log space) and case weights.
    space : str
        Fit space (log space divides the Jacobian by the model value).
    loss : str
        ``"l2"``, or ``"huber"`` (IRLS weights).
    delta : float
        Where the Huber loss turns linear.
    varpro : bool
        Use Kaufman's projected Jacobian of the nonlinear parameters.
    opt : numpy.ndarray of int
        Parameters iterated on.

    Returns
    -------
    A : numpy.ndarray, shape (a, p, p)
        ``Jᵀ W J``.
    g : numpy.ndarray, shape (a, p)
        ``Jᵀ W r``.
    w : numpy.ndarray, shape (a, n)
        The weights used (IRLS-adjusted for Huber).
    """
    J = model.jacobian(th, f)
    if space == "log":
        m = transform(f, space)
        J = J / np.where(f > 0, f, np.nan)[..., None]
    else:
        m = f
    ra = Za - m
    w = Wa * irls_weights(ra, loss, delta) if loss != "l2" else Wa
    if varpro:
        Phi = J[:, :, model.lin]
        Jn = J[:, :, model.nl]
        PW = Phi * w[..., None]
        A_ = np.matmul(PW.transpose(0, 2, 1), Phi)
        B_ = np.matmul(PW.transpose(0, 2, 1), Jn)
        coef = np.stack([_solve_spd(A_, B_[:, :, j]) for j in range(Jn.shape[2])], axis=2)
        Jo = Jn - np.matmul(Phi, coef)
    else:
        Jo = J[:, :, opt]
    JW = Jo * w[..., None]
    return np.matmul(JW.transpose(0, 2, 1), Jo), np.einsum("rnk,rn->rk", JW, ra), w


def lm(
    model,
    theta0,
    Y,
    W,
    *,
    space="linear",
    loss="l2",
    delta=1.0,
    mode="full",
    fixed=None,
    max_iter=200,
    ftol=1e-12,
    xtol=1e-10,
):
    """Batched projected Levenberg-Marquardt (IRLS for Huber).

    mode="varpro" (linear space only): iterate on the nonlinear parameters; the
    linear ones are re-solved in closed form at every trial point; the Jacobian is
    Kaufman's projected Jacobian -(I - P_W) dm/dphi.
    mode="full": iterate on all free parameters (``fixed`` mask excluded).

    Per replicate: a step is accepted if it does not increase the objective (then
    lambda /= 3), else lambda *= 4. Converged: an accepted step with relative
    decrease <= ftol or relative step <= xtol, or lambda > 1e12 (no descent
    direction left: stationary). Failed: non-finite values or max_iter reached.

    Returns theta (R, k), objective (R,), converged (R,) bool, iterations (R,).
    """
    theta = np.array(theta0, float, copy=True)
    R, k = theta.shape
    W = np.broadcast_to(W, (R, model.n))
    Y = np.broadcast_to(Y, (R, model.n))
    with np.errstate(all="ignore"):
        Z = np.log(Y) if space == "log" else Y
    fixed = np.zeros(k, bool) if fixed is None else np.asarray(fixed, bool)
    varpro, opt = _free_parameters(model, k, fixed, mode, space)
    lo, hi = model.lower[opt], model.upper[opt]
    theta = np.clip(theta, model.lower, model.upper)
    if varpro:
        theta, fcur = _relinearise(model, theta, Z, W)
    else:
        fcur = np.array(model.f(theta))
    obj = _finite_objective(fcur, Z, W, space, loss, delta)
    lam = np.full(R, 1e-3)
    done = ~np.isfinite(obj)
    conv = np.zeros(R, bool)
    nit = np.zeros(R, int)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        if act.size == R:  # views, no copies, while every replicate is active
            th, Wa, Za, f = theta.copy(), W, Z, fcur
        else:
            th = theta[act]
            Wa, Za = W[act], Z[act]
            f = fcur[act]
        A, g, w = _normal_equations(
            model, th, f, Za, Wa, space=space, loss=loss, delta=delta, varpro=varpro, opt=opt
        )
        step, singular = _damped_step(A, g, lam[act], act, done, conv)
        new = th.copy()
        new[:, opt] = np.clip(th[:, opt] + step, lo, hi)
        if varpro:
            new, f_new = _relinearise(model, new, Za, w)
        else:
            f_new = np.array(model.f(new))
        o_new = _finite_objective(f_new, Za, Wa, space, loss, delta)
        _lm_accept(
            act,
            new,
            o_new,
            np.linalg.norm(new[:, opt] - th[:, opt], axis=1),
            np.linalg.norm(th[:, opt], axis=1) + xtol,
            singular,
            state=(theta, obj, lam, conv, done, nit),
            ftol=ftol,
            xtol=xtol,
            carry=((fcur, f_new),),
        )
    conv &= np.isfinite(obj) & np.all(np.isfinite(theta), axis=1)
    return theta, obj, conv, nit
