"""The p > 0.5 phase transition of verbatim recall, measured at token and cell level.

Under teacher forcing, a correct token with probability p > 0.5 is the argmax, so greedy
decoding with an intact prefix must reproduce it: ``p > 0.5`` is *sufficient* for
recall, not necessary. :func:`phase_transition` estimates the empirical recall threshold
p* with a logistic regression, checks sufficiency and necessity, measures how one
sub-threshold token derails decoding (the cascade), and fits the cell-level transition
of the order parameters (exact match, share of tokens above threshold) against
capacity. See docs/analyses.md for definitions and choices.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize, stats

from lawfit import _validate as V
from lawfit._tokens import (
    GROUP_DIMS,
    TokenArrays,
    fails_before,
    load,
    logit,
    ok_mask,
    sigmoid,
    token_arrays,
)
from lawfit.crossing_profile import crossing_interval, isotonic_crossing_interval
from lawfit.errors import LawfitError
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.recall_link import logistic_irls, logistic_link_test
from lawfit.result import Flag

__all__ = [
    "Cascade",
    "CellTransition",
    "PhaseTransitionResult",
    "SequenceCheck",
    "SufficiencyCheck",
    "ThresholdFit",
    "bimodality_coefficient",
    "phase_transition",
]

THRESHOLD = 0.5
#: ``ci_method`` names of the three intervals of p* (one place for each).
_PROFILE, _BOOT, _DELTA = (
    "profile-likelihood",
    "bootstrap-percentile (runs)",
    "delta (run-clustered)",
)
#: Fewer runs than this with both recalled and missed tokens: the threshold's interval is
#: flagged as unreliable (simulated: the profile interval covered 83 % at 1-2 such runs).
MIN_INFORMATIVE_RUNS = 5
#: Level of the logistic-link test below which ``threshold_not_logistic`` is raised.
LINK_SIGNIFICANCE = 0.05


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ThresholdFit:
    """Token-level logistic regression of greedy recall on ``logit(p_after)``.

    The model is ``P(recall) = sigmoid(intercept + slope * logit(p_after))`` on tokens
    whose prefix within their entry was reproduced (``condition_on_prefix``).

    Attributes
    ----------
    threshold : float
        p* = sigmoid(-intercept / slope): the ``p_after`` at which recall is 50 %.
    ci : tuple of float
        Confidence interval of p*, the one ``threshold_interval`` chose (``ci_method``):
        ``"profile-likelihood"`` (the default), ``"bootstrap-percentile (runs)"`` or
        ``"delta (run-clustered)"`` (also what ``"bootstrap"`` falls back to when no
        bootstrap ran).
    ci_delta : tuple of float
        Delta-method interval from the run-clustered covariance (always reported).
    ci_profile : tuple of float
        Profile-likelihood interval (:func:`lawfit.crossing_profile.crossing_interval`:
        the likelihood-ratio test of the crossing inverted, slope profiled out; 0 or 1
        where a side stays open). Always reported. On simulated data it held its level
        where the run bootstrap did not (one missed token per run; docs/analyses.md).
    ci_bootstrap : tuple of float
        Percentile interval over run-bootstrap replicates; NaN without bootstrap.
    level : float
        Confidence level.
    pvalue : float
        Two-sided Wald test of H0: p* = 0.5 (intercept = 0), run-clustered SE.
    pvalue_bootstrap : float or None
        Bootstrap test of H0: p* = 0.5 (share of draws on the other side, doubled).
    intercept, slope : float
        Logistic coefficients; ``cov`` their run-clustered covariance (2 × 2).
    n_tokens, n_runs : int
        Tokens and runs (clusters) in the regression.
    n_boot, n_boot_failed : int
        Bootstrap replicates requested and those that failed (kept out of the CI,
        reported here, never dropped silently).
    draws : numpy.ndarray
        Bootstrap draws of p* (NaN for failed replicates).
    threshold_isotonic : float
        Model-free 50 % crossing of the isotonic (monotone) regression of recall on
        ``logit(p_after)``, where the fitted step jumps across 0.5 (interpolated between
        the two tokens on either side by their fitted values). Unlike the
        logistic p*, it is not biased by the jump of the recall curve to 1 at
        p = 0.5 that sufficiency forces.
    ci_isotonic : tuple of float
        Model-free interval of ``threshold_isotonic``: the gaps between tokens where the
        likelihood-ratio test of a 50 % recall rate under monotonicity is not rejected
        (:func:`lawfit.crossing_profile.isotonic_crossing_interval`, Banerjee-Wellner
        cutoff). On simulated long-context data it covered where the bootstrap did not
        (docs/analyses.md). NaN at a level outside 0.5-0.995.
    ci_isotonic_bootstrap : tuple of float
        Bootstrap percentile interval of ``threshold_isotonic`` (runs resampled); NaN
        without bootstrap.
    ci_difference : tuple of float
        Paired bootstrap interval of ``threshold − threshold_isotonic`` (both computed
        on each resample). Reported; the misfit flag follows ``link_pvalue`` instead: on
        100 simulated recall curves cut off by sufficiency at a crossing of 0.45 the link
        test rejected all, where this interval excluded 0 in 32 % (docs/analyses.md).
    n_runs_informative : int
        Runs with both recalled and missed tokens in the regression: only they locate
        the threshold. With few of them every interval understates the uncertainty (the
        run bootstrap most); :func:`phase_transition` flags fewer than
        :data:`MIN_INFORMATIVE_RUNS`.
    max_missed_per_run : int
        The most missed tokens any run contributes. 1 where every run is one entry (long-
        context targets: the intact prefix ends at the first miss), so the fit rests on at
        most one miss per run, where the bootstrap and delta intervals are too narrow;
        :func:`phase_transition` flags it (``one_miss_per_run``) when ``ci`` is one of them.
        0 in results saved before it was recorded.
    link_statistic, link_pvalue : float
        Likelihood-ratio test of the logistic recall curve against every non-decreasing
        one (:func:`lawfit.recall_link.logistic_link_test`): ``2 (l_isotonic -
        l_logistic)`` and its parametric-bootstrap p-value (``n_boot`` draws from the fitted
        logistic; NaN without bootstrap). A small p-value says the recall curve is not
        logistic in ``logit(p_after)``: :func:`phase_transition` flags it.
    link_separated : int
        Null draws of that test whose outcomes came out separated in ``x`` (no finite
        logistic fit), left out: the test is conditional on non-separated outcomes, as
        the data are.
    """

    threshold: float
    ci: tuple[float, float]
    ci_method: str
    ci_delta: tuple[float, float]
    level: float
    pvalue: float
    pvalue_bootstrap: float | None
    intercept: float
    slope: float
    cov: np.ndarray
    n_tokens: int
    n_runs: int
    n_boot: int
    n_boot_failed: int
    draws: np.ndarray = field(repr=False)
    threshold_isotonic: float = math.nan
    ci_isotonic: tuple[float, float] = (math.nan, math.nan)
    ci_difference: tuple[float, float] = (math.nan, math.nan)
    n_runs_informative: int = 0
    max_missed_per_run: int = 0
    ci_profile: tuple[float, float] = (math.nan, math.nan)
    ci_bootstrap: tuple[float, float] = (math.nan, math.nan)
    ci_isotonic_bootstrap: tuple[float, float] = (math.nan, math.nan)
    link_statistic: float = math.nan
    link_pvalue: float = math.nan
    link_separated: int = 0


@dataclass(frozen=True)
class SufficiencyCheck:
    """Counts behind "p > 0.5 is sufficient, not necessary".

    Attributes
    ----------
    n_eligible : int
        Tokens with ``p_after > 0.5`` whose entry prefix was reproduced.
    n_violations : int
        Of those, tokens not reproduced with ``p_after > 0.5 + tie_tol``. Must be 0.
    n_ties : int
        Not reproduced with ``0.5 < p_after <= 0.5 + tie_tol`` (numerical ties).
    violation_rate : float
        ``n_violations / n_eligible``.
    n_recalled : int
        Tokens reproduced with an intact prefix.
    n_recalled_below : int
        Of those, tokens with ``p_after <= 0.5``.
    necessity_rate : float
        ``n_recalled_below / n_recalled``: recall that p > 0.5 does not explain.
    tie_tol : float
        Tolerance used for ties.
    """

    n_eligible: int
    n_violations: int
    n_ties: int
    violation_rate: float
    n_recalled: int
    n_recalled_below: int
    necessity_rate: float
    tie_tol: float


@dataclass(frozen=True)
class Cascade:
    """Earliest sub-threshold position against the first greedy error.

    Attributes
    ----------
    rho : float
        Spearman rank correlation over units (runs or entries).
    ci : tuple of float
        Interval for rho (``ci_method``: bootstrap percentile over units, or Fisher z
        with the Bonett–Wright standard error).
    pvalue : float
        Test of rho = 0 (scipy.stats.spearmanr).
    n_units : int
        Units used; ``n_dropped`` units had neither event (nothing to compare) or were
        censored and ``censored="drop"``; ``n_censored`` used the unit length in place
        of a missing event.
    n_error_before_subthreshold : int
        Units whose first greedy error precedes the earliest sub-threshold token
        (p_after <= 0.5); ties aside this contradicts sufficiency: must be 0.
    share_equal : float
        Share of units whose two positions coincide.
    positions : pandas.DataFrame
        One row per unit: coordinates, ``earliest_subthreshold``, ``first_error``,
        ``unit_length``.
    """

    rho: float
    ci: tuple[float, float]
    ci_method: str
    pvalue: float
    unit: str
    n_units: int
    n_dropped: int
    n_censored: int
    n_error_before_subthreshold: int
    share_equal: float
    positions: pd.DataFrame = field(repr=False)


@dataclass(frozen=True)
class SequenceCheck:
    """Entry-level exact match against the entry's minimum ``p_after``.

    Attributes
    ----------
    table : pandas.DataFrame
        2 × 2 counts: rows ``min_p > 0.5`` true/false, columns exact match true/false.
    p_exact_above, p_exact_below : float
        Share of entries reproduced exactly when min p > 0.5 (must be 1) and otherwise.
    auc : float
        Probability that an exactly reproduced entry has a higher min p than one that
        is not (Mann–Whitney AUC).
    n_entries : int
        Entries compared.
    """

    table: pd.DataFrame
    p_exact_above: float
    p_exact_below: float
    auc: float
    n_entries: int


@dataclass(frozen=True)
class CellTransition:
    """Sigmoid transition of a cell-level order parameter against capacity.

    ``order = sigmoid((x - x_c) / width)`` with ``x = log(capacity) - beta * log(length)``.

    Attributes
    ----------
    order : str
        Order parameter (``"exact_match"``, ``"frac_above"``, ``"token_accuracy"``).
    capacity : str
        ``"rank"`` or ``"n_params"``.
    x_c, width, beta : float
        Critical point, width (in log-capacity units) and length exponent.
    ci : dict
        ``{"x_c": (lo, hi), "width": ..., "beta": ...}`` (``ci_method``).
    beta_fixed : bool
        True when beta was given (or not identifiable: one length) rather than fitted.
    critical : pandas.DataFrame
        Per observed length: the critical capacity ``exp(x_c + beta log l)`` with CI.
    data : pandas.DataFrame
        The cells: coordinates, ``x``, ``y`` and the fitted ``y_hat``.
    rmse : float
        Root mean squared residual.
    """

    order: str
    capacity: str
    x_c: float
    width: float
    beta: float
    beta_fixed: bool
    ci: dict
    ci_method: str
    level: float
    critical: pd.DataFrame
    data: pd.DataFrame = field(repr=False)
    rmse: float = math.nan
    n_cells: int = 0


@dataclass(frozen=True)
class PhaseTransitionResult(ResultProtocol):
    """Everything :func:`phase_transition` measured; parts it could not measure are None.

    Attributes
    ----------
    token_fit : ThresholdFit or None
        Token-level logistic fit: p*, its CIs, the test against 0.5, the isotonic
        crossing. ``threshold`` and ``threshold_ci`` are shortcuts.
    sufficiency : SufficiencyCheck or None
        Sufficiency / necessity counts.
    cascade : Cascade or None
        Earliest sub-threshold position vs first greedy error.
    sequence : SequenceCheck or None
        Entry exact match vs min p.
    transitions : dict of str to CellTransition
        Cell-level sigmoid fits, keyed by order parameter.
    bimodality : pandas.DataFrame or None
        Bimodality of token probabilities before/after, pooled and median over cells.
    notes : tuple of str
        Why a part was skipped, what was pooled.
    flags : tuple of Flag
        Warnings: ``threshold_not_logistic``, ``few_informative_runs``,
        ``one_miss_per_run``, ``sufficiency_violated``, ``critical_point_extrapolated``.
    """

    token_fit: ThresholdFit | None
    sufficiency: SufficiencyCheck | None
    cascade: Cascade | None
    sequence: SequenceCheck | None
    transitions: dict
    bimodality: pd.DataFrame | None
    notes: tuple[str, ...]
    flags: tuple[Flag, ...] = ()

    @property
    def threshold(self) -> float:
        """Estimated threshold p* (logistic 50 % point); NaN when not estimated."""
        return math.nan if self.token_fit is None else self.token_fit.threshold

    @property
    def threshold_ci(self) -> tuple[float, float]:
        """Confidence interval of p* (see ``token_fit.ci_method``)."""
        return (math.nan, math.nan) if self.token_fit is None else self.token_fit.ci

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy table: one row per quantity with estimate, interval and count.

        Returns
        -------
        pandas.DataFrame
            Columns ``quantity, estimate, low, high, n, note``.
        """
        rows = []
        t = self.token_fit
        if t is not None:
            rows.append(("threshold_p_star", t.threshold, *t.ci, t.n_tokens, t.ci_method))
            for kind, ci, method in (
                ("profile", t.ci_profile, _PROFILE),
                ("run_bootstrap", t.ci_bootstrap, _BOOT),
                ("delta", t.ci_delta, _DELTA),
            ):
                rows.append((f"threshold_p_star_{kind}", t.threshold, *ci, t.n_tokens, method))
            for name, ci, method in (
                ("threshold_isotonic", t.ci_isotonic, "likelihood ratio (monotone)"),
                ("threshold_isotonic_run_bootstrap", t.ci_isotonic_bootstrap, _BOOT),
            ):
                rows.append((name, t.threshold_isotonic, *ci, t.n_tokens, method))
            rows.append(("p_value_p_star_eq_0.5", t.pvalue, np.nan, np.nan, t.n_runs, "wald"))
            rows.append(
                (
                    "p_value_logistic_link",
                    t.link_pvalue,
                    np.nan,
                    np.nan,
                    t.n_tokens,
                    f"LR {t.link_statistic:.3g} against any monotone curve (parametric bootstrap)",
                )
            )
            rows.append(("logit_slope", t.slope, np.nan, np.nan, t.n_tokens, ""))
        s = self.sufficiency
        if s is not None:
            rows.append(
                (
                    "sufficiency_violations",
                    s.n_violations,
                    np.nan,
                    np.nan,
                    s.n_eligible,
                    f"ties={s.n_ties}",
                )
            )
            rows.append(("necessity_rate", s.necessity_rate, np.nan, np.nan, s.n_recalled, ""))
        c = self.cascade
        if c is not None:
            rows.append(("cascade_spearman_rho", c.rho, *c.ci, c.n_units, c.ci_method))
        q = self.sequence
        if q is not None:
            rows.append(
                ("p_exact_given_minp_above", q.p_exact_above, np.nan, np.nan, q.n_entries, "")
            )
            rows.append(
                ("p_exact_given_minp_below", q.p_exact_below, np.nan, np.nan, q.n_entries, "")
            )
        for name, tr in self.transitions.items():
            for par in ("x_c", "width", "beta"):
                lo, hi = tr.ci.get(par, (np.nan, np.nan))
                rows.append(
                    (
                        f"{name}_{par}",
                        getattr(tr, par),
                        lo,
                        hi,
                        tr.n_cells,
                        tr.ci_method + (" (fixed)" if par == "beta" and tr.beta_fixed else ""),
                    )
                )
        return pd.DataFrame(rows, columns=["quantity", "estimate", "low", "high", "n", "note"])

    def summary(self) -> SummaryText:
        """Plain-text summary for people.

        Returns
        -------
        str
            Multi-line text.
        """
        out = ["Phase transition of verbatim recall", "=" * 36]
        t = self.token_fit
        if t is not None:
            out.append(
                f"threshold p* = {t.threshold:.4f}  [{t.ci[0]:.4f}, {t.ci[1]:.4f}] "
                f"({t.level:.0%} {t.ci_method}); H0 p*=0.5: p = {t.pvalue:.3g}; "
                f"slope {t.slope:.3g}; {t.n_tokens} tokens, {t.n_runs} runs"
            )
            out.append(
                f"  other intervals of p*: profile-likelihood {_fmt_ci(t.ci_profile)}, run "
                f"bootstrap {_fmt_ci(t.ci_bootstrap)}, delta {_fmt_ci(t.ci_delta)}"
            )
            if t.n_boot_failed:
                out.append(f"  {t.n_boot_failed}/{t.n_boot} bootstrap replicates failed")
            out.append(
                f"model-free (isotonic) 50% crossing = {t.threshold_isotonic:.4f} "
                f"[{t.ci_isotonic[0]:.4f}, {t.ci_isotonic[1]:.4f}] (likelihood ratio; run "
                f"bootstrap {_fmt_ci(t.ci_isotonic_bootstrap)})"
            )
            out.append(
                f"  logistic shape against any monotone curve: LR = {t.link_statistic:.3g}, "
                f"p = {t.link_pvalue:.3g} (parametric bootstrap"
                + (
                    f"; {t.link_separated} of {t.n_boot} draws separated, left out)"
                    if t.link_separated
                    else ")"
                )
            )
        s = self.sufficiency
        if s is not None:
            out.append(
                f"sufficiency: {s.n_violations} violations of {s.n_eligible} tokens with "
                f"p>0.5 and intact prefix (ties within {s.tie_tol:g}: {s.n_ties}); "
                f"necessity rate {s.necessity_rate:.4f} ({s.n_recalled_below}/{s.n_recalled})"
            )
        c = self.cascade
        if c is not None:
            out.append(
                f"cascade: Spearman rho = {c.rho:.3f} [{c.ci[0]:.3f}, {c.ci[1]:.3f}] over "
                f"{c.n_units} {c.unit}s ({c.n_censored} censored, {c.n_dropped} dropped); "
                f"first error before first sub-threshold token: {c.n_error_before_subthreshold}"
            )
        q = self.sequence
        if q is not None:
            out.append(
                f"sequences: P(exact | min p>0.5) = {q.p_exact_above:.3f}, "
                f"P(exact | min p<=0.5) = {q.p_exact_below:.3f}, AUC(min p) = {q.auc:.3f}, "
                f"{q.n_entries} entries"
            )
        for name, tr in self.transitions.items():
            out.append(
                f"cell transition of {name} vs log({tr.capacity}) - beta log(length): "
                f"x_c = {tr.x_c:.3f} {_fmt_ci(tr.ci['x_c'])}, width = {tr.width:.3f} "
                f"{_fmt_ci(tr.ci['width'])}, beta = {tr.beta:.3f}"
                + (" (fixed)" if tr.beta_fixed else f" {_fmt_ci(tr.ci['beta'])}")
                + f", {tr.n_cells} cells, rmse {tr.rmse:.3f}"
            )
        if self.bimodality is not None:
            b = self.bimodality.set_index("when")
            out.append(
                "bimodality coefficient (pooled) before {:.3f} -> after {:.3f} "
                "(> 5/9 suggests bimodality); tail mass (p<0.1 or p>0.9) {:.3f} -> {:.3f}".format(
                    b.loc["before", "bc_pooled"],
                    b.loc["after", "bc_pooled"],
                    b.loc["before", "tail_mass_pooled"],
                    b.loc["after", "tail_mass_pooled"],
                )
            )
        out += [f"flag: {f}" for f in self.flags]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))

    def __str__(self) -> str:
        return self.summary()


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


