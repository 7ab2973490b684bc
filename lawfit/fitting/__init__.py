"""``lawfit.fit``: fit a scaling law with honest uncertainty.

Pipeline for one group of cells:

1. :func:`lawfit.data.as_frame` validates the data (one place for the contract);
   cells with ``status != "ok"`` and, by default, already-memorized cells
   (``loss_after <= ln 2``, as the paper) are excluded and recorded.
2. Global search by variable projection: for every point of a grid of the nonlinear
   parameters (e.g. alpha, beta) the linear ones (C, b) are solved in closed form by
   weighted least squares; the best 8 grid points start a batched
   Levenberg-Marquardt polish of the reduced problem (Kaufman's projected Jacobian);
   the best optimum is then polished on the full parameter vector (bounds, Huber,
   log space). No user starting values are needed; ``p0`` only adds a start.
3. Uncertainty: Wald (asymptotic covariance; sandwich for Huber), profile
   likelihood (F-based cutoff), and optionally a batched bootstrap (case, cluster,
   residual or wild) with percentile or BCa intervals.

The modules: :mod:`~lawfit.fitting.driver` (:func:`fit` and the fit of one group),
:mod:`~lawfit.fitting.options` (the checks of fit's options),
:mod:`~lawfit.fitting.exclusions` (the memorized cells excluded, the checks on the
data), :mod:`~lawfit.fitting.optimisation` (the global search, the fit space, the Huber
threshold and the goodness of fit), :mod:`~lawfit.fitting.diagnostics` (the flags, the
profile curves and the fitted points) and :mod:`~lawfit.fitting.resampling` (the
bootstrap).
"""

from __future__ import annotations

from lawfit.data import LN2
from lawfit.fitting.driver import fit

__all__ = ["fit", "LN2"]
