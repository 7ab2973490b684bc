"""Cluster-robust intervals of the law at given inputs: its mean, and one new cell.

:func:`law_mean_interval` (the mean law over target sequences, the CR2 delta method) and
:func:`law_prediction_interval` (one new cell, on a new target sequence or a known one:
the law's CR2 variance plus the scatter of :mod:`lawfit.robust.scatter`, with
Welch-Satterthwaite dof), both built on :func:`_law_intervals`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.bootstrap import MIN_BOOTSTRAP_CLUSTERS
from lawfit.errors import LawfitError
from lawfit.protocol import Flag
from lawfit.robust.parameter_intervals import _log_delta_parts
from lawfit.robust.scatter import _log_residuals, _shrinkage, variance_components


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
    offset: float


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
