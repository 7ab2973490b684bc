"""Cluster-robust intervals of a fitted law: CR2 sandwich, Bell-McCaffrey degrees of freedom.

Cells that share a target sequence (or an initialisation seed) share errors: a sequence
that is easier to store raises every cell of it. The case bootstrap then treats
correlated cells as independent and its intervals are too narrow, and the cluster
bootstrap, which resamples whole sequences, is too narrow as well with few of them (71 %
coverage of a 95 % interval at 3 clusters; docs/lawfit.md, calibration) and cannot refit
a resample that loses the only cell at some design point.

This interval keeps every cell. The fit is linearised at its estimate θ̂ (Jacobian J in
the fit's space, residuals e, hat matrix H = J(JᵀJ)⁻¹Jᵀ), and

    Cov(θ̂) = (JᵀJ)⁻¹ [Σ_g J_gᵀ A_g e_g e_gᵀ A_g J_g] (JᵀJ)⁻¹,   A_g = (I − H_gg)^(−1/2),

summing over the G clusters g (the bias-reduced CR2 estimator of Bell & McCaffrey 2002,
Survey Methodology 28:169). The interval is θ̂ ± t_ν · se with, per parameter, the
Bell-McCaffrey degrees of freedom ν = (Σλ)² / Σλ² over the eigenvalues λ of GᵀG, where
column g of G is (I − H)_{·g} A_g J_g (JᵀJ)⁻¹ eⱼ (Imbens & Kolesár 2016, Review of
Economics and Statistics 98:701). With equal clusters ν = G − 1; when one cluster holds
most of the information on a parameter (a sweep whose long targets exist on one
sequence only), ν falls towards 1 and the interval widens accordingly, where the usual
CR1 sandwich with t(G − 1) under-covers (81 % for β in such a design). Coverage on
synthetic sweeps: docs/lawfit.md ("Few clusters"), ``benchmarks/calibration.py``.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.bootstrap import MIN_BOOTSTRAP_CLUSTERS
from lawfit.design import form_jacobian
from lawfit.errors import LawfitError
from lawfit.protocol import Flag

__all__ = [
    "bell_mccaffrey_dof",
    "cluster_covariance",
    "cluster_interval",
    "cr2_covariance",
    "law_mean_interval",
    "law_prediction_interval",
    "linearised",
    "sequence_offsets",
    "variance_components",
]


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


def law_mean_interval(result, *, cluster: str, level: float = 0.95, **inputs) -> pd.DataFrame:
    """Cluster-robust interval of the fitted law's mean at given inputs.

    :func:`log_delta_interval` with g(θ) = the law at each point: the interval of the mean
    ΔL over target sequences (not of one new cell, which adds the cell-to-cell spread),
    calibrated down to 3 clusters where a cluster bootstrap (and so ``result.predict``'s
    interval) is too narrow.

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit of a positive law.
    cluster : str
        Column of ``result.points`` defining the clusters (``"data_seed"``).
    level : float
        Level of the interval.
    **inputs
        Scalars or arrays per input name, as for ``result.predict`` (e.g. ``rank=4,
        length=512``).

    Returns
    -------
    pandas.DataFrame
        The inputs, ``mean``, ``low``, ``high``, ``dof`` (Bell-McCaffrey) and
        ``extrapolated``, one row per point.
    """
    out = _law_intervals(result, cluster, level, inputs, lambda se, nu: _t_half(se**2, nu, level))
    out = out.drop(columns="predicted")  # the mean law is its own centre
    out.attrs.update({"interval": f"cluster-robust over {cluster} (mean law)", "level": level})
    return out


def _law_intervals(
    result, cluster: str, level: float, inputs: dict, half, anchor: _Anchor | None = None
) -> pd.DataFrame:
    """Return the law at ``inputs`` with an interval centre ± h at each point.

    The centre is log f̂(x), or with an ``anchor`` (cells X_g, shrinkage k, m their mean log
    response) log f̂(x) − k·mean log f̂(X_g) + k·m: the law moved by the
    cluster's shrunken offset k·(m − mean log f̂(X_g)), whose error shared with the law at
    x (the law's level) cancels in the delta method. ``half(se, dof)`` turns the CR2
    standard error of the centre and its Bell-McCaffrey dof into the half-width h on the
    log scale and the dof it rests on; NaN where the law is not positive around θ̂.
    Column ``predicted`` is exp(centre).
    """
    out = result.predict(warn=False, **inputs).drop(columns=["low", "high"])
    X = [out[c].to_numpy(float) for c in result.inputs]
    centre, low, high, dof = (np.full(len(out), np.nan) for _ in range(4))

    def values_at(rows, i):
        law = result._eval(rows, [x[i : i + 1] for x in X])[:, 0]
        if anchor is None:
            return law
        return law / np.exp(anchor.k * np.log(result._eval(rows, anchor.inputs)).mean(axis=1))

    for i in range(len(out)):
        parts = _log_delta_parts(
            result, lambda rows, i=i: values_at(rows, i), cluster=cluster, level=level
        )
        if parts is None:
            continue
        log_g, se, nu = parts
        centre[i] = log_g + (0.0 if anchor is None else anchor.k * anchor.log_y)
        h, dof[i] = half(se, nu)
        low[i], high[i] = np.exp(centre[i] - h), np.exp(centre[i] + h)
    at = out.columns.get_loc("mean") + 1
    for name, col in (("dof", dof), ("high", high), ("low", low), ("predicted", np.exp(centre))):
        out.insert(at, name, col)
    return out


def variance_components(result, *, cluster: str) -> pd.Series:
    """Split the cells' scatter around the law into between- and within-cluster variance.

    One-way random-effects ANOVA (method of moments) on the log residuals
    e = log y − log f̂ of the fitted cells, grouped by ``cluster``: with G clusters of
    n_g cells, cluster means ē_g and n cells in all,

        MSB = Σ_g n_g (ē_g − ē)² / (G − 1),     MSW = Σ (e − ē_g)² / (n − k − G + 1),

    the k fitted parameters taking their degrees of freedom from the within part. Then
    σ²_within = MSW and σ²_between = max(0, (MSB − MSW) / n₀), n₀ = (n − Σn_g²/n) / (G − 1).
    σ_between is how much one target sequence is easier to store than another at every
    point; σ_within is the scatter of a cell around its sequence's law.

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit of a positive response.
    cluster : str
        Column of ``result.points`` defining the clusters (``"data_seed"``).

    Returns
    -------
    pandas.Series
        ``var_between``, ``var_within``, ``sd_between``, ``sd_within`` (log scale),
        ``ms_between``, ``ms_within``, ``df_between``, ``df_within``, ``n0``,
        ``n_clusters``.

    Raises
    ------
    LawfitError
        For a non-positive response or fitted value, or too few cells to leave the
        within-cluster part a degree of freedom.
    """
    groups = _clusters(result, cluster)
    e = _log_residuals(result)
    G, n, k = int(groups.max()) + 1, e.size, len(result.param_names)
    df_within = n - k - (G - 1)
    if df_within < 1:
        raise LawfitError(
            f"{n} cells in {G} {cluster} clusters with {k} fitted parameters leave no "
            "degree of freedom for the within-cluster scatter: collect more cells per "
            f"cluster (at least {k + G} in all)."
        )
    n_g = np.bincount(groups).astype(float)
    mean_g = np.bincount(groups, e) / n_g
    ms_between = float((n_g * (mean_g - e.mean()) ** 2).sum()) / (G - 1)
    ms_within = float(((e - mean_g[groups]) ** 2).sum()) / df_within
    n0 = (n - float((n_g**2).sum()) / n) / (G - 1)
    var_between = max(0.0, (ms_between - ms_within) / n0)
    return pd.Series(
        {
            "var_between": var_between,
            "var_within": ms_within,
            "sd_between": np.sqrt(var_between),
            "sd_within": np.sqrt(ms_within),
            "ms_between": ms_between,
            "ms_within": ms_within,
            "df_between": float(G - 1),
            "df_within": float(df_within),
            "n0": n0,
            "n_clusters": float(G),
        },
        name=f"variance of log {result.response} around the law, by {cluster}",
    )


def law_prediction_interval(
    result, *, cluster: str, level: float = 0.95, in_cluster=None, **inputs
) -> pd.DataFrame:
    """Cluster-robust prediction interval of one new cell, on a new target sequence or a known one.

    On the log scale a new cell is the law plus its sequence's offset plus its own
    scatter, so its variance is se²(log f̂) + σ²_between + σ²_within: the first from the
    CR2 delta method of :func:`law_mean_interval`, the others from
    :func:`variance_components`. The interval is log f̂ ± t_ν √V with ν the
    Welch-Satterthwaite degrees of freedom of that sum (σ²_between written as
    (MSB − MSW)/n₀, each mean square with its own dof). For a new sequence the law's CR2
    variance and the MSB term enter as one term on the smaller of their dof: both are
    read off the same few sequence effects, not independent as the formula assumes, and
    taken apart they let ν grow exactly when σ²_between comes out small (on the law
    sweep's own design, 4 sequences, the interval then covered 90 % of new cells when
    sequences differ by 10 %; joined, 93-97 % whether they differ by 0 or 10 %:
    ``benchmarks/design_calibration.py --predict``, docs/lawfit.md). The interval is
    widened to the mean law's where that is wider: when the law's CR2 dof are near 1 (one
    sequence alone informs the point) ν could make a new cell's interval narrower than
    the mean's. On synthetic sweeps of 3-10 sequences it covers 93-96 % at 95 %, where
    ``result.predict(interval="prediction")`` from a cluster bootstrap is too narrow
    (docs/lawfit.md, calibration).

    Parameters
    ----------
    result, cluster, level
        As for :func:`law_mean_interval`: the fit (least squares, a positive law), the
        column of ``result.points`` whose values are the target sequences, the level.
    in_cluster : optional
        A value of ``cluster`` in the fit (e.g. ``1`` for ``data_seed`` 1): predict a new
        cell of that sequence instead of a new sequence's. Its measured cells say how much
        easier it is: the centre moves by the shrunken offset k·ē_g (ē_g its cells' mean
        log residual, k = σ²_between / (σ²_between + σ²_within/n_g)) and σ²_between is
        replaced by what is left of it, σ²_between·(1 − k); the law's CR2 variance is
        that of the moved centre log f̂(x) − k·mean log f̂(X_g) + k·mean log y_g, whose
        level cancels. Slightly conservative (96-97.6 % at 95 % on synthetic sweeps of
        3-10 sequences), and wider than a new sequence's interval at points far from the
        sequence's cells (the law's shape in between is uncertain).
    **inputs
        Scalars or arrays per input name, as for ``result.predict``.

    Returns
    -------
    pandas.DataFrame
        The inputs, ``mean`` (the law), ``predicted`` (the centre: the law, times the
        cluster's offset with ``in_cluster``), ``low``, ``high``, ``dof`` and
        ``extrapolated``, one row per point; ``attrs`` hold ``sd_between``,
        ``sd_within`` and ``offset`` (the log shift, 0 for a new sequence).

    Raises
    ------
    LawfitError
        ``in_cluster`` is not a value of ``cluster`` among the fitted cells.
    """
    vc = variance_components(result, cluster=cluster)
    anchor, scatter = _cell_offset(result, cluster, vc, in_cluster)

    def half(se: float, nu: float) -> tuple[float, float]:
        mean = _t_half(se**2, nu, level)
        new = _t_half(*_satterthwaite(_joined(se**2, nu, scatter, anchor is None)), level)
        return max(new, mean, key=lambda h_dof: h_dof[0])  # it holds the mean law's interval

    out = _law_intervals(result, cluster, level, inputs, half, anchor=anchor)
    where = f"a new {cluster}" if in_cluster is None else f"{cluster} {in_cluster}"
    out.attrs.update(
        {
            "interval": f"cluster-robust over {cluster} (one new cell on {where})",
            "level": level,
            "sd_between": float(vc["sd_between"]),
            "sd_within": float(vc["sd_within"]),
            "offset": 0.0 if anchor is None else anchor.offset,
            "flags": _new_sequence_flags(vc, cluster, anchor is None),
        }
    )
    return out


def _new_sequence_flags(vc: pd.Series, cluster: str, new_sequence: bool) -> tuple:
    """Flag a new sequence's cell interval over fewer than 10 sequences (approximate)."""
    G = int(vc["n_clusters"])
    if not new_sequence or G >= MIN_BOOTSTRAP_CLUSTERS:
        return ()
    message = (
        f"one new cell on a new {cluster}, over only {G} {cluster} values: the spread "
        "between sequences is poorly known, and the interval's level is approximate (93-97 % "
        "at 95 % on the law sweep's design, 4 sequences, however much they differ; "
        f"docs/lawfit.md). For a {cluster} already measured, in_cluster= (--in-cluster) "
        "predicts from its own cells."
    )
    return (Flag("new_cell_few_clusters", message, severity="info"),)


class _Anchor(NamedTuple):
    """A known cluster's cells, which move a new cell's centre (:func:`_law_intervals`)."""

    inputs: list  # the cells' inputs, one array per input of the law
    k: float  # the shrinkage of the cluster's offset
    log_y: float  # the cells' mean log response
    offset: float  # the resulting log shift at θ̂: k · mean(log y − log f̂)


def _cell_offset(result, cluster: str, vc: pd.Series, member) -> tuple[_Anchor | None, list]:
    """Return the anchor of a cluster's new cell and its scatter's (variance, dof) terms.

    For ``member`` None (a new cluster) no anchor, and σ²_between + σ²_within; else
    ``member``'s cells as the anchor of :func:`_law_intervals` (their inputs, the shrinkage
    k and their mean log response) and σ²_within + σ²_between·(1 − k).
    """
    if member is None:
        return None, _scatter_terms(vc)
    values = result.points[cluster].to_numpy()
    mine = values == member
    if not mine.any():
        raise LawfitError(
            f"in_cluster={member!r} is not a {cluster} of the fitted cells; they have "
            f"{sorted(set(values.tolist()))}. Pass one of them, or None for a new {cluster}."
        )
    var_b, var_w = vc["var_between"], vc["var_within"]
    k = _shrinkage(vc, int(mine.sum()))
    terms = [(var_w, vc["df_within"])]
    if var_b > 0:
        terms.append((var_b * (1 - k), vc["df_between"]))
    points = result.points[mine]
    X_g = [points[c].to_numpy(float) for c in result.inputs]
    log_y = float(np.log(points[result.response].to_numpy(float)).mean())
    offset = k * float(_log_residuals(result)[mine].mean())
    return _Anchor(X_g, k, log_y, offset), terms


def _shrinkage(vc: pd.Series, n_cells: int) -> float:
    """Return the share k of a sequence's mean offset kept: σ²_b / (σ²_b + σ²_w / n_g)."""
    var_b = vc["var_between"]
    return float(var_b / (var_b + vc["var_within"] / n_cells)) if var_b > 0 else 0.0


def sequence_offsets(result, *, cluster: str) -> pd.DataFrame:
    """Return how far each target sequence sits above or below the law, raw and shrunken.

    Per value g of ``cluster``: its fitted cells' mean log residual ē_g (log y − log f̂),
    and the offset a new cell of that sequence is predicted with,
    k·ē_g with k = σ²_between / (σ²_between + σ²_within/n_g) from
    :func:`variance_components` (the BLUP of a random intercept; what
    :func:`law_prediction_interval` uses with ``in_cluster=g``). A sequence far off with
    several cells is one the law's mean does not describe; one cell alone is mostly its
    own scatter, which k discounts.

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit of a positive response.
    cluster : str
        Column of ``result.points`` whose values are the target sequences.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cluster``: ``cells`` (fitted cells), ``mean_log_residual`` (ē_g),
        ``percent`` (100·(exp ē_g − 1)), ``k``, ``offset`` (k·ē_g) and
        ``offset_percent`` (100·(exp(k·ē_g) − 1)).
    """
    vc = variance_components(result, cluster=cluster)
    e = pd.Series(_log_residuals(result), index=result.points.index)
    by = e.groupby(result.points[cluster].to_numpy())
    out = pd.DataFrame({"cells": by.size(), "mean_log_residual": by.mean()})
    out.index.name = cluster
    out["percent"] = 100 * np.expm1(out["mean_log_residual"])
    out["k"] = [_shrinkage(vc, int(n)) for n in out["cells"]]
    out["offset"] = out["k"] * out["mean_log_residual"]
    out["offset_percent"] = 100 * np.expm1(out["offset"])
    return out


def _joined(law_var: float, law_dof: float, scatter: list, new_sequence: bool) -> list:
    """Return the (variance, dof) terms of a new cell's variance for Satterthwaite.

    ``scatter`` is :func:`_cell_offset`'s: for a new sequence, [between, within] terms when
    σ²_between > 0, else [within]. For a new sequence with σ²_between > 0 the law's CR2 variance
    and the between-sequence term are one term on min(their dof): both are read off the same few
    sequence effects, so they are not the independent estimates Satterthwaite's formula assumes
    (taken apart, the interval covered 89-94 % of new cells on the law sweep's design;
    docs/lawfit.md). Otherwise the law's term stands beside the scatter's.
    """
    if new_sequence and len(scatter) == 2:
        (between, df_between), within = scatter
        return [(law_var + between, min(law_dof, df_between)), within]
    return [(law_var, law_dof), *scatter]


def _scatter_terms(vc: pd.Series) -> list[tuple[float, float]]:
    """σ²_between + σ²_within as (variance, dof) terms of mean squares (Satterthwaite)."""
    if vc["var_between"] > 0:
        n0 = vc["n0"]
        return [
            (vc["ms_between"] / n0, vc["df_between"]),
            (vc["ms_within"] * (1 - 1 / n0), vc["df_within"]),
        ]
    return [(vc["ms_within"], vc["df_within"])]


def _t_half(variance: float, dof: float, level: float) -> tuple[float, float]:
    """Return (t_dof · √variance, dof): the half-width of a t interval and its dof."""
    return float(stats.t.ppf(0.5 + level / 2, dof) * np.sqrt(variance)), float(dof)


def _satterthwaite(terms: list[tuple[float, float]]) -> tuple[float, float]:
    """Return the sum of independent variance estimates and its Welch-Satterthwaite dof."""
    total = sum(v for v, _ in terms)
    return total, total**2 / sum(v**2 / d for v, d in terms if v > 0)


def _log_residuals(result) -> np.ndarray:
    """Return log y − log f̂ over the fitted cells; refuse a response the log cannot take."""
    points = result.points
    y = points[result.response].to_numpy(float)
    fitted = points["fitted"].to_numpy(float)
    if not (np.all(y > 0) and np.all(fitted > 0)):
        raise LawfitError(
            f"the scatter is measured on the log scale, but {int(np.sum(y <= 0))} cell(s) "
            f"have {result.response} <= 0 and {int(np.sum(fitted <= 0))} a fitted value "
            "<= 0: exclude them (exclude=...) or fit a positive form."
        )
    return np.log(y) - np.log(fitted)


def linearised(result) -> tuple[np.ndarray, np.ndarray]:
    """Return the Jacobian and residuals of a fit, both in its fitting space."""
    points = result.points
    theta = dict(zip(result.param_names, result.theta, strict=True))
    J = form_jacobian(result.form, points, theta)
    if result.space == "log":  # residuals are log(y) - log(f): d log f = df / f
        J = J / points["fitted"].to_numpy(float)[:, None]
    return J, points["residual"].to_numpy(float)


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