# ----------------------------------------------------------------------- numerics
def _isotonic_crossing(xs: np.ndarray, ys: np.ndarray, ws: np.ndarray) -> float:
    """50 % crossing (in x) of the weighted isotonic regression of ys on sorted xs.

    The crossing lies in the gap where the fitted step function jumps across 0.5, linearly
    interpolated between the two tokens on either side of it by their fitted values, so it
    is where the monotone likelihood ratio of ``P(recall) = 0.5`` is 0 and always inside
    :func:`lawfit.crossing_profile.isotonic_crossing_interval`. NaN where the fit is at
    or above 0.5 from the first token, or below it throughout.
    """
    keep = ws > 0
    xs, ys, ws = xs[keep], ys[keep], ws[keep]
    if xs.size < 2:
        return math.nan
    fit = optimize.isotonic_regression(ys, weights=ws, increasing=True).x
    if fit[0] >= 0.5 or fit[-1] < 0.5:
        return math.nan
    j = int(np.argmax(fit >= 0.5))
    x0, x1, v0, v1 = xs[j - 1], xs[j], fit[j - 1], fit[j]
    return float(x0 + (0.5 - v0) * (x1 - x0) / (v1 - v0))


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


# ------------------------------------------------------------------ token level
def _threshold_fit(ta: TokenArrays, prefix_ok, opts: _TokenOptions) -> ThresholdFit:
    """Logistic regression of greedy recall on logit p: the threshold p* with intervals."""
    x, y, run_id = _token_data(ta, prefix_ok)
    a, b, cov, ci_delta = _clustered_logit(x, y, run_id, opts.level)
    xs = -a / b
    draws, iso_draws, iso = _run_bootstrap(x, y, run_id, ta.valid.shape[0], opts.n_boot, opts.gen)
    failed = int(np.isnan(draws).sum())
    ok = draws[np.isfinite(draws)]
    ci_boot, pboot = (math.nan, math.nan), None
    if opts.n_boot and ok.size >= 20:
        ci_boot = _quantile_ci(ok, opts.level)
        side = np.mean(ok >= 0.5) if sigmoid(xs) < 0.5 else np.mean(ok <= 0.5)
        pboot = float(min(1.0, 2 * side))
    ci_profile = _on_p_scale(crossing_interval(x, y, xs, opts.level))
    ci, ci_method = _chosen_interval(opts.threshold_interval, ci_profile, ci_boot, ci_delta)
    diff = draws - sigmoid(iso_draws)  # paired: same resample
    link_stat, link_p, link_separated = logistic_link_test(x, y, a, b, opts.n_boot, opts.gen)
    return ThresholdFit(
        threshold=float(sigmoid(xs)),
        ci=ci,
        ci_method=ci_method,
        ci_delta=ci_delta,
        level=opts.level,
        pvalue=float(2 * stats.norm.sf(abs(a) / math.sqrt(cov[0, 0]))),
        pvalue_bootstrap=pboot,
        intercept=a,
        slope=b,
        cov=cov,
        n_tokens=int(y.size),
        n_runs=int(np.unique(run_id).size),
        n_boot=opts.n_boot,
        n_boot_failed=failed,
        draws=draws,
        n_runs_informative=_informative_runs(y, run_id),
        max_missed_per_run=_max_missed_per_run(y, run_id),
        threshold_isotonic=float(sigmoid(iso)) if np.isfinite(iso) else math.nan,
        ci_isotonic=_on_p_scale(isotonic_crossing_interval(x, y, opts.level)),
        ci_isotonic_bootstrap=_quantile_ci(sigmoid(iso_draws[np.isfinite(iso_draws)]), opts.level),
        ci_difference=_quantile_ci(diff[np.isfinite(diff)], opts.level),
        ci_profile=ci_profile,
        ci_bootstrap=ci_boot,
        link_statistic=link_stat,
        link_pvalue=link_p,
        link_separated=link_separated,
    )


