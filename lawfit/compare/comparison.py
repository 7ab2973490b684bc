"""The comparison itself: :func:`compare` and the tables of its result.

:func:`compare` fits the candidates (:mod:`lawfit.compare.candidates`) and builds the
ranking table (:func:`_criteria_row`, :func:`_ranking_table`), the likelihood-ratio tests
of nested pairs (:func:`_nested_tests`), the Vuong tests of the others
(:func:`_vuong_table`) and the ``heteroscedastic`` flag.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

import lawfit.forms_extra as _fx
from lawfit import _validate as V
from lawfit.bootstrap import cluster_column
from lawfit.compare.candidates import (
    HOLDOUT_AXES,
    _candidate_forms,
    _check_options,
    _fit_candidates,
    _frame,
    _heteroscedasticity,
    _holdout,
    _leave_one_target_out,
    _usable_forms,
)
from lawfit.compare.result import ComparisonResult
from lawfit.compare.robust_nested import with_cluster_robust_tests
from lawfit.compare.statistics import akaike_weights, likelihood_ratio_test, vuong_test
from lawfit.errors import LawfitError
from lawfit.forms import get_form
from lawfit.result import Flag
from lawfit.space import HETEROSCEDASTIC_P


def _criteria_row(
    res,
    pts: pd.DataFrame,
    ll: np.ndarray,
    frame: pd.DataFrame,
    kw: dict,
    exclude: str | float | None,
    holdout: Sequence[str],
) -> dict:
    """One ranking-table row: likelihood, AICc, BIC, fit quality and held-out errors.

    Parameters
    ----------
    res : FitResult
        The form's fit on all points.
    pts : pandas.DataFrame
        Its fitted points (``loss_reduction``, ``fitted``).
    ll : numpy.ndarray
        Pointwise log-likelihoods.
    frame : pandas.DataFrame
        Tidy data, for the held-out fits.
    kw : dict
        Keyword arguments for :func:`lawfit.fit`.
    exclude : {"memorized"} or float or None
        Exclusion rule.
    holdout : sequence of str
        Held-out errors computed (``"rank"``, ``"length"``, ``"data_seed"``; NaN for the
        others).

    Returns
    -------
    dict
        Columns of :attr:`ComparisonResult.table` before deltas and weights.
    """
    f = res.form
    y = pts["loss_reduction"].to_numpy(float)
    n = len(pts)
    k = len(f.params) + 1
    loglik = float(ll.sum())
    aicc = -2 * loglik + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    bic = -2 * loglik + k * math.log(n)
    row = {
        "form": f.name,
        "k": k,
        "n_obs": n,
        "loglik": loglik,
        "aicc": aicc,
        "bic": bic,
        "r2": res.r2,
        "rmse": float(np.sqrt(np.mean((y - pts["fitted"]) ** 2))),
        "converged": bool(res.meta.get("converged", True)),
        "flags": "; ".join(fl.code for fl in res.flags),
    }
    for axis in ("rank", "length"):
        row[f"extrap_{axis}_rmse"] = (
            _holdout(frame, f, axis, kw, exclude) if axis in holdout else math.nan
        )
    row["loto_rmse"] = (
        _leave_one_target_out(frame, f, kw, exclude) if "data_seed" in holdout else math.nan
    )
    return row


_TABLE_COLUMNS = [
    "form",
    "k",
    "n_obs",
    "loglik",
    "aicc",
    "delta_aicc",
    "weight_aicc",
    "bic",
    "delta_bic",
    "weight_bic",
    "r2",
    "rmse",
    "extrap_rank_rmse",
    "extrap_length_rmse",
    "loto_rmse",
    "converged",
    "flags",
]


def _ranking_table(rows: list[dict], criterion: str) -> pd.DataFrame:
    """Rank the forms by ``criterion`` with deltas and Akaike weights of AICc and BIC.

    Parameters
    ----------
    rows : list of dict
        One :func:`_criteria_row` per fitted form.
    criterion : {"aicc", "bic"}
        Sort key (ties broken by form name).

    Returns
    -------
    pandas.DataFrame
        The ranking table, best first, columns in documented order.
    """
    table = pd.DataFrame(rows)
    for c in ("aicc", "bic"):
        table[f"delta_{c}"] = table[c] - table[c].min()
        table[f"weight_{c}"] = akaike_weights(table[c])
    table = table.sort_values([criterion, "form"]).reset_index(drop=True)
    return table[_TABLE_COLUMNS]


def _nested_tests(
    fits: dict, lls: dict, notes: list[str], flags: list[Flag]
) -> tuple[pd.DataFrame, set[frozenset]]:
    """Likelihood-ratio tests of every fitted nested pair of forms.

    Parameters
    ----------
    fits : dict
        Form name → FitResult.
    lls : dict
        Form name → (pointwise log-likelihoods, points).
    notes : list of str
        Appended with the caveats when a test has no chi-square p-value.
    flags : list of Flag
        Appended with ``local_optimum`` where a general form fits worse than its
        restriction.

    Returns
    -------
    lr : pandas.DataFrame
        ``restricted, general, restriction, df, statistic, pvalue, valid``.
    nested_pairs : set of frozenset
        The pairs tested here (Vuong's test skips them).
    """
    lr_rows = []
    nested_pairs = set()
    for restr, gen, what, valid in _fx.NESTED:
        if restr in fits and gen in fits:
            nested_pairs.add(frozenset((restr, gen)))
            df = len(get_form(gen).params) - len(get_form(restr).params)
            l0, l1 = float(lls[restr][0].sum()), float(lls[gen][0].sum())
            stat, p = likelihood_ratio_test(l0, l1, df)
            lr_rows.append(
                {
                    "restricted": restr,
                    "general": gen,
                    "restriction": what,
                    "df": df,
                    "statistic": stat,
                    "pvalue": p if valid else math.nan,
                    "valid": valid,
                }
            )
            if l1 < l0 - 1e-6:
                flags.append(
                    Flag(
                        "local_optimum",
                        f"{gen} fits worse than its restriction "
                        f"{restr}: the optimizer of {gen} stopped at a local optimum",
                    )
                )
    if any(not r["valid"] for r in lr_rows):
        notes.append(
            "LR test of broken_power_law vs power_law has no chi-square p-value: the "
            "break point is not identified under the null (Davies' problem); use the "
            "criteria"
        )
        notes.append("LR tests assume no parameter at a bound; see each fit's flags")
    return pd.DataFrame(lr_rows), nested_pairs


def _vuong_table(
    ranked: list[str],
    lls: dict,
    nested_pairs: set[frozenset],
    vuong_clusters: str | None,
    significance: float,
) -> pd.DataFrame:
    """Vuong tests of every non-nested pair of fitted forms.

    Parameters
    ----------
    ranked : list of str
        Fitted form names, best first (pairs are taken in this order).
    lls : dict
        Form name → (pointwise log-likelihoods, points).
    nested_pairs : set of frozenset
        Pairs already tested by likelihood ratio: skipped.
    vuong_clusters : str or None
        Column of the points whose cells are correlated.
    significance : float
        Level below which ``favours`` names a form.

    Returns
    -------
    pandas.DataFrame
        ``form_1, form_2, z, pvalue, favours``.
    """
    v_rows = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            if frozenset((a, b)) in nested_pairs:
                continue
            la, pa = lls[a]
            lb, _ = lls[b]
            cl = pa[vuong_clusters].to_numpy() if vuong_clusters else None
            z, p = vuong_test(la, lb, len(get_form(a).params), len(get_form(b).params), cl)
            fav = (a if z > 0 else b) if p < significance else None
            v_rows.append({"form_1": a, "form_2": b, "z": z, "pvalue": p, "favours": fav})
    return pd.DataFrame(v_rows)


def _heteroscedastic_flag(best: str, pvalue: float) -> Flag:
    """Build the ``heteroscedastic`` flag for the best form's Breusch-Pagan ``pvalue``."""
    return Flag(
        "heteroscedastic",
        f"the residual spread of {best} grows with the fitted ΔL "
        f"(Breusch-Pagan p = {pvalue:.2g}): the Gaussian likelihood behind AICc/BIC is "
        "misspecified and selection in linear space over-rewards flexible forms "
        "(docs/analyses.md); rerun with space='log'",
    )


def _check_cluster(cluster: str | None, frame: pd.DataFrame) -> str | None:
    """Return the column of ``cluster`` (``"run"``: seed), refusing one it cannot use."""
    if cluster is None:
        return None
    col = cluster_column(frame, cluster)
    V.known_columns(col, frame.columns, "cluster")
    if frame[col].nunique() < 2:
        raise LawfitError(
            f"cluster={cluster!r} has one value over the cells ({frame[col].iloc[0]!r}): a "
            "cluster-robust test needs 2 clusters or more (better 3+; q restrictions need "
            "q + 1). Leave cluster unset, or collect more target sequences."
        )
    return col


def _independence_notes(frame: pd.DataFrame, cluster: str | None, lr: pd.DataFrame) -> list:
    """Return notes on what the tests assume of the cells and which robust tests did not run."""
    n_seq = frame["data_seed"].nunique() if "data_seed" in frame.columns else 1
    if cluster is None:
        if n_seq < 2:
            return []
        return [
            f"the likelihood-ratio tests and the criteria treat cells as independent; cells "
            f"of one target sequence share its errors ({n_seq} data_seed clusters), so they "
            "overstate the evidence: pass cluster='data_seed' (--cluster data_seed) for "
            "cluster-robust tests of the nested restrictions, and read loto_rmse (each "
            "sequence predicted from a fit on the others) as the held-out check that "
            "respects them"
        ]
    notes = [
        f"the criteria treat cells as independent; robust_pvalue tests each nested pair's "
        f"restriction with the cluster-robust covariance over {cluster} (CR2 Wald, HTZ F), "
        "which holds its level where the likelihood-ratio pvalue overstates the evidence"
    ]
    skipped = lr[lr["valid"] & (lr["robust_reason"] != "")] if len(lr) else lr
    notes += [
        f"cluster-robust test of {r.restricted} in {r.general} not run: {r.robust_reason}"
        for r in skipped.itertuples()
    ]
    return notes


def compare(
    ds,
    forms: Sequence[str] | None = None,
    *,
    exclude: str | float | None = "memorized",
    loss: Literal["l2"] = "l2",
    space: Literal["linear", "log"] = "linear",
    criterion: Literal["aicc", "bic"] = "aicc",
    pool: Sequence[str] = (),
    holdout: Sequence[str] = HOLDOUT_AXES,
    vuong_clusters: str | None = None,
    cluster: str | None = None,
    significance: float = 0.05,
    alpha: float | None = None,
) -> ComparisonResult:
    """Fit alternative scaling forms on the same points and rank them.

    Parameters
    ----------
    ds : xarray.Dataset or pandas.DataFrame
        One setting of the sweep (select or ``pool`` grouping dims first), with
        ``loss_reduction`` over ``rank`` and ``length``; ``loss_before`` is needed by
        ``saturating``, ``n_params`` by ``power_law_nparams``.
    forms : sequence of str, optional
        Registered form names; default
        :data:`lawfit.forms_extra.BUILTIN_CANDIDATES`. Forms whose inputs the data
        lacks are skipped with a note.
    exclude : {"memorized"} or float or None
        Passed to :func:`lawfit.fit`; the excluded cells depend on the data only, so
        every form sees the same points.
    loss : {"l2"}
        Only least squares: the criteria need a likelihood.
    space : {"linear", "log"}
        Fit scale, the same for every form.
    criterion : {"aicc", "bic"}
        Ranking criterion.
    pool : sequence of str
        Grouping dims (e.g. ``("modules",)``) whose settings are pooled into one law:
        then only a form in ``n_params`` can put adapters of different sizes on one
        curve, and the comparison says whether it does.
    holdout : sequence of {"rank", "length", "data_seed"}
        Held-out errors to compute: ``"rank"`` and ``"length"`` extrapolate (fit below
        the largest value, predict the largest); ``"data_seed"`` leaves one target
        sequence out at a time (``loto_rmse``, one refit per sequence and form, the
        costliest). Empty to skip them all, e.g. when only the ranking is needed.
    vuong_clusters : str, optional
        Column (e.g. ``"seed"``) whose cells are correlated: Vuong's variance then
        uses cluster sums. Default: ``cluster``.
    cluster : str, optional
        Column whose cells share their errors, e.g. ``"data_seed"`` (target sequences):
        each valid nested pair's restriction is also tested on the general fit with the
        cluster-robust covariance (CR2 Wald, HTZ F reference;
        :mod:`lawfit.compare.robust_nested`), in the ``robust_*`` columns of
        ``lr_tests``; the Vuong tests sum within its clusters too, unless
        ``vuong_clusters`` says otherwise. The likelihood-ratio tests and the criteria
        treat cells as independent, and overstate the evidence when they are not.
    significance : float
        Significance level used to name the favoured form of a Vuong test.
    alpha : float, optional
        Deprecated name of ``significance`` (alpha is the law's rank exponent here).

    Returns
    -------
    ComparisonResult
        Frozen ranking with fits and tests.

    Raises
    ------
    LawfitError
        Unknown forms or options, fewer than two forms that can be fitted, or bad
        data (see :func:`lawfit.data.as_frame`).
    """
    if alpha is not None:
        warnings.warn(
            "compare(alpha=...) is deprecated: use significance=... (alpha names the "
            "law's rank exponent).",
            DeprecationWarning,
            stacklevel=2,
        )
        significance = alpha
    significance = V.significance_level(significance)
    exclude = _check_options(loss, criterion, exclude, holdout)
    form_objs = _candidate_forms(forms)
    frame, _excl = _frame(ds, form_objs, "rank", tuple(pool))
    V.known_columns(vuong_clusters, frame.columns, "vuong_clusters")
    cluster = _check_cluster(cluster, frame)
    vuong_clusters = vuong_clusters or cluster
    notes = [f"pooled over {list(pool)} into one law (cluster column 'run')"] if pool else []
    usable = _usable_forms(form_objs, frame, notes, default_forms=forms is None)
    kw = dict(loss="l2", space=space, profile=False, bootstrap=0)
    fits, lls = _fit_candidates(usable, frame, kw, exclude, notes)
    table = _ranking_table(
        [
            _criteria_row(fits[name], lls[name][1], lls[name][0], frame, kw, exclude, holdout)
            for name in fits
        ],
        criterion,
    )
    flags: list[Flag] = []
    lr, nested_pairs = _nested_tests(fits, lls, notes, flags)
    if cluster and len(lr):
        lr = with_cluster_robust_tests(lr, fits, cluster)
    vu = _vuong_table(list(table["form"]), lls, nested_pairs, vuong_clusters, significance)
    best = str(table["form"].iloc[0])
    het = _heteroscedasticity(lls[best][1])
    if space == "linear" and het is not None and het < HETEROSCEDASTIC_P:
        flags.append(_heteroscedastic_flag(best, het))
    if vuong_clusters is None and "seed" in frame.columns and frame["seed"].nunique() > 1:
        notes.append(
            "Vuong tests treat cells as independent; pass vuong_clusters='seed' if "
            "replicates share a run effect"
        )
    notes += _independence_notes(frame, cluster, lr)
    return ComparisonResult(
        table=table,
        fits=fits,
        lr_tests=lr,
        vuong=vu,
        best=best,
        criterion=criterion,
        notes=tuple(notes),
        flags=tuple(flags),
        heteroscedasticity_pvalue=het,
        significance=float(significance),
    )
