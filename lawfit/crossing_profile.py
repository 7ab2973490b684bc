"""Profile-likelihood interval of the 50 % point of a logistic regression.

The recall threshold p* of :func:`lawfit.phase_transition` is the crossing
``x* = -a / b`` of ``P(y = 1) = sigmoid(a + b x)``. Reparametrised as
``sigmoid(b (x - x*))``, the profile log-likelihood of ``x*`` maximises over the slope
``b >= 0`` alone (a concave one-dimensional problem), and the interval is every ``x*``
the likelihood-ratio test does not reject: ``2 (l_hat - l_profile(x*)) <=
chi2_1(level)``. It needs neither the ratio's delta method nor resampled clusters, which
is why it holds its level where each run contributes one missed token (long-context
targets; docs/analyses.md, "How many informative runs does the p* interval need?"). The
likelihood is the exact one of a discrete-time hazard model when only tokens with an
intact prefix enter: the ordered tokens of a run are conditionally independent given
``x`` under the model, so no run clustering is needed for it to be valid. What it does
not cover is dependence the model leaves out (a run-level effect on recall beyond
``x``); the run bootstrap stays reported beside it for that.

Where the slope is not significant at the level on one side, the interval is open on
that side: its bound is ``-inf`` or ``+inf`` (p* = 0 or 1).

The model-free (isotonic) crossing gets the same treatment without the logistic shape:
:func:`isotonic_crossing_interval` inverts the likelihood-ratio test of ``mu(c) = 0.5``
for a non-decreasing ``mu``, whose statistic has the law 𝔻 of Banerjee & Wellner (2001)
instead of χ²₁ (:data:`MONOTONE_LR_QUANTILES`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from lawfit._bernoulli import binomial_loglik, logistic_loglik

__all__ = [
    "MONOTONE_LR_QUANTILES",
    "constrained_isotonic_lr",
    "crossing_interval",
    "isotonic_crossing_interval",
    "isotonic_lr_by_split",
    "monotone_lr_quantile",
    "profile_loglik",
]

#: Quantiles (level, quantile) of 𝔻, the limit law of the likelihood-ratio statistic of a
#: monotone binary regression at a point, simulated by ``python
#: benchmarks/monotone_lr_quantiles.py --n 20000 --reps 100000`` (207 s; Banerjee & Wellner
#: 2001 give 2.286 at 0.95, this 2.260: n = 20,000 is not yet the limit).
MONOTONE_LR_QUANTILES = (
    (0.5, 0.2795),
    (0.6, 0.4287),
    (0.7, 0.6452),
    (0.8, 0.9804),
    (0.85, 1.2292),
    (0.9, 1.6),
    (0.95, 2.26),
    (0.975, 2.9411),
    (0.99, 3.862),
    (0.995, 4.5574),
)

#: Largest slope the profile considers (logit units per logit unit); caps a separated fit.
MAX_SLOPE = 1e3
#: The search for a bound stops this far (logit units) beyond the data's range.
REACH = 20.0


def _loglik(slope: float, u: np.ndarray, y: np.ndarray) -> float:
    return logistic_loglik(slope * u, y)


def profile_loglik(crossing: float, x: np.ndarray, y: np.ndarray) -> float:
    """Log-likelihood of the logistic with its 50 % point fixed, maximised over the slope.

    Parameters
    ----------
    crossing : float
        The fixed crossing ``x*`` (logit scale).
    x, y : numpy.ndarray
        Regressor and 0/1 outcomes.

    Returns
    -------
    float
        ``max over 0 <= b <= MAX_SLOPE`` of the log-likelihood of ``sigmoid(b (x - x*))``.
    """
    u = x - crossing
    res = optimize.minimize_scalar(
        lambda b: -_loglik(b, u, y),
        bounds=(0.0, MAX_SLOPE),
        method="bounded",
        options={"xatol": 1e-9},
    )
    return max(-float(res.fun), _loglik(0.0, u, y))


def crossing_interval(
    x: np.ndarray, y: np.ndarray, estimate: float, level: float
) -> tuple[float, float]:
    """Invert the likelihood-ratio test of the crossing: its interval on the logit scale.

    Parameters
    ----------
    x, y : numpy.ndarray
        Regressor (``logit p_after``) and 0/1 outcomes (greedy recall), both outcomes
        present.
    estimate : float
        The maximum-likelihood crossing ``-a / b`` (from the fit with a free intercept).
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    tuple of float
        ``(low, high)`` on the logit scale; ``-inf`` / ``inf`` where the likelihood ratio
        stays under the cutoff up to ``REACH`` beyond the data.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if not math.isfinite(estimate):  # a flat fit has no crossing to bound
        return -math.inf, math.inf
    best = profile_loglik(estimate, x, y)
    cut = stats.chi2.ppf(level, 1) / 2

    def excess(c: float) -> float:
        return best - profile_loglik(c, x, y) - cut

    bounds = []
    for far in (min(float(x.min()), estimate) - REACH, max(float(x.max()), estimate) + REACH):
        if excess(far) <= 0:
            bounds.append(math.copysign(math.inf, far - estimate))
        else:
            bounds.append(float(optimize.brentq(excess, far, estimate, xtol=1e-10)))
    low, high = bounds
    return low, high


