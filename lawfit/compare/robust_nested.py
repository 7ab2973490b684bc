"""Cluster-robust counterparts of the nested likelihood-ratio tests of :func:`lawfit.compare`.

The likelihood-ratio test of a nested pair (``ratio`` inside ``power_law``: β = α) treats
the cells as independent. Cells of one target sequence share its errors, and then that
test rejects a true restriction far more often than its level. Every valid nested pair of
:data:`lawfit.forms_extra.NESTED` restricts the general form's parameters linearly (b = 0,
β = α, or both), so the same restriction can be tested on the general fit alone with the
cluster-robust covariance: the CR2 Wald test with the HTZ F reference of
:func:`lawfit.cluster_wald.cluster_wald_test`, which holds its level with a few clusters.
For one restriction it is the square of :func:`lawfit.robust.contrast_test`'s t with
``cluster=``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit.cluster_wald import cluster_wald_test
from lawfit.errors import LawfitError
from lawfit.robust import _clusters, linearised

__all__ = ["ROBUST_COLUMNS", "restriction_matrix", "with_cluster_robust_tests"]

#: Columns the cluster-robust test adds to ``ComparisonResult.lr_tests``: the HTZ F statistic,
#: its denominator dof (the numerator's is ``df``), p-value, and why it did not run ("" if it did)
ROBUST_COLUMNS = ("robust_f", "robust_df2", "robust_pvalue", "robust_reason")

_EQUATION = re.compile(r"^\s*(\w+)\s*=\s*(\w+)\s*$")


def restriction_matrix(restriction: str, names: Sequence[str]) -> np.ndarray:
    """Return the rows C of a restriction such as ``"beta = alpha, b = 0"`` (Cθ = 0).

    Parameters
    ----------
    restriction : str
        Comma-separated equations, each ``name = 0`` or ``name = other_name``.
    names : sequence of str
        The general form's parameter names, in the order of its θ.

    Returns
    -------
    numpy.ndarray
        ``(q, k)``: ``e_name`` for ``name = 0``, ``e_name − e_other`` for ``name = other``.

    Raises
    ------
    LawfitError
        An equation of another shape, or a name the form does not have.
    """
    names = list(names)
    rows = []
    for part in restriction.split(","):
        match = _EQUATION.match(part)
        sides = match.groups() if match else ()
        bad = [s for s in sides if s != "0" and s not in names]
        if not match or bad or sides[0] == "0":
            raise LawfitError(
                f"expected a restriction of the parameters {names} written as 'name = 0' or "
                f"'name = other_name', comma-separated; got {part.strip()!r} in "
                f"{restriction!r}. Fix the entry of lawfit.forms_extra.NESTED."
            )
        row = np.zeros(len(names))
        row[names.index(sides[0])] = 1.0
        if sides[1] != "0":
            row[names.index(sides[1])] -= 1.0
        rows.append(row)
    return np.array(rows)


def with_cluster_robust_tests(lr: pd.DataFrame, fits: dict, cluster: str) -> pd.DataFrame:
    """Return ``lr`` with the cluster-robust Wald test of each pair's restriction.

    Parameters
    ----------
    lr : pandas.DataFrame
        The likelihood-ratio table of :func:`lawfit.compare` (``restricted, general,
        restriction, df, statistic, pvalue, valid``).
    fits : dict
        Form name → its :class:`lawfit.result.FitResult` (the general forms are read).
    cluster : str
        Column of the fitted cells whose values are the clusters (``"data_seed"``).

    Returns
    -------
    pandas.DataFrame
        A copy with :data:`ROBUST_COLUMNS`; NaN and a reason where a test cannot run (a
        restriction whose parameter is not identified under the null, or fewer clusters
        than restrictions + 1).
    """
    out = lr.copy()
    tests = [_robust_row(row, fits[row["general"]], cluster) for _, row in lr.iterrows()]
    for j, name in enumerate(ROBUST_COLUMNS):
        out[name] = [t[j] for t in tests]
    return out


def _robust_row(row: pd.Series, general, cluster: str) -> tuple[float, float, float, str]:
    """(F, denominator dof, p-value, reason) of one nested pair's restriction."""
    if not row["valid"]:
        return math.nan, math.nan, math.nan, "not identified under the null"
    if general.points[cluster].nunique() < 2:
        return math.nan, math.nan, math.nan, f"the fitted cells lie on one {cluster}"
    C = restriction_matrix(row["restriction"], general.param_names)
    J, e = linearised(general)
    test = cluster_wald_test(J, e, _clusters(general, cluster), general.theta, C)
    return test.f_statistic, test.df2, test.pvalue, test.reason