def _on_p_scale(interval: tuple[float, float]) -> tuple[float, float]:
    """Map an interval of logit p to p."""
    return tuple(float(sigmoid(v)) for v in interval)


def _chosen_interval(which: str, profile, bootstrap, delta) -> tuple[tuple[float, float], str]:
    """Return the interval ``threshold_interval`` names, with its method's name.

    ``"bootstrap"`` without usable replicates falls back to the delta method.
    """
    if which == "profile":
        return profile, _PROFILE
    if which == "bootstrap" and np.isfinite(bootstrap[0]):
        return bootstrap, _BOOT
    return delta, _DELTA


def _token_data(ta: TokenArrays, prefix_ok) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return logit p_after, greedy recall and run index of the usable tokens."""
    use = ta.valid & (prefix_ok if prefix_ok is not None else True)
    run_id = np.broadcast_to(np.arange(ta.valid.shape[0])[:, None], ta.valid.shape)[use]
    x = logit(ta.p_after[use])
    y = ta.greedy[use]
    if y.min() == y.max():
        raise LawfitError(
            "the logistic regression of greedy recall needs both recalled and not recalled "
            f"tokens; got {y.size} tokens that are all {'recalled' if y[0] else 'missed'}. "
            "Include runs on both sides of the transition (smaller and larger ranks)."
        )
    return x, y, run_id


def _clustered_logit(x, y, run_id, level):
    """Logit fit with run-clustered covariance: intercept, slope, cov and the delta CI of p*."""
    import statsmodels.api as sm

    X = np.column_stack([np.ones_like(x), x])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.Logit(y, X).fit(
            disp=0, cov_type="cluster", cov_kwds={"groups": run_id}, maxiter=100
        )
    a, b = (float(v) for v in res.params)
    cov = np.asarray(res.cov_params())
    xs = -a / b
    grad = np.array([-1.0 / b, a / b**2])
    se = float(np.sqrt(grad @ cov @ grad))
    z = stats.norm.ppf(0.5 + level / 2)
    return a, b, cov, (float(sigmoid(xs - z * se)), float(sigmoid(xs + z * se)))


def _run_bootstrap(x, y, run_id, n_runs, n_boot, gen):
    """Resample whole runs: p* of the logistic fit and the isotonic crossing (logit) per draw.

    Returns the draws of p* (NaN where the fit failed or its slope is not positive), the
    isotonic crossings on the logit scale, and the isotonic crossing of the data itself.
    """
    draws = np.full(n_boot, np.nan)
    iso_draws = np.full(n_boot, np.nan)
    order = np.argsort(x, kind="stable")
    xs_, ys_, rid_ = x[order], y[order], run_id[order]
    iso = _isotonic_crossing(xs_, ys_, np.ones_like(xs_))
    for i in range(n_boot):
        counts = np.bincount(gen.integers(0, n_runs, n_runs), minlength=n_runs)
        fit = logistic_irls(x, y, counts[run_id].astype(float))
        if fit is not None and fit[1] > 0:
            draws[i] = sigmoid(-fit[0] / fit[1])
        iso_draws[i] = _isotonic_crossing(xs_, ys_, counts[rid_].astype(float))
    return draws, iso_draws, iso


def _quantile_ci(values: np.ndarray, level: float, min_draws: int = 20) -> tuple[float, float]:
    """Percentile interval of finite draws; NaNs with fewer than ``min_draws`` of them."""
    if values.size < min_draws:
        return (math.nan, math.nan)
    return tuple(float(v) for v in np.quantile(values, [0.5 - level / 2, 0.5 + level / 2]))


def _per_run_counts(y: np.ndarray, run_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each run's recalled (1) tokens and its tokens, in the order of its id."""
    index = np.searchsorted(np.unique(run_id), run_id)
    return np.bincount(index, weights=y), np.bincount(index)


