"""Token-level checks of "p > 0.5 is sufficient for recall", and the bimodality of p.

The sufficiency and necessity counts (:func:`_sufficiency`), the cascade from the
earliest sub-threshold token to the first greedy error (:func:`_cascade`), entry exact
match against the entry's minimum p (:func:`_sequence`), and the bimodality of token
probabilities before and after training (:func:`_bimodality`, with Sarle's
:func:`bimodality_coefficient`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from lawfit._tokens import TokenArrays
from lawfit.transition.results import THRESHOLD, Cascade, SequenceCheck, SufficiencyCheck


def bimodality_coefficient(x: np.ndarray) -> float:
    """Sarle's sample bimodality coefficient.

    ``BC = (g² + 1) / (k + 3 (n-1)² / ((n-2)(n-3)))`` with sample skewness g and excess
    kurtosis k (both bias-corrected); BC > 5/9 suggests a bimodal distribution.

    Parameters
    ----------
    x : array_like
        Sample (NaN ignored).

    Returns
    -------
    float
        The coefficient, NaN for fewer than 4 finite values or constant data.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 4 or np.ptp(x) == 0:
        return math.nan
    g = stats.skew(x, bias=False)
    k = stats.kurtosis(x, bias=False)
    return float((g * g + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def _sufficiency(ta: TokenArrays, prefix_ok, tie_tol) -> SufficiencyCheck:
    use = ta.valid & prefix_ok
    p, g = ta.p_after[use], ta.greedy[use]
    above = p > THRESHOLD
    miss = above & (g == 0)
    ties = miss & (p <= THRESHOLD + tie_tol)
    rec = g == 1
    n_el, n_rec = int(above.sum()), int(rec.sum())
    n_below = int((rec & (p <= THRESHOLD)).sum())
    nv = int((miss & ~ties).sum())
    return SufficiencyCheck(
        n_eligible=n_el,
        n_violations=nv,
        n_ties=int(ties.sum()),
        violation_rate=nv / n_el if n_el else math.nan,
        n_recalled=n_rec,
        n_recalled_below=n_below,
        necessity_rate=n_below / n_rec if n_rec else math.nan,
        tie_tol=tie_tol,
    )


def _units(ta: TokenArrays, unit: str):
    """Yield (run_index, entry_id, token index array) for each unit."""
    for i in range(ta.valid.shape[0]):
        tok = np.flatnonzero(ta.valid[i])
        if unit == "run":
            yield i, -1, tok
        else:
            ent = ta.entry[i, tok]
            for e in np.unique(ent):
                yield i, int(e), tok[ent == e]


def _cascade(ta, unit, censored, level, n_boot, gen) -> Cascade | None:
    rows = []
    for i, e, tok in _units(ta, unit):
        p, g = ta.p_after[i, tok], ta.greedy[i, tok]
        sub = np.flatnonzero(p <= THRESHOLD)  # not above: sufficiency does not apply
        err = np.flatnonzero(g == 0)
        rows.append((i, e, sub[0] if sub.size else -1, err[0] if err.size else -1, tok.size))
    pos = pd.DataFrame(
        rows, columns=["run", "entry", "earliest_subthreshold", "first_error", "unit_length"]
    )
    both_missing = (pos.earliest_subthreshold < 0) & (pos.first_error < 0)
    one_missing = (pos.earliest_subthreshold < 0) ^ (pos.first_error < 0)
    pos = pos[~both_missing]
    n_drop = int(both_missing.sum())
    if censored == "drop":
        n_drop += int(one_missing[~both_missing].sum())
        pos = pos[~one_missing[~both_missing]]
        n_cens = 0
    else:
        n_cens = int(one_missing[~both_missing].sum())
        for col in ("earliest_subthreshold", "first_error"):
            pos[col] = pos[col].where(pos[col] >= 0, pos["unit_length"])
    pos = pos.reset_index(drop=True)
    n = len(pos)
    if n < 4:
        return None
    a = pos.earliest_subthreshold.to_numpy(float)
    b = pos.first_error.to_numpy(float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho, pv = stats.spearmanr(a, b)
    rho, pv = float(rho), float(pv)
    if n_boot:
        dr = np.full(n_boot, np.nan)
        for k in range(n_boot):
            ix = gen.integers(0, n, n)
            if np.ptp(a[ix]) and np.ptp(b[ix]):
                dr[k] = stats.spearmanr(a[ix], b[ix])[0]
        ok = dr[np.isfinite(dr)]
        ci = tuple(float(v) for v in np.quantile(ok, [0.5 - level / 2, 0.5 + level / 2]))
        method = "bootstrap-percentile (units)"
    else:
        zc = stats.norm.ppf(0.5 + level / 2)
        se = math.sqrt((1 + rho * rho / 2) / max(n - 3, 1))
        r = min(max(rho, -0.999999), 0.999999)
        ci = (math.tanh(math.atanh(r) - zc * se), math.tanh(math.atanh(r) + zc * se))
        method = "fisher-z (Bonett-Wright)"
    coords = ta.runs.iloc[pos.run.to_numpy()].reset_index(drop=True)
    positions = pd.concat([coords, pos.drop(columns="run")], axis=1)
    return Cascade(
        rho=rho,
        ci=ci,
        ci_method=method,
        pvalue=pv,
        unit=unit,
        n_units=n,
        n_dropped=n_drop,
        n_censored=n_cens,
        n_error_before_subthreshold=int((b < a).sum()),
        share_equal=float(np.mean(a == b)),
        positions=positions,
    )


def _sequence(ta: TokenArrays) -> SequenceCheck | None:
    minp, exact = [], []
    for i, _e, tok in _units(ta, "entry"):
        minp.append(ta.p_after[i, tok].min())
        exact.append(bool((ta.greedy[i, tok] == 1).all()))
    minp, exact = np.asarray(minp), np.asarray(exact)
    if minp.size == 0:
        return None
    above = minp > THRESHOLD
    table = pd.DataFrame(
        [
            [int((above & exact).sum()), int((above & ~exact).sum())],
            [int((~above & exact).sum()), int((~above & ~exact).sum())],
        ],
        index=pd.Index(["min_p > 0.5", "min_p <= 0.5"], name="teacher forcing"),
        columns=pd.Index(["exact", "not exact"], name="greedy"),
    )
    n1, n0 = int(exact.sum()), int((~exact).sum())
    if n1 and n0:
        auc = float(stats.mannwhitneyu(minp[exact], minp[~exact]).statistic / (n1 * n0))
    else:
        auc = math.nan
    return SequenceCheck(
        table=table,
        p_exact_above=float(exact[above].mean()) if above.any() else math.nan,
        p_exact_below=float(exact[~above].mean()) if (~above).any() else math.nan,
        auc=auc,
        n_entries=int(minp.size),
    )


def _bimodality(ta: TokenArrays) -> pd.DataFrame | None:
    rows = []
    for when, arr in (("before", ta.p_before), ("after", ta.p_after)):
        if arr is None:
            continue
        v = arr[ta.valid]
        per_cell = [bimodality_coefficient(arr[i][ta.valid[i]]) for i in range(arr.shape[0])]
        tails = (v < 0.1) | (v > 0.9)
        rows.append(
            {
                "when": when,
                "bc_pooled": bimodality_coefficient(v),
                "bc_median_cell": float(np.nanmedian(per_cell)) if len(per_cell) else math.nan,
                "tail_mass_pooled": float(tails.mean()),
                "share_above_0.5": float((v > THRESHOLD).mean()),
                "n_tokens": int(v.size),
            }
        )
    return pd.DataFrame(rows) if rows else None
