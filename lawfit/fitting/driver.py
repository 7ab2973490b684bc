"""The public :func:`fit` and the fit of one group of cells.

:func:`fit` checks the options (:mod:`~lawfit.fitting.options`), reads the data, splits
it into groups (:func:`_split_groups`) and fits every group with :func:`_fit_one`, which
runs the pipeline of :mod:`lawfit.fitting` (exclusions, global search, Huber polish,
covariance, diagnostics, profiles, bootstrap) and builds the
:class:`~lawfit.result.FitResult` with its provenance (:func:`_fit_meta`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit import _varpro as vp
from lawfit.data import as_frame, check_identifiable
from lawfit.fitting.diagnostics import _diagnostic_flags, _fitted_points, _profiles
from lawfit.fitting.exclusions import (
    _check_log_response,
    _combined_exclusions,
    _exclude_memorized,
)
from lawfit.fitting.optimisation import _fit_in_space, _goodness, _huber_scale
from lawfit.fitting.options import _check_cluster_unit, _checked_options
from lawfit.fitting.resampling import _bootstrap
from lawfit.forms import Form
from lawfit.result import FitResult, FitResults


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
    opts, rng = _checked_options(
        form,
        capacity=capacity,
        exclude=exclude,
        loss=loss,
        huber_delta=huber_delta,
        space=space,
        bootstrap=bootstrap,
        unit=unit,
        ci_method=ci_method,
        confidence_level=confidence_level,
        profile=profile,
        p0=p0,
        fixed=fixed,
        rng=rng,
    )
    frame, excl = as_frame(
        data, variables=(opts["response"],), by=by, capacity=capacity, inputs=opts["inputs"]
    )
    if opts["bootstrap"]:
        _check_cluster_unit(frame, unit)
    chunkable = unit not in ("residual", "wild")
    V.bootstrap_chunk(opts["bootstrap"], len(frame), len(opts["form"].params), chunkable=chunkable)
    by_list = [by] if isinstance(by, str) else list(by or [])
    if not by_list:
        return _fit_one(frame, excl, rng=rng, group=None, **opts)
    # _fit_one is called here, as for one group, so that the warnings it raises
    # (stacklevel=4) still point at the caller of fit()
    results = {}
    for key, cells, cell_excl, group in _split_groups(frame, excl, by_list):
        results[key] = _fit_one(
            cells, cell_excl, rng=rng, group=group, where=f"group {group}: ", **opts
        )
    return FitResults(results, by=tuple(by_list))


def _split_groups(
    frame: pd.DataFrame, excl: pd.DataFrame, by_list: list[str]
) -> Iterator[tuple[tuple, pd.DataFrame, pd.DataFrame, dict]]:
    """Yield the cells and the exclusions of every group, in sorted group order.

    Parameters
    ----------
    frame : pandas.DataFrame
        Cells to fit, with the grouping columns.
    excl : pandas.DataFrame
        Cells :func:`lawfit.data.as_frame` excluded (filtered on the grouping columns
        it has).
    by_list : list of str
        Grouping columns.

    Yields
    ------
    key : tuple
        The group's values, in the order of ``by_list``.
    cells, exclusions : pandas.DataFrame
        The group's cells and exclusions, with a fresh index.
    group : dict
        Grouping column → value.
    """
    for key, sub in frame.groupby(by_list, sort=True, dropna=False):
        key = tuple(key) if isinstance(key, tuple) else (key,)
        mask = np.ones(len(excl), bool)
        for b, kv in zip(by_list, key, strict=True):
            if b in excl.columns:
                mask &= (excl[b] == kv).to_numpy()
        group = dict(zip(by_list, key, strict=True))
        yield key, sub.reset_index(drop=True), excl.loc[mask].reset_index(drop=True), group


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


def _start(p0, form):
    """Return the user's starting values as one row over the form's parameters (or None)."""
    if p0 is None:
        return None
    return np.array([[p0.get(p, 0.0) for p in form.params]], float)


def _with_loss(model, global_fit, y, space, loss, huber_delta):
    """Refine the least-squares fit under ``loss``; return ``(theta, obj, conv, delta)``.

    ``delta`` is the Huber scale (1.0, unused, for least squares).
    """
    theta, obj, conv = global_fit[:3]
    if loss != "huber":
        return theta, obj, conv, 1.0
    delta = _huber_scale(model, theta, y, space, huber_delta)
    th, ob, cv, _ = vp.lm(
        model,
        theta[None],
        y[None, :],
        np.ones((1, y.size)),
        space=space,
        loss="huber",
        delta=delta,
        mode="full",
    )
    return th[0], float(ob[0]), bool(cv[0]), delta


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
    space, space_choice, global_fit = _fit_in_space(model, y, _start(p0, form), form, space)
    theta, obj, conv, delta = _with_loss(model, global_fit, y, space, loss, huber_delta)
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
