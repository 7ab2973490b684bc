"""The token-level recall threshold p*: logistic fit, model-free crossing, intervals.

:func:`_threshold_fit` regresses greedy recall on ``logit(p_after)`` with run-clustered
covariance and returns the threshold p* with its profile-likelihood, run-bootstrap and
delta intervals, the isotonic (monotone) 50 % crossing with its intervals, and the test
of the logistic link. The helpers below it prepare the tokens, resample whole runs and
count the runs that locate the threshold.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize, stats

from lawfit._tokens import TokenArrays, logit, sigmoid
from lawfit.crossing_profile import crossing_interval, isotonic_crossing_interval
from lawfit.errors import LawfitError
from lawfit.recall_link import logistic_irls, logistic_link_test
from lawfit.transition.options import _TokenOptions
from lawfit.transition.results import _BOOT, _DELTA, _PROFILE, ThresholdFit


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
