"""What :func:`lawfit.transition.phase_transition` returns, and the thresholds it applies.

The frozen result dataclasses (:class:`ThresholdFit`, :class:`SufficiencyCheck`,
:class:`Cascade`, :class:`SequenceCheck`, :class:`CellTransition` and
:class:`PhaseTransitionResult`, with its table and text summary) and the module
constants: the recall threshold 0.5, the names of the three intervals of p*, and the
limits behind the ``few_informative_runs`` and ``threshold_not_logistic`` flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

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