def _informative_runs(y: np.ndarray, run_id: np.ndarray) -> int:
    """Count the runs with both a recalled (1) and a missed (0) token."""
    hits, sizes = _per_run_counts(y, run_id)
    return int(np.sum((hits > 0) & (hits < sizes)))


def _max_missed_per_run(y: np.ndarray, run_id: np.ndarray) -> int:
    """Return the most missed (0) tokens of any one run."""
    hits, sizes = _per_run_counts(y, run_id)
    return int((sizes - hits).max()) if sizes.size else 0


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


# ------------------------------------------------------------------- cell level
def _cell_orders(ds: xr.Dataset, ta: TokenArrays | None, capacity: str):
    """DataFrame of ok cells with rank, length, capacity value and order parameters."""
    if "rank" not in ds.dims or "length" not in ds.dims:
        return None
    base = None
    for name in ("exact_match", "token_accuracy", "loss_reduction"):
        if name in ds:
            base = ds[name]
            break
    frames = []
    if base is not None:
        dims = tuple(d for d in base.dims if d not in ("token", "step"))
        okm = ok_mask(ds, dims).reshape(-1)
        idx = pd.MultiIndex.from_product([ds[d].values for d in dims], names=list(dims))
        df = idx.to_frame(index=False)
        for name in ("exact_match", "token_accuracy"):
            if name in ds:
                df[name] = np.asarray(ds[name].transpose(*dims).values, float).reshape(-1)
        df = df[okm].reset_index(drop=True)
        frames.append(df)
    if ta is not None:
        fa = ta.runs.copy()
        fa["frac_above"] = [
            float((ta.p_after[i][ta.valid[i]] > THRESHOLD).mean()) for i in range(len(fa))
        ]
        if frames:
            keys = [c for c in ta.cell_dims if c in frames[0].columns]
            frames[0] = frames[0].merge(fa, on=keys, how="outer")
        else:
            frames.append(fa)
    if not frames:
        return None
    df = frames[0]
    if capacity == "n_params":
        if "n_params" not in ds:
            raise LawfitError(
                "capacity='n_params' needs the variable 'n_params' (dims model, modules, "
                f"rank); the dataset has {sorted(ds.data_vars)}. Use capacity='rank'."
            )
        npar = ds["n_params"].to_dataframe().reset_index()
        keys = [c for c in npar.columns if c in df.columns and c != "n_params"]
        df = df.merge(npar[keys + ["n_params"]], on=keys, how="left")
        df["capacity"] = df["n_params"].astype(float)
    else:
        df["capacity"] = df["rank"].astype(float)
    return df


