"""Numpy-only numerical core: batched variable projection and Levenberg-Marquardt.

Everything here works on *batches*: ``theta`` has shape ``(R, k)`` (R parameter
vectors), responses ``Y`` and weights ``W`` have shape ``(R, n)`` (or broadcast from
``(1, n)``). One point estimate is the batch R=1; a bootstrap is R replicates on the
same design with multinomial weights (case/cluster) or new responses (residual).

Objective per replicate (``z`` = y, or log y when ``space="log"``)::

    S(theta) = sum_i W_i * rho(z_i - m_i(theta))

with rho(r) = r**2 (l2) or the Huber function scaled to match r**2 inside
|r| <= delta: rho(r) = 2*delta*|r| - delta**2 outside.

The package holds one module per part of the core: ``model`` (:class:`Model`, a form
bound to a design), ``linear`` (the closed-form weighted least squares of the linear
parameters, :func:`solve_linear`, and :func:`collapse`, the exact merge of points with
identical inputs), ``loss`` (:func:`rho`, :func:`irls_weights`, the fit space's
:func:`transform` and the :func:`objective`), ``grid`` (the grid search:
:func:`grid_sse`, :func:`make_grid` and the power law's fast path,
:func:`power_law_logs`), ``lm_step`` (one damped Levenberg-Marquardt step and its
acceptance rule, shared by both iterations), ``levenberg`` (the generic :func:`lm`:
full or variable projection, IRLS for Huber), ``power`` (the power law's vectorised
:func:`lm_power` and :func:`power_shared_pieces`, its warm start) and ``asymptotic``
(:func:`covariance` at an estimate, Wald or sandwich). Every name the rest of lawfit
uses is importable from here.
"""

from __future__ import annotations

from lawfit._varpro.asymptotic import covariance
from lawfit._varpro.grid import grid_sse, make_grid, power_law_logs
from lawfit._varpro.levenberg import lm
from lawfit._varpro.linear import collapse, solve_linear
from lawfit._varpro.loss import irls_weights, objective, rho, transform
from lawfit._varpro.model import Model
from lawfit._varpro.power import _power_pieces as _power_pieces  # used by the tests
from lawfit._varpro.power import lm_power, power_shared_pieces

__all__ = [
    "Model",
    "collapse",
    "covariance",
    "grid_sse",
    "irls_weights",
    "lm",
    "lm_power",
    "make_grid",
    "objective",
    "power_law_logs",
    "power_shared_pieces",
    "rho",
    "solve_linear",
    "transform",
]
