"""Cluster-robust intervals of a fitted law: CR2 sandwich, Bell-McCaffrey degrees of freedom.

Cells that share a target sequence (or an initialisation seed) share errors: a sequence
that is easier to store raises every cell of it. The case bootstrap then treats
correlated cells as independent and its intervals are too narrow, and the cluster
bootstrap, which resamples whole sequences, is too narrow as well with few of them (71 %
coverage of a 95 % interval at 3 clusters; docs/lawfit.md, calibration) and cannot refit
a resample that loses the only cell at some design point.

This interval keeps every cell. The fit is linearised at its estimate θ̂ (Jacobian J in
the fit's space, residuals e, hat matrix H = J(JᵀJ)⁻¹Jᵀ), and

    Cov(θ̂) = (JᵀJ)⁻¹ [Σ_g J_gᵀ A_g e_g e_gᵀ A_g J_g] (JᵀJ)⁻¹,   A_g = (I − H_gg)^(−1/2),

summing over the G clusters g (the bias-reduced CR2 estimator of Bell & McCaffrey 2002,
Survey Methodology 28:169). The interval is θ̂ ± t_ν · se with, per parameter, the
Bell-McCaffrey degrees of freedom ν = (Σλ)² / Σλ² over the eigenvalues λ of GᵀG, where
column g of G is (I − H)_{·g} A_g J_g (JᵀJ)⁻¹ eⱼ (Imbens & Kolesár 2016, Review of
Economics and Statistics 98:701). With equal clusters ν = G − 1; when one cluster holds
most of the information on a parameter (a sweep whose long targets exist on one
sequence only), ν falls towards 1 and the interval widens accordingly, where the usual
CR1 sandwich with t(G − 1) under-covers (81 % for β in such a design). Coverage on
synthetic sweeps: docs/lawfit.md ("Few clusters"), ``benchmarks/calibration.py``.

The modules: :mod:`~lawfit.robust.linearisation` (:func:`linearised`: the fit's Jacobian
and residuals in its fitting space, and each cell's cluster),
:mod:`~lawfit.robust.covariance` (:func:`cr2_covariance`, :func:`cluster_covariance` and
:func:`bell_mccaffrey_dof`: the CR2 sandwich and its dof),
:mod:`~lawfit.robust.parameter_intervals` (:func:`cluster_interval`,
:func:`contrast_test`, :func:`log_delta_interval` and :func:`preferred_interval`: the
parameters, their contrasts and functions of them), :mod:`~lawfit.robust.scatter`
(:func:`variance_components` and :func:`sequence_offsets`: the cells' scatter between and
within target sequences) and :mod:`~lawfit.robust.law_intervals`
(:func:`law_mean_interval` and :func:`law_prediction_interval`: the law at given inputs,
its mean and one new cell) and :mod:`~lawfit.robust.held_out`
(:func:`leave_one_out_coverage`: how often the one-cell interval, fitted without a cell,
holds it). Every name the rest of lawfit and the tests use is importable from here.
"""

from __future__ import annotations

# the names marked noqa are re-exported: other modules and the tests import them from
# lawfit.robust, as when it was one module
from lawfit.robust.covariance import (
    _cr2_parts,  # noqa: F401
    _inverse_sqrt,  # noqa: F401
    _sandwich,  # noqa: F401
    bell_mccaffrey_dof,
    cluster_covariance,
    cr2_covariance,
)
from lawfit.robust.held_out import HeldOutCoverage, leave_one_out_coverage
from lawfit.robust.law_intervals import law_mean_interval, law_prediction_interval
from lawfit.robust.linearisation import _clusters, linearised  # noqa: F401
from lawfit.robust.parameter_intervals import (
    cluster_interval,
    contrast_test,  # noqa: F401
    log_delta_interval,  # noqa: F401
    preferred_interval,  # noqa: F401
)
from lawfit.robust.scatter import (
    _log_residuals,  # noqa: F401
    sequence_offsets,
    variance_components,
)

__all__ = [
    "bell_mccaffrey_dof",
    "cluster_covariance",
    "cluster_interval",
    "cr2_covariance",
    "HeldOutCoverage",
    "law_mean_interval",
    "law_prediction_interval",
    "leave_one_out_coverage",
    "linearised",
    "sequence_offsets",
    "variance_components",
]