def _sigmoid_curve(
    th: np.ndarray, lc: np.ndarray, ll: np.ndarray, bfix: float | None
) -> np.ndarray:
    """Evaluate the cell-level sigmoid ``σ((log C − β log L − x_c) / width)``.

    Parameters
    ----------
    th : numpy.ndarray
        ``(x_c, log width)`` and, when ``bfix`` is None, ``beta``.
    lc, ll : numpy.ndarray
        Log capacity and log length of the cells.
    bfix : float or None
        Fixed length exponent, or None when ``th`` carries it.

    Returns
    -------
    numpy.ndarray
        Predicted order parameter per cell.
    """
    xc, lw = th[0], th[1]
    bb = bfix if bfix is not None else th[2]
    return sigmoid((lc - bb * ll - xc) / np.exp(lw))


def _solve_sigmoid(lc: np.ndarray, ll: np.ndarray, y: np.ndarray, bfix: float | None):
    """Least-squares sigmoid fit from two starting widths; return the better one.

    Parameters
    ----------
    lc, ll : numpy.ndarray
        Log capacity and log length.
    y : numpy.ndarray
        Order parameter.
    bfix : float or None
        Fixed length exponent, or None to fit it (started at 0.5).

    Returns
    -------
    scipy.optimize.OptimizeResult or None
        None when every start failed.
    """
    x0 = lc - (bfix if bfix is not None else 0.5) * ll
    mid = float(np.median(x0))
    best = None
    for lw0 in (np.log(max(np.std(x0), 1e-3)) - 1, np.log(max(np.std(x0), 1e-3))):
        th0 = [mid, lw0] + ([] if bfix is not None else [0.5])
        try:
            r = optimize.least_squares(
                lambda th: _sigmoid_curve(th, lc, ll, bfix) - y, th0, method="lm"
            )
        except Exception:  # noqa: BLE001 - a failed start is just skipped
            continue
        if best is None or r.cost < best.cost:
            best = r
    return best


def _sandwich_cov(J: np.ndarray, e: np.ndarray) -> np.ndarray:
    """HC1 sandwich covariance of the parameters from the Jacobian and residuals.

    Parameters
    ----------
    J : numpy.ndarray
        Jacobian of the residuals, cells × parameters.
    e : numpy.ndarray
        Residuals.

    Returns
    -------
    numpy.ndarray
        Covariance (NaN when ``JᵀJ`` is singular).
    """
    n, k = J.shape
    try:
        bread = np.linalg.inv(J.T @ J)
        meat = J.T @ (J * (e * e)[:, None])
        return bread @ meat @ bread * n / max(n - k, 1)
    except np.linalg.LinAlgError:
        return np.full((k, k), np.nan)


def _wald_intervals(
    th: np.ndarray, cov: np.ndarray, zc: float, bfix: float | None
) -> dict[str, tuple]:
    """Wald intervals of x_c, width (through log width) and beta.

    Parameters
    ----------
    th : numpy.ndarray
        Estimate.
    cov : numpy.ndarray
        Its covariance.
    zc : float
        Normal quantile of the level.
    bfix : float or None
        Fixed length exponent (its interval is the point), or None.

    Returns
    -------
    dict
        Parameter name → (low, high).
    """
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(over="ignore"):  # an unidentified width gets an open (inf) bound
        width = tuple(float(w) for w in np.exp([th[1] - zc * se[1], th[1] + zc * se[1]]))
    return {
        "x_c": (th[0] - zc * se[0], th[0] + zc * se[0]),
        "width": width,
        "beta": (th[2] - zc * se[2], th[2] + zc * se[2]) if bfix is None else (bfix, bfix),
    }


