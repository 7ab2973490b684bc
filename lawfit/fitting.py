"""``lawfit.fit``: fit a scaling law with honest uncertainty.

Pipeline for one group of cells:

1. :func:`lawfit.data.as_frame` validates the data (one place for the contract);
   cells with ``status != "ok"`` and, by default, already-memorized cells
   (``loss_after <= ln 2``, as the paper) are excluded and recorded.
2. Global search by variable projection: for every point of a grid of the nonlinear
   parameters (e.g. alpha, beta) the linear ones (C, b) are solved in closed form by
   weighted least squares; the best 8 grid points start a batched
   Levenberg-Marquardt polish of the reduced problem (Kaufman's projected Jacobian);
   the best optimum is then polished on the full parameter vector (bounds, Huber,
   log space). No user starting values are needed; ``p0`` only adds a start.
3. Uncertainty: Wald (asymptotic covariance; sandwich for Huber), profile
   likelihood (F-based cutoff), and optionally a batched bootstrap (case, cluster,
   residual or wild) with percentile or BCa intervals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit import _varpro as vp
from lawfit.bootstrap import RESAMPLING_UNITS, BootstrapResult, fit_batch, fit_resampled
from lawfit.data import (
    LN2,
    REPLICATE_DIMS,
    as_frame,
    check_identifiable,
    exclusion_flags,
    memorized_mask,
)
from lawfit.errors import LawfitError
from lawfit.forms import Form, get_form, resolve_inputs
from lawfit.profile import profile_curves
from lawfit.result import FitResult, FitResults, Flag
from lawfit.space import breusch_pagan_pvalue, choose_space

__all__ = ["fit", "LN2"]

_GRID_BUDGET = 2500
_N_STARTS = 8


def fit(
    data,
    form: str | Form = "power_law",
    *,
    capacity: str = "rank",
    by: str | Sequence[str] | None = None,
    exclude: str | float | None = "memorized",
    loss: str = "l2",
    huber_delta: float | None = None,
    space: str = "auto",
    bootstrap: int = 0,
    unit: str = "cell",
    ci_method: str = "percentile",
    confidence_level: float = 0.95,
    profile: bool = True,
    p0: Mapping[str, float] | None = None,
    fixed: Mapping[str, float] | None = None,
    rng: int | np.random.Generator | None = None,
) -> FitResult | FitResults:
    """Fit a law such as ΔL = C·r^α·ℓ^(−β) + b to a sweep.

    Parameters
    ----------
    data : xarray.Dataset or pandas.DataFrame
        Contract dataset (``loss_reduction`` over ``rank`` and ``length``; other dims
        optional) or a tidy frame with those columns. See :func:`lawfit.data.as_frame`.
    form : str or Form
        Registered form name (see :func:`lawfit.available_forms`) or a :class:`Form`.
    capacity : {"rank", "n_params"}
        Capacity input: LoRA rank or the adapter's trainable parameter count.
    by : str or sequence of str, optional
        Grouping dims (e.g. ``["model", "task"]``): one independent fit per group,
        returned as :class:`FitResults`.
    exclude : {"memorized"} or float or None
        ``"memorized"`` drops cells with ``loss_after <= ln 2`` (already memorized:
        ΔL saturates there; the paper's rule); a float uses that threshold; ``None``
        keeps all usable cells. Dropped cells are in ``result.exclusions``.
    loss : {"l2", "huber"}
        Least squares or Huber M-estimation.
    huber_delta : float, optional
        Huber threshold in units of the fitted response (fit space). Default
        ``1.345 * MAD-scale`` of the least-squares residuals (95 % efficiency under
        Gaussian errors; Huber 1981), recorded in the result.
    space : {"auto", "linear", "log"}
        Fit ΔL or log ΔL (multiplicative errors; needs ΔL > 0 in every cell).
        ``"auto"`` (default) fits in log space when the linear-space residuals are
        heteroscedastic and the log transform removes that (Breusch-Pagan test; the rule
        is :func:`lawfit.space.choose_space`), else in linear space; the choice and its
        test results are in ``result.meta["space_choice"]`` and ``result.space``. With
        multiplicative noise the log-space fit is the efficient one and its intervals
        are calibrated; the linear-space case-bootstrap interval is then ~3 points short
        (docs/lawfit.md, "Calibration"). ``space="linear"`` keeps the earlier default
        (always ΔL). Decided per group with ``by``.
    bootstrap : int
        Number of bootstrap replicates (0: none).
    unit : {"cell", "seed", "data_seed", "run", "residual", "wild"} or column name
        Resampling unit: cells (case bootstrap); whole clusters (cluster bootstrap):
        adapter initialisations (``"seed"``), target sequences (``"data_seed"``: the
        interval then generalises over the content memorized), runs (``"run"``: one
        (seed, data_seed) pair; a ``run`` column if present, else ``seed``) or any column;
        model residuals; or wild (Rademacher) residuals.
    ci_method : {"percentile", "bca"}
        Bootstrap interval type; BCa runs a (batched) jackknife for the acceleration.
    confidence_level : float
        Default level of intervals.
    profile : bool
        Compute profile-likelihood curves (cheap; enables ``conf_int("profile")``).
    p0 : mapping, optional
        Extra starting values (added to the grid starts; the result does not depend
        on them unless they find a better optimum).
    fixed : mapping, optional
        Parameters held at given values, e.g. ``{"b": 0.0}``: the law is fitted in
        the remaining parameters (see :meth:`lawfit.Form.with_fixed`); the result's
        ``form.fixed`` records them.
    rng : int or numpy.random.Generator, optional
        Seed for the bootstrap.

    Returns
    -------
    FitResult or FitResults
        One frozen result, or a mapping group -> result when ``by`` is given.

    Raises
    ------
    LawfitError
        For any invalid input (messages say what was expected and how to fix it).

    Examples
    --------
    >>> import lawfit
    >>> from lawfit.testing import synthetic_dataset
    >>> ds = synthetic_dataset(alpha=0.6, beta=0.5, rng=0)
    >>> res = lawfit.fit(ds, exclude=None)
    >>> round(res.params["alpha"], 1), round(res.params["beta"], 1)
    (0.6, 0.5)
    """
    form_obj = get_form(form)
    if fixed:
        form_obj = form_obj.with_fixed(fixed)
    inputs = resolve_inputs(form_obj, capacity)
    V.one_of(loss, "loss", ("l2", "huber"))
    V.one_of(space, "space", ("auto", "linear", "log"))
    V.one_of(ci_method, "ci_method", ("percentile", "bca"))
    confidence_level = V.confidence_level(confidence_level)
    bootstrap = V.bootstrap_count(bootstrap)
    huber_delta = None if huber_delta is None else V.positive_number(huber_delta, "huber_delta")
    exclude = V.exclude_rule(exclude)
    rng = V.random_generator(rng)
    if p0 is not None:
        bad = [p for p in p0 if p not in form_obj.params]
        if bad:
            raise LawfitError(
                f"p0 names unknown parameter(s) {bad}; the form's parameters are {form_obj.params}."
            )
    if bootstrap and unit not in RESAMPLING_UNITS and not isinstance(unit, str):
        raise LawfitError(f"unit must be one of {RESAMPLING_UNITS} or a column name; got {unit!r}.")
    response = form_obj.response
    frame, excl = as_frame(data, variables=(response,), by=by, capacity=capacity, inputs=inputs)
    if bootstrap and unit not in ("cell", "residual", "wild"):
        col = unit
        if unit == "run" and "run" not in frame.columns:
            col = "seed"
        if col not in frame.columns:
            raise LawfitError(
                f"unit={unit!r} needs a {col!r} dim/column to cluster on; the data has "
                f"{list(frame.columns)}. Use unit='cell' or add the column."
            )
    V.bootstrap_chunk(
        bootstrap, len(frame), len(form_obj.params), chunkable=unit not in ("residual", "wild")
    )
    opts = dict(
        form=form_obj,
        inputs=inputs,
        response=response,
        exclude=exclude,
        loss=loss,
        huber_delta=huber_delta,
        space=space,
        bootstrap=int(bootstrap),
        unit=unit,
        ci_method=ci_method,
        level=float(confidence_level),
        profile=profile,
        p0=p0,
        capacity=capacity,
    )
    by_list = [by] if isinstance(by, str) else list(by or [])
    if not by_list:
        return _fit_one(frame, excl, rng=rng, group=None, **opts)
    results = {}
    for key, sub in frame.groupby(by_list, sort=True, dropna=False):
        key = tuple(key) if isinstance(key, tuple) else (key,)
        mask = np.ones(len(excl), bool)
        for b, kv in zip(by_list, key, strict=True):
            if b in excl.columns:
                mask &= (excl[b] == kv).to_numpy()
        group = dict(zip(by_list, key, strict=True))
        where = f"group {group}: "
        results[key] = _fit_one(
            sub.reset_index(drop=True),
            excl.loc[mask].reset_index(drop=True),
            rng=rng,
            group=group,
            where=where,
            **opts,
        )
    return FitResults(results, by=tuple(by_list))


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


def _exclude_memorized(frame, exclude, where):
    if exclude is None:
        return frame, pd.DataFrame(columns=list(frame.columns) + ["reason"])
    thr = LN2 if exclude == "memorized" else float(exclude)
    if "loss_after" not in frame.columns:
        warnings.warn(
            f"{where}exclude={exclude!r} needs 'loss_after', which the data lacks; "
            "no memorized cells were excluded. Pass exclude=None to silence this.",
            UserWarning,
            stacklevel=4,
        )
        return frame, pd.DataFrame(columns=list(frame.columns) + ["reason"])
    mem = memorized_mask(frame, thr, where)
    dropped = frame.loc[mem].copy()
    dropped["reason"] = f"memorized (loss_after <= {thr:.4g})"
    kept = frame.loc[~mem].reset_index(drop=True)
    if kept.shape[0] == 0:
        raise LawfitError(
            f"{where}every cell is memorized (loss_after <= {thr:.4g}); nothing "
            "left to fit. Use exclude=None to fit all cells, or add harder cells."
        )
    return kept, dropped


def _combined_exclusions(excl: pd.DataFrame, mem: pd.DataFrame) -> pd.DataFrame:
    """Stack the cells excluded by validation and as memorized (an empty frame if none).

    Parameters
    ----------
    excl : pandas.DataFrame
        Cells :func:`lawfit.data.as_frame` excluded.
    mem : pandas.DataFrame
        Cells excluded as memorized.

    Returns
    -------
    pandas.DataFrame
        All exclusions with their ``reason``.
    """
    if not (len(excl) or len(mem)):
        return pd.DataFrame(columns=["reason"])
    return pd.concat([e for e in (excl, mem) if len(e)], ignore_index=True)


def _check_log_response(
    frame: pd.DataFrame, y: np.ndarray, inputs: Sequence[str], response: str, space: str, where: str
) -> None:
    """Raise when ``space="log"`` meets a response <= 0.

    Parameters
    ----------
    frame : pandas.DataFrame
        Cells to fit.
    y : numpy.ndarray
        Their response.
    inputs : sequence of str
        Input columns (shown in the examples).
    response : str
        Response column.
    space : str
        Fit space asked for.
    where : str
        Prefix naming the group, for the message.

    Raises
    ------
    LawfitError
        A cell with response <= 0 in log space, with up to three examples.
    """
    if space == "log" and np.any(y <= 0):
        bad = frame.loc[y <= 0, list(inputs) + [response]].head(3).to_dict("records")
        raise LawfitError(
            f"{where}space='log' needs {response} > 0 in every cell; {int(np.sum(y <= 0))} "
            f"cell(s) are <= 0, e.g. {bad}. Use space='linear' or drop those cells."
        )


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


def _multiple_optima(global_fit: tuple, cov: np.ndarray, theta: np.ndarray) -> bool:
    """Say whether starts reaching the best objective disagree on the parameters.

    Parameters
    ----------
    global_fit : tuple
        :func:`_global_fit` output (estimate, objective, convergence, and the same per
        start).
    cov : numpy.ndarray
        Covariance of the final estimate (its standard errors set the tolerance).
    theta : numpy.ndarray
        Final estimate.

    Returns
    -------
    bool
        True when two starts with an equal objective are further apart than a tenth of
        a standard error: the parameters are not identified.
    """
    _, obj_l2, _, starts_th, starts_obj, starts_conv = global_fit
    good = starts_conv & np.isfinite(starts_obj)
    if good.sum() <= 1:
        return False
    close = starts_obj[good] <= obj_l2 * (1 + 1e-6) + 1e-300
    spread = np.ptp(starts_th[good][close], axis=0) if close.sum() > 1 else np.zeros(theta.size)
    se0 = np.sqrt(np.clip(np.diag(cov), 0, None))
    return bool(np.any(spread > np.maximum(0.1 * se0, 1e-6 * (1 + np.abs(theta)))))


def _spread_grows(resid: np.ndarray, fitted: np.ndarray, space: str) -> Flag | None:
    """Flag residuals whose size grows with the fitted value (Spearman rho > 0.3, p < 0.01).

    Parameters
    ----------
    resid : numpy.ndarray
        Residuals on the fit scale.
    fitted : numpy.ndarray
        Fitted values (linear scale).
    space : {"linear", "log"}
        Fit space.

    Returns
    -------
    Flag or None
        ``heteroscedastic`` when the rank correlation is clear.
    """
    from scipy.stats import spearmanr

    rho_, pval = spearmanr(np.abs(resid), vp.transform(fitted, space))
    if np.isfinite(rho_) and rho_ > 0.3 and pval < 0.01:
        return Flag(
            "heteroscedastic",
            f"residual spread grows with the fitted value "
            f"(Spearman {rho_:.2f}): heteroscedastic; Wald/profile intervals "
            "assume constant variance, prefer space='log' or the bootstrap",
        )
    return None


def _diagnostic_flags(
    exclusions: pd.DataFrame,
    conv: bool,
    global_fit: tuple,
    cov: np.ndarray,
    theta: np.ndarray,
    resid: np.ndarray,
    fitted: np.ndarray,
    space: str,
    loss: str,
    space_choice,
    n: int,
) -> list[Flag]:
    """Collect the flags of a fit: exclusions, convergence, identification, spread, space.

    Parameters
    ----------
    exclusions : pandas.DataFrame
        Excluded cells with reasons.
    conv : bool
        Whether the final optimizer converged.
    global_fit : tuple
        :func:`_global_fit` output, for the multiple-optima check.
    cov : numpy.ndarray
        Covariance of the estimate.
    theta : numpy.ndarray
        Final estimate.
    resid, fitted : numpy.ndarray
        Residuals (fit scale) and fitted values.
    space : {"linear", "log"}
        Fit space.
    loss : {"l2", "huber"}
        Loss (the spread check is for least squares only).
    space_choice : lawfit.space.SpaceChoice or None
        Decision of ``space="auto"``.
    n : int
        Number of cells fitted (the spread check needs 12).

    Returns
    -------
    list of Flag
        In a fixed order.
    """
    flags = exclusion_flags(exclusions)
    if not conv:
        flags.append(
            Flag("not_converged", "optimizer did not converge: estimates may be unreliable")
        )
    # distinct optima among the starts (start independence diagnostic)
    if _multiple_optima(global_fit, cov, theta):
        flags.append(
            Flag(
                "multiple_optima", "multiple optima with equal objective: parameters not identified"
            )
        )
    if n >= 12 and loss == "l2":
        spread = _spread_grows(resid, fitted, space)
        if spread is not None:
            flags.append(spread)
    if space_choice is not None and space_choice.space == "log":
        flags.append(Flag("log_space", f"space='auto': {space_choice.reason}", "info"))
    return flags


def _profiles(
    model: vp.Model,
    theta: np.ndarray,
    cov: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    space: str,
    loss: str,
    delta: float,
    dof: int,
    obj: float,
    flags: list[Flag],
) -> dict:
    """Profile-likelihood curves of every parameter; flag a profile that finds a lower optimum.

    Parameters
    ----------
    model : lawfit._varpro.Model
        The form on the data.
    theta, cov : numpy.ndarray
        Estimate and covariance.
    Y, W : numpy.ndarray
        Response and weights, one row.
    space, loss : str
        Fit space and loss.
    delta : float
        Huber threshold.
    dof : int
        Residual degrees of freedom.
    obj : float
        Objective at the estimate.
    flags : list of Flag
        Appended with ``profile_lower_objective`` where it applies.

    Returns
    -------
    dict
        Parameter name → profile curve, as :func:`lawfit.profile.profile_curves`.
    """
    prof = profile_curves(
        model, theta, cov, Y, W, space=space, loss=loss, delta=delta, dof=dof, s_hat=obj
    )
    for name, c in prof.items():
        if np.any(c["converged"] & (c["F"] < -0.01)):
            flags.append(
                Flag(
                    "profile_lower_objective",
                    f"profile of {name} found a lower objective: fit may be local",
                )
            )
    return prof


def _fitted_points(
    frame: pd.DataFrame,
    inputs: Sequence[str],
    response: str,
    fitted: np.ndarray,
    resid: np.ndarray,
    unit: str = "cell",
) -> pd.DataFrame:
    """Return the fitted cells: inputs, replicate ids, response, fitted value, residual.

    The replicate ids (``seed``, ``data_seed``, ``run``, a custom bootstrap ``unit``
    column) stay, so that intervals clustered on them can be computed afterwards.

    Parameters
    ----------
    frame : pandas.DataFrame
        Cells fitted.
    inputs : sequence of str
        Input columns.
    response : str
        Response column.
    fitted, resid : numpy.ndarray
        Fitted values and residuals.
    unit : str
        The bootstrap's resampling unit (kept when it names a column).

    Returns
    -------
    pandas.DataFrame
        The ``points`` of the FitResult.
    """
    ids = [*REPLICATE_DIMS, "run", unit]
    keep_cols = [
        c
        for c in dict.fromkeys([*inputs, *ids, response, "loss_after"])
        if isinstance(c, str) and c in frame.columns
    ]
    points = frame[keep_cols].copy()
    points["fitted"] = fitted
    points["residual"] = resid
    return points


def _fit_meta(exclude, conv: bool, space_choice) -> dict:
    """Return the provenance of a fit: time, exclusion rule, convergence, version, space.

    Parameters
    ----------
    exclude : {"memorized"} or float or None
        Exclusion rule.
    conv : bool
        Whether the optimizer converged.
    space_choice : lawfit.space.SpaceChoice or None
        Decision of ``space="auto"``.

    Returns
    -------
    dict
        The ``meta`` of the FitResult.
    """
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "exclude": exclude if exclude is None or isinstance(exclude, str) else float(exclude),
        "converged": bool(conv),
        "lawfit_version": _version(),
        "space_choice": None if space_choice is None else space_choice.to_dict(),
    }


def _fit_one(
    frame,
    excl,
    *,
    rng,
    group,
    form,
    inputs,
    response,
    exclude,
    loss,
    huber_delta,
    space,
    bootstrap,
    unit,
    ci_method,
    level,
    profile,
    p0,
    capacity,
    where="",
):
    frame, mem = _exclude_memorized(frame, exclude, where)
    exclusions = _combined_exclusions(excl, mem)
    k = len(form.params)
    check_identifiable(frame, inputs, k, where, form=form)
    n = frame.shape[0]
    y = frame[response].to_numpy(float)
    _check_log_response(frame, y, inputs, response, space, where)
    X = [frame[c].to_numpy(float) for c in inputs]
    lo, hi = form.lower_upper()
    model = vp.Model(form.func, form.jac, X, form.params, form.linear, lo, hi)
    Y = y[None, :]
    W = np.ones((1, n))
    p0_vec = None
    if p0 is not None:
        p0_vec = np.array([[p0.get(p, 0.0) for p in form.params]], float)
    delta = 1.0
    space, space_choice, global_fit = _fit_in_space(model, y, p0_vec, form, space)
    theta, obj, conv = global_fit[:3]
    if loss == "huber":
        delta = _huber_scale(model, theta, y, space, huber_delta)
        th, ob, cv, _ = vp.lm(
            model, theta[None], Y, W, space=space, loss="huber", delta=delta, mode="full"
        )
        theta, obj, conv = th[0], float(ob[0]), bool(cv[0])
    dof = n - k
    cov, s2, resid = vp.covariance(model, theta[None], Y, W, space, loss, delta, dof)
    fitted = np.array(model.f(theta[None]))[0]
    flags = _diagnostic_flags(
        exclusions, conv, global_fit, cov, theta, resid, fitted, space, loss, space_choice, n
    )
    gof = _goodness(y, fitted, resid, obj, n, k, space, loss)
    prof = (
        _profiles(model, theta, cov, Y, W, space, loss, delta, dof, obj, flags) if profile else None
    )
    boot = None
    if bootstrap:
        boot = _bootstrap(
            model,
            frame,
            theta,
            cov,
            y,
            fitted,
            resid,
            space,
            loss,
            delta,
            unit,
            bootstrap,
            ci_method,
            rng,
        )
    return FitResult(
        form=form,
        param_names=tuple(form.params),
        inputs=tuple(inputs),
        response=response,
        capacity=capacity,
        theta=theta,
        cov_matrix=cov,
        sigma2=s2,
        space=space,
        loss=loss,
        huber_delta=float(delta) if loss == "huber" else None,
        points=_fitted_points(frame, inputs, response, fitted, resid, unit),
        exclusions=exclusions,
        gof=gof,
        flags_base=tuple(flags),
        bounds={p: tuple(form.bounds[p]) for p in form.params},
        boot=boot,
        profile_data=prof,
        ci_method=ci_method,
        confidence_level=level,
        group=group,
        linear_names=tuple(form.linear),
        meta=_fit_meta(exclude, conv, space_choice),
    )


def _version():
    try:
        from importlib.metadata import version

        return version("lawfit")
    except Exception:  # noqa: BLE001
        return "unknown"


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
            col = "seed" if unit == "run" and "run" not in frame.columns else unit
            _, clusters = np.unique(frame[col].to_numpy(), return_inverse=True)
            n_clusters = int(clusters.max()) + 1
            if n_clusters < 2:
                raise LawfitError(
                    f"unit={unit!r}: only {n_clusters} cluster in the data; the "
                    "cluster bootstrap needs at least 2 (better 10+). Use "
                    "unit='cell' or 'residual'."
                )
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
