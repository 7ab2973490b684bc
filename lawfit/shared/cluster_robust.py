"""With ``cluster=``: pairwise differences, the cluster-robust Wald test and its notes.

The F test treats cells as independent; cells that share a target sequence are not. Here
are the CR2 differences of each shared parameter between pairs of groups, the Wald test of
the same restrictions with the CR2 covariance (:mod:`lawfit.cluster_wald`), the check that
every group spans 2+ clusters, and the note that puts its p-value beside the F test's.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import block_diag

from lawfit.cluster_wald import cluster_wald_test
from lawfit.robust import linearised


def _differences(fits: dict, shared: Sequence[str], cluster: str, level: float) -> pd.DataFrame:
    """Cluster-robust difference of each shared parameter between every pair of groups."""
    ci = {
        g: f.conf_int("cluster", cluster=cluster, confidence_level=level) for g, f in fits.items()
    }
    rows = []
    for a, b in itertools.combinations(sorted(fits), 2):
        for p in shared:
            sa, sb = ci[a].loc[p, "se"], ci[b].loc[p, "se"]
            va, vb = sa**2, sb**2
            se = math.sqrt(va + vb)
            dof = (va + vb) ** 2 / (va**2 / ci[a].loc[p, "dof"] + vb**2 / ci[b].loc[p, "dof"])
            est = fits[a].params[p] - fits[b].params[p]
            half = stats.t.ppf(0.5 + level / 2, dof) * se
            rows.append(
                {
                    "group_1": a,
                    "group_2": b,
                    "parameter": p,
                    "estimate": est,
                    "se": se,
                    "dof": dof,
                    "low": est - half,
                    "high": est + half,
                    "pvalue": float(2 * stats.t.sf(abs(est) / se, dof)),
                }
            )
    return pd.DataFrame(rows)


def _robust_test(fits: dict, shared: Sequence[str], cluster: str) -> pd.DataFrame:
    """Test with the CR2 covariance that every group has the first group's ``shared``.

    The separate laws are one model with a block-diagonal Jacobian (each group its own
    parameters); clusters (target sequences) cut across the groups, so the CR2 covariance
    sees that cells of one sequence err together under every group's law.
    """
    labels = sorted(fits)
    parts = [linearised(fits[g]) for g in labels]
    J = block_diag(*[j for j, _ in parts])
    e = np.concatenate([r for _, r in parts])
    values = np.concatenate([fits[g].points[cluster].to_numpy() for g in labels])
    groups = np.unique(values, return_inverse=True)[1].ravel()
    names = [(g, p) for g in labels for p in fits[g].param_names]
    C = np.zeros((len(shared) * (len(labels) - 1), len(names)))
    for row, (p, g) in enumerate(itertools.product(shared, labels[1:])):
        C[row, names.index((g, p))], C[row, names.index((labels[0], p))] = 1.0, -1.0
    theta = np.concatenate([fits[g].theta for g in labels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a confined cluster: said per fit
        test = cluster_wald_test(J, e, groups, theta, C)
    if test.reason and len(labels) > 2:
        pair = len(shared) + 1
        test = test._replace(reason=f"{test.reason} (two groups at a time need {pair})")
    return pd.DataFrame([{**test._asdict(), "cluster": cluster}])


def _usable_cluster(fits: dict, cluster: str | None, noun: str, notes: list) -> str | None:
    """``cluster`` when every fitted group spans 2+ of its values, else None (noted)."""
    if not cluster:
        seqs = {v for f in fits.values() if "data_seed" in f.points for v in f.points["data_seed"]}
        if len(seqs) > 1:
            notes.append(
                f"the cells come from {len(seqs)} target sequences (data_seed), and the F "
                "test treats them as independent, which rejects shared exponents too often "
                "when sequences differ; pass cluster='data_seed' (--cluster data_seed) for "
                "cluster-robust intervals and a cluster-robust test"
            )
        return None
    single = sorted(
        g for g, f in fits.items() if cluster in f.points and f.points[cluster].nunique() < 2
    )
    if not single:
        return cluster
    notes.append(
        f"cluster-robust intervals and test skipped: {noun}(s) {single} have all their "
        f"cells on one {cluster}; the intervals are the fits' own, and the F test treats "
        "cells as independent (its p-value may be much too small)"
    )
    return None


def _robust_note(row: pd.Series, comparison: pd.DataFrame, cluster: str) -> str:
    """Say what the cluster-robust test found, beside the F test's independent-cell p."""
    f_p = comparison["f_pvalue"].iloc[-1] if len(comparison) else math.nan
    if row["reason"]:
        return (
            f"cluster-robust Wald test over {cluster} not run: {row['reason']}; the F test "
            f"(p = {f_p:.3g}) treats cells of one {cluster} as independent, so its p-value "
            "may be much too small"
        )
    return (
        f"cluster-robust Wald test over {cluster} (CR2, HTZ F reference; Pustejovsky & "
        f"Tipton 2018): F({row['df1']:.0f}, {row['df2']:.2f}) = {row['f_statistic']:.3g}, "
        f"p = {row['pvalue']:.3g} over {row['n_clusters']} clusters (the verdict's test); "
        f"the F likelihood-ratio test, which treats the cells as independent, gives "
        f"p = {f_p:.3g}"
    )
