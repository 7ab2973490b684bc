"""Bernoulli and binomial log-likelihoods shared by the recall-threshold modules.

Private module: :mod:`lawfit.crossing_profile` (profile and isotonic intervals of the
crossing) and :mod:`lawfit.recall_link` (the logistic fit and its shape test) both score
0/1 recall outcomes under a logistic or a monotone curve; the two formulas live here once.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_expit, xlogy

__all__ = ["binomial_loglik", "logistic_loglik"]


def logistic_loglik(eta: np.ndarray, y: np.ndarray, w: np.ndarray | float = 1.0) -> float:
    """Weighted Bernoulli log-likelihood of outcomes ``y`` under ``P(y = 1) = sigmoid(eta)``.

    Parameters
    ----------
    eta : numpy.ndarray
        Linear predictor (log-odds) of each outcome.
    y : numpy.ndarray
        0/1 outcomes.
    w : numpy.ndarray or float
        Case weights (1 for unweighted outcomes).

    Returns
    -------
    float
        ``Σ w (y log σ(η) + (1 − y) log σ(−η))``, computed without overflow for any η.
    """
    return float(np.sum(w * (y * log_expit(eta) + (1 - y) * log_expit(-eta))))


def binomial_loglik(successes: np.ndarray, trials: np.ndarray | float, mu: np.ndarray) -> float:
    """Binomial log-likelihood, without its constant, of successes out of trials at means mu.

    Parameters
    ----------
    successes : numpy.ndarray
        Successes per group (the 0/1 outcomes themselves with ``trials = 1``).
    trials : numpy.ndarray or float
        Trials per group.
    mu : numpy.ndarray
        Success probability per group; 0 and 1 are allowed where they fit the counts
        (``0 · log 0 = 0``).

    Returns
    -------
    float
        ``Σ s log μ + (n − s) log(1 − μ)``.
    """
    return float(np.sum(xlogy(successes, mu) + xlogy(trials - successes, 1.0 - mu)))
