"""Numpy-only numerical core: batched variable projection and Levenberg-Marquardt.

Everything here works on *batches*: ``theta`` has shape ``(R, k)`` (R parameter
vectors), responses ``Y`` and weights ``W`` have shape ``(R, n)`` (or broadcast from
``(1, n)``). One point estimate is the batch R=1; a bootstrap is R replicates on the
same design with multinomial weights (case/cluster) or new responses (residual).

Objective per replicate (``z`` = y, or log y when ``space="log"``)::

    S(theta) = sum_i W_i * rho(z_i - m_i(theta))

with rho(r) = r**2 (l2) or the Huber function scaled to match r**2 inside
|r| <= delta: rho(r) = 2*delta*|r| - delta**2 outside.
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-300


class Model:
    """A form bound to a design (inputs of one data set)."""

    def __init__(self, func, jac, X, names, lin, lower, upper):
        self.func = func
        self.jac = jac
        self.X = tuple(np.asarray(x, float) for x in X)
        self.n = self.X[0].shape[0]
        self.names = tuple(names)
        self.k = len(self.names)
        self.lin = np.array([self.names.index(p) for p in lin], int)
        self.nl = np.array([j for j in range(self.k) if j not in set(self.lin.tolist())], int)
        self.lower = np.asarray(lower, float)
        self.upper = np.asarray(upper, float)

    def with_inputs(self, X):
        """Same form and bounds on another design."""
        return Model(
            self.func,
            self.jac,
            X,
            self.names,
            [self.names[j] for j in self.lin],
            self.lower,
            self.upper,
        )

    def _kw(self, theta):
        return {nm: theta[:, j : j + 1] for j, nm in enumerate(self.names)}

    def f(self, theta):
        theta = np.atleast_2d(theta)
        with np.errstate(all="ignore"):
            out = self.func(*self.X, **self._kw(theta))
        return np.broadcast_to(np.asarray(out, float), (theta.shape[0], self.n))

    def jacobian(self, theta, f0=None):
        """d m / d theta, shape (R, n, k)."""
        theta = np.atleast_2d(theta)
        R = theta.shape[0]
        J = np.empty((R, self.n, self.k))
        if self.jac is not None:
            with np.errstate(all="ignore"):
                cols = self.jac(*self.X, **self._kw(theta))
            for j, c in enumerate(cols):
                J[:, :, j] = np.broadcast_to(np.asarray(c, float), (R, self.n))
            return J
        if f0 is None:
            f0 = self.f(theta)
        for j in range(self.k):
            th = theta.copy()
            if j in self.lin:
                h = np.ones(R)
            else:
                h = 1.5e-8 * np.maximum(np.abs(theta[:, j]), 1.0)
                flip = theta[:, j] + h > self.upper[j]
                h = np.where(flip, -h, h)
            th[:, j] += h
            J[:, :, j] = (self.f(th) - f0) / h[:, None]
        return J

    def basis(self, theta):
        """Offset g0 (R, n) and linear basis Phi (R, n, p) at theta's nonlinear part."""
        theta = np.atleast_2d(theta)
        R = theta.shape[0]
        p = self.lin.size
        if p == 0:
            return self.f(theta), np.empty((R, self.n, 0))
        th = theta.copy()
        th[:, self.lin] = 0.0
        if self.jac is not None:
            g0 = np.array(self.f(th))
            Phi = self.jacobian(th)[:, :, self.lin]
            return g0, Phi
        g0 = np.array(self.f(th))
        Phi = np.empty((R, self.n, p))
        for a, j in enumerate(self.lin):
            t = th.copy()
            t[:, j] = 1.0
            Phi[:, :, a] = self.f(t) - g0
        return g0, Phi


def _solve_small(A, b):
    """Closed-form batched solve for p = 1 or 2 (Cramer's rule); NaN where singular."""
    p = A.shape[-1]
    with np.errstate(all="ignore"):
        if p == 1:
            x = b / A[..., 0]
        else:
            a, c, d, e = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
            det = a * e - c * d
            scale = np.abs(a * e) + np.abs(c * d)
            det = np.where(np.abs(det) > 1e-13 * scale, det, np.nan)
            x = np.stack(
                [(e * b[..., 0] - c * b[..., 1]) / det, (a * b[..., 1] - d * b[..., 0]) / det],
                axis=-1,
            )
    return x


