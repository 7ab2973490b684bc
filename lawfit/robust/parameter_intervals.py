"""Cluster-robust intervals of a fit's parameters, of their contrasts and of functions of them.

:func:`cluster_interval` (θ̂ ± t_ν · se per parameter), :func:`contrast_test` (a linear
combination such as α − β), :func:`log_delta_interval` (a positive function g(θ) by the
delta method on log g) and :func:`preferred_interval` (the interval a table should quote
for a fit: its own, else cluster-robust, else Wald).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.errors import LawfitError
from lawfit.robust.covariance import (
    _bell_mccaffrey_dof,
    _cr2_parts,
    _sandwich,
    cluster_covariance,
)
from lawfit.robust.linearisation import _clusters, linearised


def cluster_interval(result, cluster: str, level: float) -> pd.DataFrame:
    """Return θ̂ ± t_ν · se with the CR2 standard errors and Bell-McCaffrey dof ν.

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
        Index: parameter names; columns ``low``, ``high``, ``se``, ``dof``; ``attrs``
        hold ``n_clusters`` and ``cluster``.
    """
    cov, dof, G = cluster_covariance(result, cluster)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    t = stats.t.ppf(0.5 + level / 2, dof)
    out = pd.DataFrame(
        {"low": result.theta - t * se, "high": result.theta + t * se, "se": se, "dof": dof},
        index=pd.Index(result.param_names, name="param"),
    )
    out.attrs.update({"n_clusters": G, "cluster": cluster})
    return out


def contrast_test(
    result,
    weights: dict[str, float],
    *,
    cluster: str | None = None,
    value: float = 0.0,
    level: float = 0.95,
) -> pd.Series:
    """Test a linear combination of a fit's parameters, e.g. α − β = 0 (is ℓ's exponent α's?).

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit.
    weights : dict
        Parameter name → weight of the combination c·θ, e.g. ``{"alpha": 1, "beta": -1}``.
    cluster : str, optional
        Column defining the clusters (``"data_seed"``): CR2 standard error with the
        Bell-McCaffrey dof of this combination, calibrated down to 3 clusters. Default:
        the fit's asymptotic covariance with its residual dof (independent cells).
    value : float
        The combination's value under the null hypothesis.
    level : float
        Level of the interval.

    Returns
    -------
    pandas.Series
        ``estimate`` (c·θ), ``se``, ``dof``, ``low``, ``high``, ``t`` and two-sided
        ``pvalue`` against ``value``; its name says the combination and the method.

    Raises
    ------
    LawfitError
        A weight names no parameter of the fit, or every weight is 0.
    """
    names = list(result.param_names)
    bad = [p for p in weights if p not in names]
    if bad or not any(weights.values()):
        raise LawfitError(
            f"weights must give nonzero weights to parameters of the fit {names}; got "
            f"{weights}. Example: {{'alpha': 1, 'beta': -1}} tests alpha = beta."
        )
    c = np.array([float(weights.get(p, 0.0)) for p in names])
    if cluster is None:
        cov, dof, method = np.asarray(result.cov, float), float(result.gof["dof"]), "wald"
    else:
        J, e = linearised(result)
        parts = _cr2_parts(J, _clusters(result, cluster))
        cov = _sandwich(J, e, parts)
        dof = _bell_mccaffrey_dof(
            parts["resid_maker"], J, parts["bread"] @ c, parts["members"], parts["adjust"]
        )
        method = f"cluster-robust over {cluster} (CR2)"
    est = float(c @ result.theta)
    se = float(np.sqrt(max(c @ cov @ c, 0.0)))
    t = (est - value) / se if se > 0 else np.inf
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    label = " + ".join(f"{w:g}·{p}" for p, w in weights.items() if w).replace("+ -", "- ")
    return pd.Series(
        {
            "estimate": est,
            "se": se,
            "dof": dof,
            "low": est - half,
            "high": est + half,
            "t": t,
            "pvalue": float(2 * stats.t.sf(abs(t), dof)),
        },
        name=f"{label} (= {value:g} under the null; {method})",
    )


def preferred_interval(result) -> tuple[pd.DataFrame, str | None, str | None]:
    """Return the interval a table should quote for a fit, and why when it is not its own.

    A fit's own interval (``result.to_dataframe()``) unless its bootstrap gave none (flag
    ``bootstrap_degenerate``) or clusters over fewer than 10 units (``few_clusters``, too
    narrow): then the cluster-robust one (CR2 over the bootstrap's clusters, calibrated
    down to 3), else Wald.

    Parameters
    ----------
    result : lawfit.FitResult
        A fit.

    Returns
    -------
    (table, method, reason) : (pandas.DataFrame, str or None, str or None)
        ``low``/``high`` by parameter; ``method`` and ``reason`` None for the fit's own
        interval, else the interval used (``"cluster-robust CI"`` or ``"Wald CI"``) and
        why (e.g. ``"a bootstrap over 3 clusters is too narrow"``).
    """
    own = result.to_dataframe()
    if result.boot is not None and result.boot.degenerate:
        reason = "the bootstrap has one estimate"
    elif result.few_clusters:
        reason = f"a bootstrap over {result.boot.n_clusters} clusters is too narrow"
    else:
        return own[["low", "high"]], None, None
    try:
        return result.conf_int("cluster")[["low", "high"]], "cluster-robust CI", reason
    except LawfitError:
        return result.conf_int("wald")[["low", "high"]], "Wald CI", reason


def log_delta_interval(
    result, values_at, *, cluster: str, level: float = 0.95, rel_step: float = 1e-6
) -> tuple[float, float, float]:
    """Cluster-robust interval of a positive function g(θ) of a fit's parameters.

    The delta method on log g: its gradient (central differences) is the contrast whose
    CR2 standard error and Bell-McCaffrey dof :func:`contrast_test` gives, and the
    interval g·exp(±t·se) stays positive. A derived quantity such as the rank a target
    needs gets the calibration the exponents have with few target sequences.

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit.
    values_at : callable
        Parameter rows, shape (n, k), to g on each row, shape (n,).
    cluster : str
        Column of ``result.points`` defining the clusters (``"data_seed"``).
    level : float
        Level of the interval.
    rel_step : float
        Step of the central differences, relative to ``max(|θ_i|, 1)``.

    Returns
    -------
    (low, high, dof) : tuple of float
        NaN where g or a neighbour of θ is not finite and positive (an unreachable
        target), or where g does not depend on θ.
    """
    parts = _log_delta_parts(result, values_at, cluster=cluster, level=level, rel_step=rel_step)
    if parts is None:
        return np.nan, np.nan, np.nan
    log_g, se, dof = parts
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return float(np.exp(log_g - half)), float(np.exp(log_g + half)), float(dof)


def _log_delta_parts(
    result, values_at, *, cluster: str, level: float, rel_step: float = 1e-6
) -> tuple[float, float, float] | None:
    """Return log g(θ̂), its CR2 standard error and Bell-McCaffrey dof; None if undefined."""
    theta = np.asarray(result.theta, float)
    step = rel_step * np.maximum(np.abs(theta), 1.0)
    rows = np.vstack([theta[None, :], theta + np.diag(step), theta - np.diag(step)])
    with np.errstate(all="ignore"):
        g = np.log(np.asarray(values_at(rows), float))
    k = theta.size
    if not np.all(np.isfinite(g)):
        return None
    grad = (g[1 : k + 1] - g[k + 1 :]) / (2 * step)
    if not np.any(grad):
        return None
    weights = dict(zip(result.param_names, grad, strict=True))
    c = contrast_test(result, weights, cluster=cluster, level=level)
    return float(g[0]), float(c["se"]), float(c["dof"])
