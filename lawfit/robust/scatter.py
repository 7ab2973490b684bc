"""The cells' scatter around the law: between and within target sequences, and each one's offset.

:func:`variance_components` (a one-way random-effects ANOVA of the log residuals) and
:func:`sequence_offsets` (each sequence's mean log residual, raw and shrunken), with
:func:`_log_residuals` and :func:`_shrinkage`, which the prediction interval of a new
cell uses too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError
from lawfit.robust.linearisation import _clusters


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