def _solve_spd(A, b):
    """Solve batched (R,p,p) x = (R,p) with diagonal scaling; NaN where singular."""
    if A.shape[-1] <= 2:
        return _solve_small(A, b)
    d = np.sqrt(np.abs(np.einsum("...ii->...i", A)))
    d = np.where(d > 0, d, 1.0)
    As = A / (d[..., :, None] * d[..., None, :])
    bs = b / d
    p = A.shape[-1]
    As = As + 1e-13 * np.eye(p)
    out = np.full(b.shape, np.nan)
    try:
        out = np.linalg.solve(As, bs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        for idx in np.ndindex(A.shape[:-2]):
            try:
                out[idx] = np.linalg.solve(As[idx], bs[idx])
            except np.linalg.LinAlgError:
                out[idx] = np.nan
    return out / d


def solve_linear(Phi, z, W):
    """Weighted LS of z on the columns of Phi, batched. Returns c (R, p)."""
    if Phi.shape[-1] == 0:
        return np.empty(Phi.shape[:1] + (0,))
    PW = Phi * W[..., None]
    A = np.matmul(PW.transpose(0, 2, 1), Phi)
    b = np.einsum("rnk,rn->rk", PW, z)
    return _solve_spd(A, b)


def rho(r, loss, delta):
    if loss == "l2":
        return r * r
    a = np.abs(r)
    return np.where(a <= delta, r * r, 2.0 * delta * a - delta * delta)


def irls_weights(r, loss, delta):
    if loss == "l2":
        return np.ones_like(r)
    a = np.abs(r)
    return np.where(a <= delta, 1.0, delta / np.maximum(a, _TINY))


def transform(f, space):
    if space == "log":
        with np.errstate(all="ignore"):
            return np.where(f > 0, np.log(np.where(f > 0, f, 1.0)), np.nan)
    return f


def objective(model, theta, Z, W, space, loss, delta):
    m = transform(model.f(theta), space)
    r = Z - m
    s = np.sum(W * rho(r, loss, delta), axis=1)
    return np.where(np.isfinite(s), s, np.inf), r


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


def make_grid(ranges, n_per):
    axes = [np.linspace(lo, hi, n_per) for lo, hi in ranges]
    if not axes:
        return np.empty((1, 0))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _damped_step(
    A: np.ndarray,
    g: np.ndarray,
    lam: np.ndarray,
    act: np.ndarray,
    done: np.ndarray,
    conv: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt step of the active replicates, damped relative to the diagonal.

    Parameters
    ----------
    A : numpy.ndarray, shape (a, p, p)
        Normal matrices of the active replicates.
    g : numpy.ndarray, shape (a, p)
        Their gradients (``Jᵀ W r``).
    lam : numpy.ndarray, shape (a,)
        Their damping.
    act : numpy.ndarray of int
        Indices of the active replicates among all.
    done, conv : numpy.ndarray of bool
        State over all replicates; a replicate with no usable step is marked done and
        not converged, in place.

    Returns
    -------
    step : numpy.ndarray, shape (a, p)
        The steps (0 where singular).
    singular : numpy.ndarray of bool, shape (a,)
        Replicates whose damped system had no finite solution.
    """
    diag = np.einsum("rii->ri", A)
    diag = np.where(diag > 0, diag, 1e-12)
    step = _solve_spd(A + lam[:, None, None] * diag[:, :, None] * np.eye(A.shape[1]), g)
    singular = ~np.all(np.isfinite(step), axis=1)
    if singular.any():  # no usable step: a failed fit, never a silent "convergence"
        done[act[singular]] = True
        conv[act[singular]] = False
        step = np.where(np.isfinite(step), step, 0.0)
    return step, singular


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


def collapse(X, Y, W):
    """Merge points with identical inputs (exact for least squares).

    sum_i W_i (y_i - f(x_i))^2 = sum_u W_u (ybar_u - f(x_u))^2 + const, with
    W_u = sum_{i in u} W_i and ybar_u the W-weighted mean of y in u. The sums over
    replicates are matrix products (R x n) @ (n x U).

    Returns (X_u, Ybar (R, U), W_u (R, U)) or None if nothing merges.
    """
    keys = np.stack([np.asarray(x, float) for x in X], axis=1)
    order = np.lexsort(keys.T[::-1])
    ks = keys[order]
    new = np.ones(ks.shape[0], bool)
    new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    starts = np.flatnonzero(new)
    if starts.size == keys.shape[0]:
        return None
    uniq = ks[starts]
    W = np.asarray(W, float)
    Y = np.broadcast_to(Y, W.shape)
    Wo = W[:, order]
    Wu = np.add.reduceat(Wo, starts, axis=1)
    WYu = np.add.reduceat(Wo * Y[:, order], starts, axis=1)
    with np.errstate(all="ignore"):
        Yu = np.where(Wu > 0, WYu / np.where(Wu > 0, Wu, 1.0), 0.0)
    return tuple(uniq[:, j] for j in range(uniq.shape[1])), Yu, Wu


def covariance(model, theta, Y, W, space, loss, delta, dof):
    """Asymptotic covariance at theta (1, k) and sigma^2 (fit space).

    l2: s^2 (J' W J)^-1 with s^2 = S / dof. huber: sandwich A^-1 B A^-1 with
    A = J' W psi'(r) J, B = J' W psi(r)^2 J, scaled by n / dof.
    """
    f = np.array(model.f(theta))
    J = model.jacobian(theta, f)[0]
    if space == "log":
        J = J / f[0][:, None]
    with np.errstate(all="ignore"):
        Z = np.log(Y) if space == "log" else Y
    r = (np.broadcast_to(Z, f.shape) - transform(f, space))[0]
    w = np.broadcast_to(W, f.shape)[0]
    if loss == "l2":
        s2 = float(np.sum(w * r * r) / dof)
        A = (J * w[:, None]).T @ J
        cov = s2 * np.linalg.pinv(A)
    else:
        inside = np.abs(r) <= delta
        psi = np.clip(r, -delta, delta)
        A = (J * (w * inside)[:, None]).T @ J
        B = (J * (w * psi * psi)[:, None]).T @ J
        Ai = np.linalg.pinv(A)
        n = float(np.sum(w))
        cov = Ai @ B @ Ai * n / dof
        s2 = float(np.sum(w * r * r) / dof)
    return cov, s2, r


def _lm_accept(act, new, o_new, step_norm, scale, singular, *, state, ftol, xtol, carry=()):
    """Accept or reject one batched Levenberg-Marquardt trial step, in place.

    ``state`` is ``(theta, obj, lam, conv, done, nit)`` over all replicates; ``act`` indexes
    the active ones, whose trial parameters ``new`` have objective ``o_new``. ``carry`` pairs
    (array, trial values) of extra per-replicate state kept where the step is accepted.
    Damping falls by 3 on acceptance and rises by 4 on rejection; a replicate converges on a
    small accepted step, or when no descent direction is left (the damping explodes or a
    rejected step changes the objective only at rounding level); non-finite parameters fail.
    """
    theta, obj, lam, conv, done, nit = state
    o_old = obj[act]
    ok = np.isfinite(o_new) & (o_new <= o_old) & np.all(np.isfinite(new), axis=1)
    small_f = (o_old - o_new) <= ftol * np.maximum(o_old, _TINY)
    small_x = step_norm <= xtol * scale
    nit[act] += 1
    acc = act[ok]
    theta[acc] = new[ok]
    obj[acc] = o_new[ok]
    for array, trial in carry:
        array[acc] = trial[ok]
    lam[acc] = np.maximum(lam[acc] / 3.0, 1e-12)
    rej = act[~ok]
    lam[rej] = lam[rej] * 4.0
    fin = ok & (small_f | small_x) & ~singular
    conv[act[fin]] = True
    done[act[fin]] = True
    flat = (~ok) & np.isfinite(o_new) & (np.abs(o_new - o_old) <= ftol * np.maximum(o_old, _TINY))
    stuck = (((~ok) & (lam[act] > 1e12)) | flat) & ~singular
    conv[act[stuck]] = True
    done[act[stuck]] = True
    bad = ~np.all(np.isfinite(theta[act]), axis=1)
    done[act[bad]] = True
    conv[act[bad]] = False
