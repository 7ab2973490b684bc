"""Is greedy recall logistic in logit(p_after)? A likelihood-ratio test against any monotone curve.

The recall threshold p* of :func:`lawfit.phase_transition` is read off a logistic regression
of greedy recall on ``x = logit(p_after)``. Where the true curve is not logistic (sufficiency
forces recall to 1 above p = 0.5, so a threshold near 0.5 meets a kink), the logistic p* is
biased and the model-free isotonic crossing is the estimate to read. This module tests the
logistic shape itself: the statistic is

    LR = 2 (l_isotonic - l_logistic),

the log-likelihood gained by the best non-decreasing recall curve (the isotonic regression,
which contains every increasing logistic) over the fitted logistic. Its null distribution is
not χ² (the isotonic fit has as many pieces as the data support), so it is simulated: the
outcomes are drawn again from the fitted logistic at the same ``x``, both curves refitted,
and the p-value is the share of draws whose statistic reaches the observed one (a parametric
bootstrap). Draws whose outcomes come out separated in ``x`` have no logistic fit and are
left out: the test is conditional on non-separated outcomes, as the data it is asked about
are. Like the profile interval of p*, it treats the tokens as conditionally
independent given ``x`` (exact for the intact-prefix tokens of the sequential likelihood);
a run-level effect the model leaves out would make it reject too often.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from lawfit._bernoulli import binomial_loglik, logistic_loglik
from lawfit._tokens import sigmoid

__all__ = ["MIN_DRAWS", "logistic_irls", "logistic_link_test"]

#: Fewest null draws with a finite logistic fit for a p-value.
MIN_DRAWS = 20


def logistic_irls(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    max_iter: int = 100,
    tol: float = 1e-10,
    start: tuple[float, float] = (0.0, 1.0),
) -> tuple[float, float] | None:
    """Weighted two-parameter logistic regression by Newton/IRLS with step halving.

    A Newton step that would lower the log-likelihood is halved until it does not (a full
    step is taken whenever it climbs, so where plain Newton converges this is plain
    Newton); without the halving Newton can overshoot from a poor start on nearly
    separated outcomes and diverge although the maximum exists.

    Parameters
    ----------
    x, y, w : numpy.ndarray
        Regressor, 0/1 outcomes and case weights.
    max_iter : int
        Newton steps at most.
    tol : float
        Stop once the full step's ``|Δa| + |Δb|`` falls below it.
    start : tuple of float
        Starting ``(a, b)``.

    Returns
    -------
    tuple of float or None
        ``(a, b)`` of ``P(y = 1) = sigmoid(a + b x)``; None where the Hessian is singular,
        the slope diverges (separated outcomes: no finite maximum) or Newton does not
        converge.
    """
    a, b = (float(v) for v in start)
    current = logistic_loglik(a + b * x, y, w)
    for _ in range(max_iter):
        mu = sigmoid(np.clip(a + b * x, -35, 35))
        v = w * mu * (1 - mu)
        r = w * (y - mu)
        g0, g1 = r.sum(), (r * x).sum()
        h00, h01, h11 = v.sum(), (v * x).sum(), (v * x * x).sum()
        det = h00 * h11 - h01 * h01
        if not np.isfinite(det) or det <= 1e-300:
            return None
        da = (h11 * g0 - h01 * g1) / det
        db = (-h01 * g0 + h00 * g1) / det
        if abs(da) + abs(db) < tol:
            return a + da, b + db
        step = 1.0
        while True:
            trial = logistic_loglik(a + step * da + (b + step * db) * x, y, w)
            if trial >= current - 1e-12 * abs(current) or step < 1e-6:
                break
            step /= 2
        a, b, current = a + step * da, b + step * db, trial
        if abs(b) > 1e4:
            return None
    return None


def _link_lr(
    xu: np.ndarray, successes: np.ndarray, trials: np.ndarray, a: float, b: float
) -> float:
    """``2 (l_isotonic - l_logistic)`` from the outcomes grouped by distinct regressor value.

    Tokens sharing a value of ``x`` (saturated p_after) form one group, so the monotone fit
    is a function of ``x`` and cannot split them by outcome. At least 0.
    """
    iso = optimize.isotonic_regression(successes / trials, weights=trials).x
    gain = binomial_loglik(successes, trials, iso) - binomial_loglik(
        successes, trials, sigmoid(a + b * xu)
    )
    return max(0.0, 2.0 * gain)


def logistic_link_test(
    x: np.ndarray,
    y: np.ndarray,
    intercept: float,
    slope: float,
    n_draws: int,
    rng: np.random.Generator,
) -> tuple[float, float, int]:
    """Test the logistic recall curve against every non-decreasing one.

    Parameters
    ----------
    x : numpy.ndarray
        ``logit(p_after)`` of the tokens.
    y : numpy.ndarray
        Their greedy recall (0/1).
    intercept, slope : float
        The logistic fit's maximum-likelihood coefficients on ``(x, y)``.
    n_draws : int
        Parametric-bootstrap draws of the null distribution (0: no test).
    rng : numpy.random.Generator
        Random generator of the draws.

    Returns
    -------
    tuple
        ``(statistic, pvalue, n_separated)``: the observed ``LR``; the share of the kept
        draws (plus the observed one) whose statistic reaches it; and the draws left out
        because their outcomes came out separated in ``x`` (no finite logistic fit). The
        test is conditional on outcomes that are not separated, as the data it is asked
        about are (separated data have no logistic fit to test): counting those draws as
        ``LR = 0`` instead, their limit, made it reject 8-36 % of simulated long-context
        datasets at the 5 % level. NaN without draws or with fewer than
        :data:`MIN_DRAWS` kept.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    xu, group = np.unique(x, return_inverse=True)
    trials = np.bincount(group).astype(float)
    stat = _link_lr(xu, np.bincount(group, weights=y), trials, intercept, slope)
    if n_draws <= 0:
        return stat, math.nan, 0
    mu = sigmoid(intercept + slope * x)
    ones = np.ones_like(x)
    null, failed = [], 0
    for _ in range(n_draws):
        y_star = (rng.random(x.size) < mu).astype(float)
        fit = logistic_irls(x, y_star, ones, start=(intercept, slope))
        if fit is None:  # separated outcomes: no logistic fit, as for such data themselves
            failed += 1
            continue
        null.append(_link_lr(xu, np.bincount(group, weights=y_star), trials, *fit))
    if len(null) < MIN_DRAWS:
        return stat, math.nan, failed
    pvalue = (1 + np.sum(np.asarray(null) >= stat - 1e-9)) / (1 + len(null))
    return stat, float(pvalue), failed