def _isotonic(y: np.ndarray) -> np.ndarray:
    return optimize.isotonic_regression(y).x if y.size else y


def constrained_isotonic_lr(y: np.ndarray, split: int, value: float = 0.5) -> float:
    """Likelihood-ratio statistic of ``mu = value`` between positions ``split - 1`` and ``split``.

    Parameters
    ----------
    y : numpy.ndarray
        0/1 outcomes sorted by their regressor.
    split : int
        Outcomes ``y[:split]`` lie left of the point tested, ``y[split:]`` right of it.
    value : float
        The value of the non-decreasing mean tested there.

    Returns
    -------
    float
        ``2 (l_isotonic - l_constrained)``; the constrained maximum is the isotonic fit of
        each side, capped at ``value`` on the left and floored at it on the right (Banerjee
        & Wellner 2001).
    """
    left, right = y[:split], y[split:]
    full = binomial_loglik(y, 1, _isotonic(y))
    held = binomial_loglik(left, 1, np.minimum(_isotonic(left), value)) + binomial_loglik(
        right, 1, np.maximum(_isotonic(right), value)
    )
    return max(0.0, 2.0 * (full - held))


def monotone_lr_quantile(level: float) -> float:
    """Return the ``level`` quantile of 𝔻, interpolated in :data:`MONOTONE_LR_QUANTILES`.

    Returns
    -------
    float
        NaN outside the tabulated levels (0.5 to 0.995).
    """
    levels, values = np.array(MONOTONE_LR_QUANTILES).T
    if not levels[0] <= level <= levels[-1]:
        return math.nan
    return float(np.interp(level, levels, values))


def _capped_prefix_logliks(y: np.ndarray, value: float) -> np.ndarray:
    """Log-likelihood of ``min(isotonic fit of y[:k], value)`` on ``y[:k]``, every k.

    Pool-adjacent-violators is online when outcomes are appended on the right: the block
    stack after k outcomes is the isotonic fit of ``y[:k]``, and the total of the blocks'
    capped log-likelihoods changes only where blocks merge, so all ``n + 1`` prefixes cost
    O(n) together.
    """

    def block(total: float, count: float) -> float:
        v = min(total / count, value)
        return binomial_loglik(total, count, v)

    sums: list[float] = []
    counts: list[float] = []
    parts: list[float] = []
    out = np.zeros(y.size + 1)
    running = 0.0
    for k, yk in enumerate(y, start=1):
        sums.append(float(yk))
        counts.append(1.0)
        parts.append(block(float(yk), 1.0))
        running += parts[-1]
        while len(sums) > 1 and sums[-2] * counts[-1] > sums[-1] * counts[-2]:
            running -= parts.pop() + parts.pop()
            total, count = sums.pop() + sums.pop(), counts.pop() + counts.pop()
            sums.append(total)
            counts.append(count)
            parts.append(block(total, count))
            running += parts[-1]
        out[k] = running
    return out


def isotonic_lr_by_split(y: np.ndarray, value: float = 0.5) -> np.ndarray:
    """:func:`constrained_isotonic_lr` at every split ``0 .. n`` of sorted outcomes, in O(n).

    The right side's fit floored at ``value`` is the left side's problem on the reversed
    complement (``1 - y[::-1]``, capped at ``1 - value``).
    """
    y = np.asarray(y, dtype=float)
    left = _capped_prefix_logliks(y, value)
    right = _capped_prefix_logliks(1.0 - y[::-1], 1.0 - value)[::-1]
    full = _capped_prefix_logliks(y, 1.0)[-1]
    return np.maximum(0.0, 2.0 * (full - left - right))


def isotonic_crossing_interval(x: np.ndarray, y: np.ndarray, level: float) -> tuple[float, float]:
    """Interval of the 50 % crossing of a non-decreasing ``P(y = 1 | x)``, model-free.

    Every gap between consecutive distinct ``x`` where the likelihood-ratio test of
    ``mu = 0.5`` is not rejected at the :func:`monotone_lr_quantile` cutoff may hold the
    crossing; the interval spans the accepted gaps (their outer ends).

    Parameters
    ----------
    x, y : numpy.ndarray
        Regressor (``logit p_after``) and 0/1 outcomes.
    level : float
        Confidence level, within the tabulated 0.5-0.995.

    Returns
    -------
    tuple of float
        ``(low, high)`` on the ``x`` scale, ``-inf`` / ``inf`` where the first or last gap
        (beyond the data) is accepted; NaN for a level outside the table.
    """
    cut = monotone_lr_quantile(level)
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, float)[order], np.asarray(y, float)[order]
    distinct = np.unique(xs)
    if not math.isfinite(cut) or distinct.size < 2:
        return math.nan, math.nan
    splits = np.r_[0, np.searchsorted(xs, distinct[1:]), xs.size]  # one per gap
    accepted = np.flatnonzero(isotonic_lr_by_split(ys)[splits] <= cut)
    if not accepted.size:
        return math.nan, math.nan
    first, last = int(accepted[0]), int(accepted[-1])
    low = -math.inf if first == 0 else float(distinct[first - 1])
    high = math.inf if last == splits.size - 1 else float(distinct[last])
    return low, high