def _sigmoid_draws(
    lc: np.ndarray,
    ll: np.ndarray,
    y: np.ndarray,
    bfix: float | None,
    n_boot: int,
    gen: np.random.Generator,
) -> np.ndarray:
    """Refit the sigmoid on cell-bootstrap resamples; return the finite draws.

    Parameters
    ----------
    lc, ll, y : numpy.ndarray
        Log capacity, log length and order parameter of the cells.
    bfix : float or None
        Fixed length exponent, or None.
    n_boot : int
        Resamples (those without variation in ``y`` or whose fit fails are dropped).
    gen : numpy.random.Generator
        Random source.

    Returns
    -------
    numpy.ndarray
        Draws × parameters.
    """
    n, k = y.size, 2 if bfix is not None else 3
    draws = np.full((n_boot, k), np.nan)
    for i in range(n_boot):
        ix = gen.integers(0, n, n)
        if np.ptp(y[ix]) == 0:
            continue
        rb = _solve_sigmoid(lc[ix], ll[ix], y[ix], bfix)
        if rb is not None and np.all(np.isfinite(rb.x)):
            draws[i] = rb.x
    return draws[np.all(np.isfinite(draws), axis=1)]


def _critical_points(
    th: np.ndarray,
    cov: np.ndarray,
    draws: np.ndarray | None,
    lengths: np.ndarray,
    level: float,
    bfix: float | None,
    capacity: str,
) -> pd.DataFrame:
    """Critical capacity ``exp(x_c + β log L)`` per length, with an interval.

    Parameters
    ----------
    th, cov : numpy.ndarray
        Estimate and covariance (delta-method interval when ``draws`` is None).
    draws : numpy.ndarray or None
        Bootstrap draws (percentile interval).
    lengths : numpy.ndarray
        Lengths of the cells.
    level : float
        Confidence level.
    bfix : float or None
        Fixed length exponent, or None.
    capacity : str
        Capacity variable, names the column.

    Returns
    -------
    pandas.DataFrame
        ``length, critical_<capacity>, low, high``.
    """
    zc = stats.norm.ppf(0.5 + level / 2)
    bb = bfix if bfix is not None else th[2]
    crit = []
    for L in lengths:
        est = math.exp(th[0] + bb * math.log(L))
        if draws is not None:
            bd = bfix if bfix is not None else draws[:, 2]
            v = np.exp(draws[:, 0] + bd * math.log(L))
            lo, hi = np.quantile(v, [0.5 - level / 2, 0.5 + level / 2])
        else:
            g = np.array([1.0, 0.0] + ([] if bfix is not None else [math.log(L)]))
            s = math.sqrt(max(float(g @ cov @ g), 0.0))
            lo, hi = est * math.exp(-zc * s), est * math.exp(zc * s)
        crit.append((int(L), est, float(lo), float(hi)))
    return pd.DataFrame(crit, columns=["length", f"critical_{capacity}", "low", "high"])


def _fit_sigmoid(df, order, beta, level, n_boot, gen, capacity) -> CellTransition | None:
    d = df[np.isfinite(df[order])].reset_index(drop=True)
    if len(d) < 4 or d[order].std() == 0:
        return None
    lc, ll = np.log(d["capacity"].to_numpy()), np.log(d["length"].to_numpy(float))
    y = d[order].to_numpy(float)
    fixed = beta is not None or np.ptp(ll) == 0
    bfix = (float(beta) if beta is not None else 0.0) if fixed else None
    r = _solve_sigmoid(lc, ll, y, bfix)
    if r is None or not np.all(np.isfinite(r.x)):
        return None
    th, e = r.x, r.fun
    cov = _sandwich_cov(r.jac, e)
    ci = _wald_intervals(th, cov, stats.norm.ppf(0.5 + level / 2), bfix)
    method = "wald (HC1 sandwich)"
    draws = _sigmoid_draws(lc, ll, y, bfix, n_boot, gen) if n_boot else None
    if draws is not None and len(draws) >= 20:
        q = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        ci = {
            "x_c": tuple(q[:, 0]),
            "width": tuple(np.exp(q[:, 1])),
            "beta": tuple(q[:, 2]) if not fixed else (bfix, bfix),
        }
        method = f"bootstrap-percentile (cells, {len(draws)}/{n_boot} ok)"
    else:
        draws = None
    bb = bfix if fixed else th[2]
    critical = _critical_points(
        th, cov, draws, np.unique(d["length"].to_numpy()), level, bfix, capacity
    )
    out = d.copy()
    out["x"] = lc - bb * ll
    out["y_hat"] = _sigmoid_curve(th, lc, ll, bfix)
    return CellTransition(
        order=order,
        capacity=capacity,
        x_c=float(th[0]),
        width=float(math.exp(th[1])),
        beta=float(bb),
        beta_fixed=fixed,
        ci={kk: (float(v[0]), float(v[1])) for kk, v in ci.items()},
        ci_method=method,
        level=level,
        critical=critical,
        data=out,
        rmse=float(np.sqrt(np.mean(e * e))),
        n_cells=y.size,
    )


# ---------------------------------------------------------------------- front door
def _check_options(
    cascade_unit: str, censored: str, orders: tuple[str, ...], capacity: str
) -> None:
    """Reject an option of :func:`phase_transition` outside its allowed values.

    Parameters
    ----------
    cascade_unit : str
        ``"run"`` or ``"entry"``.
    censored : str
        ``"end"`` or ``"drop"``.
    orders : tuple of str
        Among ``"exact_match"``, ``"frac_above"``, ``"token_accuracy"``.
    capacity : str
        ``"rank"`` or ``"n_params"``.

    Raises
    ------
    LawfitError
        The first bad option, in the order above.
    """
    if cascade_unit not in ("run", "entry"):
        raise LawfitError(f"cascade_unit must be 'run' or 'entry'; got {cascade_unit!r}.")
    if censored not in ("end", "drop"):
        raise LawfitError(f"censored must be 'end' or 'drop'; got {censored!r}.")
    bad = [o for o in orders if o not in ("exact_match", "frac_above", "token_accuracy")]
    if bad:
        raise LawfitError(
            f"orders must be among 'exact_match', 'frac_above', 'token_accuracy'; got {bad}."
        )
    if capacity not in ("rank", "n_params"):
        raise LawfitError(f"capacity must be 'rank' or 'n_params'; got {capacity!r}.")


