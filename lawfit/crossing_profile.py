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
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats
from scipy.special import log_expit

__all__ = ["crossing_interval", "profile_loglik"]

#: Largest slope the profile considers (logit units per logit unit); caps a separated fit.
MAX_SLOPE = 1e3
#: The search for a bound stops this far (logit units) beyond the data's range.
REACH = 20.0


def _loglik(slope: float, u: np.ndarray, y: np.ndarray) -> float:
    eta = slope * u
    return float(np.sum(y * log_expit(eta) + (1 - y) * log_expit(-eta)))


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
