"""The separate laws against the shared law: AICc, BIC and the likelihood-ratio test.

Gaussian likelihoods with one error variance common to all groups on the fit's scale; the
likelihood-ratio test in its χ² and F forms, and the flags on the comparison (a
heteroscedastic linear fit, a separate fit at a local optimum).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.compare import (
    _heteroscedasticity,
    akaike_weights,
    likelihood_ratio_test,
    pointwise_loglik,
)
from lawfit.protocol import Flag
from lawfit.space import HETEROSCEDASTIC_P


def _information_criteria(loglik: float, k: int, n: int) -> dict:
    """AICc and BIC of a Gaussian model with ``k`` parameters (error variance included)."""
    aicc = -2 * loglik + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    return {
        "k": k,
        "n_obs": n,
        "loglik": loglik,
        "aicc": aicc,
        "bic": -2 * loglik + k * math.log(n),
    }


def _loglik(points: pd.DataFrame, space: str) -> float:
    """Gaussian log-likelihood of fitted points with one error variance for all of them."""
    resid, y = points["residual"].to_numpy(float), points["loss_reduction"].to_numpy(float)
    return float(pointwise_loglik(resid, y, space).sum())


def _comparison(fits, shared_fit, labels, space, notes, flags, noun) -> pd.DataFrame:
    """Separate laws (common error variance) against the shared-exponent law."""
    points = pd.concat([fits[c].points for c in labels], ignore_index=True)
    resid = points["residual"].to_numpy(float)
    n = resid.size
    if n != shared_fit.n_obs:
        notes.append(
            f"the shared law saw {shared_fit.n_obs} cells, the separate laws {n}: "
            "comparison skipped"
        )
        return pd.DataFrame()
    k_sep = sum(len(fits[c].param_names) for c in labels) + 1
    k_sh = len(shared_fit.param_names) + 1
    ll_sep, ll_sh = _loglik(points, space), _loglik(shared_fit.points, space)
    rows = [
        {"law": "separate", **_information_criteria(ll_sep, k_sep, n)},
        {"law": "shared", **_information_criteria(ll_sh, k_sh, n)},
    ]
    df = k_sep - k_sh
    stat, p = likelihood_ratio_test(ll_sh, ll_sep, df)
    sse_sep = float(np.sum(resid**2))
    sse_sh = float(np.sum(shared_fit.points["residual"].to_numpy(float) ** 2))
    f_stat = max(sse_sh - sse_sep, 0.0) / df / (sse_sep / (n - k_sep + 1))
    rows[1].update(
        statistic=stat,
        df=df,
        pvalue=p,
        f_statistic=f_stat,
        f_pvalue=float(stats.f.sf(f_stat, df, n - k_sep + 1)),
    )
    flags += _fit_flags(shared_fit, space, ll_sep, ll_sh)
    table = pd.DataFrame(rows)
    for c in ("aicc", "bic"):
        table[f"delta_{c}"] = table[c] - table[c].min()
        table[f"weight_{c}"] = akaike_weights(table[c])
    notes.append(
        f"likelihoods are Gaussian with one error variance common to all {noun}s; "
        "the likelihood-ratio test is read in its F form (exact for a linear model, "
        "close to its level with few cells where the χ² form rejects too often); both "
        "forms assume independent cells and no parameter at a bound"
    )
    return table


def _fit_flags(shared_fit, space, ll_sep, ll_sh) -> list[Flag]:
    """Warnings on the comparison: a heteroscedastic linear fit, a separate local optimum."""
    flags = []
    het = _heteroscedasticity(shared_fit.points)
    if space == "linear" and het is not None and het < HETEROSCEDASTIC_P:
        flags.append(
            Flag(
                "heteroscedastic",
                f"the residual spread grows with the fitted ΔL "
                f"(Breusch-Pagan p = {het:.2g}): the one-variance likelihood is wrong "
                "and the test rejects shared exponents too often; rerun with "
                "space='log'",
            )
        )
    if ll_sep < ll_sh - 1e-6:
        flags.append(
            Flag(
                "local_optimum",
                "the separate laws fit worse than the shared law, "
                "their restriction: a separate fit stopped at a local optimum",
            )
        )
    return flags