def _threshold_or_note(
    ta: TokenArrays, prefix_ok: np.ndarray, opts: _TokenOptions, notes: list[str]
) -> ThresholdFit | None:
    """Fit the recall threshold p*, or note why it could not be estimated.

    Parameters
    ----------
    ta : TokenArrays
        Token arrays of the dataset.
    prefix_ok : numpy.ndarray
        Tokens that enter the logistic regression.
    opts : _TokenOptions
        Level, bootstrap replicates and their random source, and the interval to report.
    notes : list of str
        Appended with the reason when the fit fails.

    Returns
    -------
    ThresholdFit or None
        None when the regression could not be fitted.
    """
    try:
        return _threshold_fit(ta, prefix_ok, opts)
    except LawfitError as exc:
        notes.append(f"threshold not estimated: {exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. perfect separation in statsmodels
        notes.append(f"threshold not estimated: logistic regression failed ({exc})")
    return None


def _threshold_flags(thr: ThresholdFit) -> list[Flag]:
    """Flag a non-logistic recall curve, too few informative runs, a too narrow interval.

    Parameters
    ----------
    thr : ThresholdFit
        The token-level threshold fit.

    Returns
    -------
    list of Flag
        ``threshold_not_logistic``, ``few_informative_runs`` and/or
        ``one_miss_per_run`` (raised for the bootstrap and delta intervals only: the
        profile interval held its level there) where they apply.
    """
    flags = []
    if thr.link_pvalue < LINK_SIGNIFICANCE:
        flags.append(
            Flag(
                "threshold_not_logistic",
                f"greedy recall is not logistic in logit(p_after): the best monotone curve "
                f"fits better than the logistic by LR = {thr.link_statistic:.2f} (parametric "
                f"bootstrap p = {thr.link_pvalue:.3g}; sufficiency forces recall to 1 above "
                f"p = 0.5), so the logistic p* ({thr.threshold:.4f}) may be biased; prefer "
                f"the model-free threshold_isotonic ({thr.threshold_isotonic:.4f} "
                f"[{thr.ci_isotonic[0]:.4f}, {thr.ci_isotonic[1]:.4f}])",
            )
        )
    if thr.n_runs_informative < MIN_INFORMATIVE_RUNS:
        flags.append(
            Flag(
                "few_informative_runs",
                f"only {thr.n_runs_informative} of {thr.n_runs} runs have both recalled "
                "and missed tokens; the others are recalled (or missed) throughout and do not "
                f"locate the threshold, so the interval of p* ({thr.ci[0]:.4f}, "
                f"{thr.ci[1]:.4f}; {thr.ci_method}) understates its uncertainty (simulated "
                "long-context data, 1-2 informative runs: the profile interval covered 83 %, "
                "the run bootstrap 36 %; benchmarks/threshold_coverage.py --study "
                "informative). Collect more runs near the transition (ranks and lengths where "
                "recall is partial).",
            )
        )
    if thr.max_missed_per_run == 1 and thr.ci_method != _PROFILE:
        flags.append(
            Flag(
                "one_miss_per_run",
                f"no run contributes more than one missed token ({thr.n_runs} runs, each one "
                "entry whose intact prefix ends at its first miss): on simulated data of this "
                "kind the run-bootstrap and delta intervals of p* cover a planted p* 48-93 % "
                "of the time at 3-15+ informative runs, the profile-likelihood interval "
                "90-98 % (benchmarks/threshold_coverage.py --study informative). Read this "
                f"{thr.ci_method} interval as too narrow; threshold_interval='profile' gives "
                "the one that held its level.",
            )
        )
    return flags


@dataclass(frozen=True)
class _TokenOptions:
    """Settings of the token-level analyses, as :func:`phase_transition` validated them."""

    condition_on_prefix: bool
    tie_tol: float
    cascade_unit: str
    censored: str
    level: float
    n_boot: int
    gen: np.random.Generator
    threshold_interval: str = "profile"


def _recall_checks(
    ds: xr.Dataset, opts: _TokenOptions, notes: list[str], flags: list[Flag]
) -> tuple:
    """Token-level analysis of a dataset with ``p_after`` and ``greedy_correct``.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset with both token variables.
    opts : _TokenOptions
        Settings of the analyses.
    notes, flags : list
        Appended with what the checks report.

    Returns
    -------
    tuple
        ``(token arrays, threshold fit, sufficiency, cascade, sequence, bimodality)``.
    """
    ta = token_arrays(ds)
    intact = fails_before(ta.greedy, ta.entry, ta.valid) == 0
    prefix_ok = intact if opts.condition_on_prefix else np.ones_like(ta.valid)
    thr = _threshold_or_note(ta, prefix_ok, opts, notes)
    if thr is not None:
        flags.extend(_threshold_flags(thr))
    suff = _sufficiency(ta, intact, opts.tie_tol)  # defined on intact prefixes only
    if suff.n_violations:
        flags.append(
            Flag(
                "sufficiency_violated",
                f"{suff.n_violations} tokens with p_after > 0.5 + {opts.tie_tol:g} and an "
                "intact prefix were not recalled: greedy decoding and teacher forcing disagree "
                "(check that both used the same prompt, precision and tokenization)",
            )
        )
    casc = _cascade(ta, opts.cascade_unit, opts.censored, opts.level, opts.n_boot, opts.gen)
    if casc is None:
        notes.append("cascade not computed: fewer than 4 units with a varying position")
    seq = _sequence(ta)
    if "entry" not in ds:
        notes.append("no 'entry' variable: each run is treated as one entry")
    return ta, thr, suff, casc, seq, _bimodality(ta)


def _token_level(ds: xr.Dataset, opts: _TokenOptions, notes: list[str], flags: list[Flag]) -> tuple:
    """Run the token-level analyses the dataset's variables allow; note those skipped.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.
    opts : _TokenOptions
        Settings of the analyses.
    notes, flags : list
        Appended with what the analyses report.

    Returns
    -------
    tuple
        ``(token arrays, threshold fit, sufficiency, cascade, sequence, bimodality)``;
        parts the variables cannot support are None.
    """
    if "p_after" in ds and "greedy_correct" in ds:
        return _recall_checks(ds, opts, notes, flags)
    if "p_after" in ds:
        ta = token_arrays(ds, need_greedy=False)
        bim = _bimodality(ta)
        notes.append(
            "no 'greedy_correct': threshold, sufficiency, cascade and sequence checks skipped"
        )
        return ta, None, None, None, None, bim
    notes.append("no token variables (p_after, greedy_correct): token-level analysis skipped")
    return None, None, None, None, None, None


def _cell_transitions(
    ds: xr.Dataset,
    ta: TokenArrays | None,
    capacity: str,
    orders: tuple[str, ...],
    beta: float | None,
    level: float,
    n_boot: int,
    gen: np.random.Generator,
    notes: list[str],
    flags: list[Flag],
) -> dict[str, CellTransition]:
    """Fit the cell-level sigmoid of each order parameter against capacity.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.
    ta : TokenArrays or None
        Token arrays (for the ``frac_above`` order), if any.
    capacity : {"rank", "n_params"}
        Capacity variable.
    orders : tuple of str
        Order parameters to fit.
    beta : float or None
        Fixed length exponent, or None to fit it.
    level : float
        Confidence level.
    n_boot : int
        Cell-bootstrap replicates.
    gen : numpy.random.Generator
        Random source.
    notes, flags : list
        Appended with skipped orders and extrapolated critical points.

    Returns
    -------
    dict
        Order name → CellTransition, for the orders that could be fitted.
    """
    transitions = {}
    cells = _cell_orders(ds, ta, capacity)
    if cells is None:
        notes.append("no rank/length cells: cell-level transition skipped")
        return transitions
    for order in orders:
        if order not in cells.columns:
            notes.append(f"cell transition of {order} skipped: not in the dataset")
            continue
        tr = _fit_sigmoid(cells, order, beta, level, n_boot, gen, capacity)
        if tr is None:
            notes.append(
                f"cell transition of {order} not fitted: fewer than 4 cells or no "
                "variation (every cell on one side of the transition)"
            )
            continue
        transitions[order] = tr
        if tr.x_c < tr.data["x"].min() or tr.x_c > tr.data["x"].max():
            flags.append(
                Flag(
                    "critical_point_extrapolated",
                    f"critical point of {order} lies outside "
                    "the observed capacity range (extrapolated)",
                )
            )
    return transitions


def phase_transition(
    ds,
    *,
    condition_on_prefix: bool = True,
    tie_tol: float = 1e-3,
    cascade_unit: Literal["run", "entry"] = "run",
    censored: Literal["end", "drop"] = "end",
    orders: tuple[str, ...] = ("exact_match", "frac_above"),
    capacity: Literal["rank", "n_params"] = "rank",
    beta: float | None = None,
    bootstrap: int = 1000,
    confidence_level: float = 0.95,
    threshold_interval: Literal["profile", "bootstrap", "delta"] = "profile",
    rng: int | np.random.Generator | None = None,
) -> PhaseTransitionResult:
    """Measure the p > 0.5 phase transition of greedy verbatim recall.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset. Token level needs ``p_after`` and ``greedy_correct`` over
        ``token`` (``entry`` optional: without it every run is one entry); cell level
        needs ``rank``, ``length`` and ``exact_match`` / ``token_accuracy`` or token
        variables. Cells whose ``status`` is not ``"ok"`` are left out. Grouping dims
        (model, task, method, ...) are pooled: select first to analyse one group.
    condition_on_prefix : bool
        Use only tokens whose earlier tokens in the same entry were reproduced for the
        logistic regression and the sufficiency check. After the first error the decoder
        runs off the teacher-forced path, where ``p_after`` says nothing about recall.
    tie_tol : float
        Non-recalled tokens with ``0.5 < p_after <= 0.5 + tie_tol`` count as numerical
        ties, not sufficiency violations.
    cascade_unit : {"run", "entry"}
        Unit of the cascade correlation (the paper: runs of long-context memorization).
    censored : {"end", "drop"}
        Units with one event missing (no sub-threshold token, or no greedy error): place
        it at the unit length ("end") or drop the unit. Units with neither are dropped.
    orders : tuple of str
        Cell-level order parameters to fit: ``"exact_match"``, ``"frac_above"``
        (share of tokens with p_after > 0.5), ``"token_accuracy"``.
    capacity : {"rank", "n_params"}
        Capacity variable of the cell-level fit.
    beta : float, optional
        Fix the length exponent in ``x = log(capacity) - beta log(length)``; by default
        it is fitted (fixed at 0 when only one length is present).
    bootstrap : int
        Replicates for the CIs (runs for p*, units for rho, cells for the sigmoid); 0
        uses analytic intervals (delta method, Fisher z, HC1 sandwich).
    confidence_level : float
        Level of every interval.
    threshold_interval : {"profile", "bootstrap", "delta"}
        The interval of p* given as ``threshold_ci``: the profile likelihood (default),
        the run bootstrap's percentiles, or the delta method with the run-clustered
        covariance. All three are kept in ``token_fit``. On simulated data where each run
        contributes one missed token (long-context targets) only the profile interval
        held its level (docs/analyses.md); the other two are flagged there.
    rng : int, Generator or None
        Seed for the bootstrap.

    Returns
    -------
    PhaseTransitionResult
        Frozen result; parts the dataset cannot support are None with a note.

    Raises
    ------
    LawfitError
        Bad input: not a dataset, no usable cells, probabilities outside [0, 1], an
        unknown option.
    """
    ds = load(ds)
    confidence_level = V.confidence_level(confidence_level)
    _check_options(cascade_unit, censored, orders, capacity)
    if beta is not None:
        fix = "It fixes the exponent of x = log(capacity) - beta log(length); omit it to fit it."
        beta = V.non_negative_number(beta, "beta", fix)
    bootstrap = V.bootstrap_count(bootstrap)
    V.one_of(threshold_interval, "threshold_interval", ("profile", "bootstrap", "delta"))
    gen = V.random_generator(rng)
    notes: list[str] = []
    flags: list[Flag] = []
    pooled = [d for d in GROUP_DIMS if d in ds.dims and ds.sizes[d] > 1]
    if pooled:
        notes.append(
            "pooled over "
            + ", ".join(f"{d}={list(map(str, ds[d].values))}" for d in pooled)
            + "; select one group (ds.sel(...)) to analyse it alone"
        )
    opts = _TokenOptions(
        condition_on_prefix,
        tie_tol,
        cascade_unit,
        censored,
        confidence_level,
        int(bootstrap),
        gen,
        threshold_interval,
    )
    ta, thr, suff, casc, seq, bim = _token_level(ds, opts, notes, flags)
    transitions = _cell_transitions(
        ds, ta, capacity, orders, beta, confidence_level, int(bootstrap) // 5, gen, notes, flags
    )
    if bootstrap and transitions:
        notes.append(
            f"cell-level sigmoid bootstrap used {int(bootstrap) // 5} replicates "
            "(bootstrap // 5: each replicate is a nonlinear fit)"
        )
    if thr is None and not transitions and bim is None:
        raise LawfitError(
            "phase_transition found nothing it can analyse: expected token variables "
            "(p_after, greedy_correct over 'token') or cell order parameters (exact_match or "
            f"token_accuracy over rank and length); got {sorted(ds.data_vars)} with dims "
            f"{dict(ds.sizes)}. Collect these variables first."
        )
    return PhaseTransitionResult(
        token_fit=thr,
        sufficiency=suff,
        cascade=casc,
        sequence=seq,
        transitions=transitions,
        bimodality=bim,
        notes=tuple(notes),
        flags=tuple(flags),
    )
