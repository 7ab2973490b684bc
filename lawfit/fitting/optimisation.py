"""The optimisation: global search by variable projection, the fit space, Huber, goodness.

:func:`_global_fit` searches a grid of the nonlinear parameters (the linear ones solved in
closed form), polishes the best starts by Levenberg-Marquardt and the best optimum on the
full parameter vector; :func:`_fit_in_space` runs it in the space asked for, or decides
the space (``"auto"``); :func:`_huber_scale` sets the Huber threshold and
:func:`_goodness` the goodness of fit of the optimum.
"""

from __future__ import annotations

import math

import numpy as np

from lawfit import _varpro as vp
from lawfit.errors import LawfitError
from lawfit.space import breusch_pagan_pvalue, choose_space

_GRID_BUDGET = 2500
_N_STARTS = 8


def _global_fit(model, Y, W, space, loss, delta, p0_vec, form):
    """Grid + batched polish; returns best theta (k,), all starts' optima."""
    full_model, Y0, W0 = model, Y, W
    # least squares only sees per-design-point means: merge replicated cells (exact)
    with np.errstate(all="ignore"):
        col = vp.collapse(model.X, np.log(Y) if space == "log" else Y, W)
    if col is not None:
        Xu, Yu, W = col
        Y = np.exp(Yu) if space == "log" else Yu
        model = model.with_inputs(Xu)
    knl = model.nl.size
    n_per = max(3, int(round(_GRID_BUDGET ** (1.0 / knl)))) if knl else 1
    n_per = min(n_per, 401)
    ranges = [form.search_range(form.params[j]) for j in model.nl]
    grid = vp.make_grid(ranges, n_per)
    Wg = W / Y**2 if space == "log" else W
    sse, lin = vp.grid_sse(model, grid, Y, Wg)
    order = np.argsort(sse[0])
    order = order[np.isfinite(sse[0, order])][:_N_STARTS]
    if order.size == 0:
        raise LawfitError(
            "the law could not be evaluated on any grid point (non-finite "
            "values); check that the inputs are positive and the form's bounds."
        )
    starts = np.zeros((order.size, model.k))
    starts[:, model.nl] = grid[order]
    starts[:, model.lin] = lin[0, order]
    if p0_vec is not None:
        starts = np.vstack([starts, p0_vec])
    starts = np.clip(starts, model.lower, model.upper)
    varpro = model.lin.size > 0 and space == "linear" and knl > 0
    th, obj, conv, _ = vp.lm(
        model,
        starts,
        Y,
        W,
        space="linear" if varpro else space,
        loss="l2" if varpro else loss,
        delta=delta,
        mode="varpro" if varpro else "full",
    )
    if varpro and (space != "linear" or loss != "l2"):
        th, obj, conv, _ = vp.lm(model, th, Y, W, space=space, loss=loss, delta=delta, mode="full")
    best = int(np.argmin(np.where(conv, obj, np.inf))) if conv.any() else int(np.argmin(obj))
    # final full-parameter polish from the best optimum (bounds on every parameter)
    thf, objf, convf, _ = vp.lm(
        model, th[best : best + 1], Y, W, space=space, loss=loss, delta=delta, mode="full"
    )
    # objectives on the full (uncollapsed) data: collapsing drops a constant
    Z0 = np.log(Y0) if space == "log" else Y0
    obj_full, _ = vp.objective(full_model, thf, Z0, W0, space, loss, delta)
    shift = float(obj_full[0] - objf[0])
    return thf[0], float(obj_full[0]), bool(convf[0] or conv[best]), th, obj + shift, conv


def _fit_in_space(model, y, p0_vec, form, space):
    """Least-squares global fit in ``space``; ``"auto"`` decides it by :func:`choose_space`.

    Returns
    -------
    space : {"linear", "log"}
        The space fitted.
    choice : lawfit.space.SpaceChoice or None
        The decision and its test results (None unless ``space="auto"``).
    fit : tuple
        :func:`_global_fit` output in that space.
    """
    Y, W = y[None, :], np.ones((1, y.size))
    if space != "auto":
        return space, None, _global_fit(model, Y, W, space, "l2", 1.0, p0_vec, form)
    fits = {"linear": _global_fit(model, Y, W, "linear", "l2", 1.0, p0_vec, form)}

    def pvalue(sp):
        fitted = np.array(model.f(fits[sp][0][None]))[0]
        with np.errstate(all="ignore"):
            resid = vp.transform(y, sp) - vp.transform(fitted, sp)
        return breusch_pagan_pvalue(resid, fitted)

    def pvalue_log():
        fits["log"] = _global_fit(model, Y, W, "log", "l2", 1.0, p0_vec, form)
        return pvalue("log")

    choice = choose_space(pvalue("linear"), pvalue_log, positive=bool(np.all(y > 0)))
    return choice.space, choice, fits[choice.space]


def _huber_scale(
    model: vp.Model, theta: np.ndarray, y: np.ndarray, space: str, huber_delta: float | None
) -> float:
    """Return the Huber threshold: given, or 1.345 robust SDs of the least-squares residuals.

    Parameters
    ----------
    model : lawfit._varpro.Model
        The form on the data.
    theta : numpy.ndarray
        Least-squares estimate.
    y : numpy.ndarray
        Response.
    space : {"linear", "log"}
        Fit space of the residuals.
    huber_delta : float or None
        Threshold set by the caller.

    Returns
    -------
    float
        The threshold, on the fit scale.
    """
    if huber_delta is not None:
        return float(huber_delta)
    m = vp.transform(np.array(model.f(theta[None]))[0], space)
    z = np.log(y) if space == "log" else y
    r = z - m
    mad = 1.4826 * np.median(np.abs(r - np.median(r)))
    return 1.345 * mad if mad > 0 else 1.345 * np.std(r) + 1e-300


def _goodness(y, fitted, resid_fit, obj, n, k, space, loss):
    r_lin = y - fitted
    sst = float(np.sum((y - y.mean()) ** 2))
    sse_lin = float(np.sum(r_lin**2))
    sse_fit = float(np.sum(resid_fit**2))
    s2_ml = sse_fit / n
    loglik = -0.5 * n * (math.log(2 * math.pi * s2_ml) + 1.0) if s2_ml > 0 else math.inf
    if space == "log":
        loglik -= float(np.sum(np.log(y)))  # Jacobian: likelihood of ΔL, comparable across spaces
    kk = k + 1  # + error variance
    aic = 2 * kk - 2 * loglik
    aicc = aic + (2 * kk * (kk + 1) / (n - kk - 1) if n - kk - 1 > 0 else math.inf)
    bic = kk * math.log(n) - 2 * loglik
    with np.errstate(all="ignore"):
        mape = float(np.mean(np.abs(r_lin / y))) * 100.0
    return {
        "n_obs": int(n),
        "dof": int(n - k),
        "r2": 1 - sse_lin / sst if sst > 0 else math.nan,
        "rmse": math.sqrt(sse_lin / n),
        "mape": mape,
        "loglik": loglik,
        "aic": aic,
        "aicc": aicc,
        "bic": bic,
        "sse": sse_lin,
        "objective": float(obj),
    }
