"""Diagnostics of a fit: its flags, profile-likelihood curves and fitted points.

:func:`_diagnostic_flags` collects the flags (exclusions, convergence, multiple optima
by :func:`_multiple_optima`, growing spread by :func:`_spread_grows`, the space chosen),
:func:`_profiles` computes the profile curves and flags a lower objective, and
:func:`_fitted_points` returns the cells with their fitted values and residuals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit import _varpro as vp
from lawfit.data import REPLICATE_DIMS, exclusion_flags
from lawfit.profile import profile_curves
from lawfit.result import Flag


def _multiple_optima(global_fit: tuple, cov: np.ndarray, theta: np.ndarray) -> bool:
    """Say whether starts reaching the best objective disagree on the parameters.

    Parameters
    ----------
    global_fit : tuple
        :func:`_global_fit` output (estimate, objective, convergence, and the same per
        start).
    cov : numpy.ndarray
        Covariance of the final estimate (its standard errors set the tolerance).
    theta : numpy.ndarray
        Final estimate.

    Returns
    -------
    bool
        True when two starts with an equal objective are further apart than a tenth of
        a standard error: the parameters are not identified.
    """
    _, obj_l2, _, starts_th, starts_obj, starts_conv = global_fit
    good = starts_conv & np.isfinite(starts_obj)
    if good.sum() <= 1:
        return False
    close = starts_obj[good] <= obj_l2 * (1 + 1e-6) + 1e-300
    spread = np.ptp(starts_th[good][close], axis=0) if close.sum() > 1 else np.zeros(theta.size)
    se0 = np.sqrt(np.clip(np.diag(cov), 0, None))
    return bool(np.any(spread > np.maximum(0.1 * se0, 1e-6 * (1 + np.abs(theta)))))


def _spread_grows(resid: np.ndarray, fitted: np.ndarray, space: str) -> Flag | None:
    """Flag residuals whose size grows with the fitted value (Spearman rho > 0.3, p < 0.01).

    Parameters
    ----------
    resid : numpy.ndarray
        Residuals on the fit scale.
    fitted : numpy.ndarray
        Fitted values (linear scale).
    space : {"linear", "log"}
        Fit space.

    Returns
    -------
    Flag or None
        ``heteroscedastic`` when the rank correlation is clear.
    """
    from scipy.stats import spearmanr

    rho_, pval = spearmanr(np.abs(resid), vp.transform(fitted, space))
    if np.isfinite(rho_) and rho_ > 0.3 and pval < 0.01:
        return Flag(
            "heteroscedastic",
            f"residual spread grows with the fitted value "
            f"(Spearman {rho_:.2f}): heteroscedastic; Wald/profile intervals "
            "assume constant variance, prefer space='log' or the bootstrap",
        )
    return None


def _diagnostic_flags(
    exclusions: pd.DataFrame,
    conv: bool,
    global_fit: tuple,
    cov: np.ndarray,
    theta: np.ndarray,
    resid: np.ndarray,
    fitted: np.ndarray,
    space: str,
    loss: str,
    space_choice,
    n: int,
) -> list[Flag]:
    """Collect the flags of a fit: exclusions, convergence, identification, spread, space.

    Parameters
    ----------
    exclusions : pandas.DataFrame
        Excluded cells with reasons.
    conv : bool
        Whether the final optimizer converged.
    global_fit : tuple
        :func:`_global_fit` output, for the multiple-optima check.
    cov : numpy.ndarray
        Covariance of the estimate.
    theta : numpy.ndarray
        Final estimate.
    resid, fitted : numpy.ndarray
        Residuals (fit scale) and fitted values.
    space : {"linear", "log"}
        Fit space.
    loss : {"l2", "huber"}
        Loss (the spread check is for least squares only).
    space_choice : lawfit.space.SpaceChoice or None
        Decision of ``space="auto"``.
    n : int
        Number of cells fitted (the spread check needs 12).

    Returns
    -------
    list of Flag
        In a fixed order.
    """
    flags = exclusion_flags(exclusions)
    if not conv:
        flags.append(
            Flag("not_converged", "optimizer did not converge: estimates may be unreliable")
        )
    # distinct optima among the starts (start independence diagnostic)
    if _multiple_optima(global_fit, cov, theta):
        flags.append(
            Flag(
                "multiple_optima", "multiple optima with equal objective: parameters not identified"
            )
        )
    if n >= 12 and loss == "l2":
        spread = _spread_grows(resid, fitted, space)
        if spread is not None:
            flags.append(spread)
    if space_choice is not None and space_choice.space == "log":
        flags.append(Flag("log_space", f"space='auto': {space_choice.reason}", "info"))
    return flags


def _profiles(
    model: vp.Model,
    theta: np.ndarray,
    cov: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    space: str,
    loss: str,
    delta: float,
    dof: int,
    obj: float,
    flags: list[Flag],
) -> dict:
    """Profile-likelihood curves of every parameter; flag a profile that finds a lower optimum.

    Parameters
    ----------
    model : lawfit._varpro.Model
        The form on the data.
    theta, cov : numpy.ndarray
        Estimate and covariance.
    Y, W : numpy.ndarray
        Response and weights, one row.
    space, loss : str
        Fit space and loss.
    delta : float
        Huber threshold.
    dof : int
        Residual degrees of freedom.
    obj : float
        Objective at the estimate.
    flags : list of Flag
        Appended with ``profile_lower_objective`` where it applies.

    Returns
    -------
    dict
        Parameter name → profile curve, as :func:`lawfit.profile.profile_curves`.
    """
    prof = profile_curves(
        model, theta, cov, Y, W, space=space, loss=loss, delta=delta, dof=dof, s_hat=obj
    )
    for name, c in prof.items():
        if np.any(c["converged"] & (c["F"] < -0.01)):
            flags.append(
                Flag(
                    "profile_lower_objective",
                    f"profile of {name} found a lower objective: fit may be local",
                )
            )
    return prof


def _fitted_points(
    frame: pd.DataFrame,
    inputs: Sequence[str],
    response: str,
    fitted: np.ndarray,
    resid: np.ndarray,
    unit: str = "cell",
) -> pd.DataFrame:
    """Return the fitted cells: inputs, replicate ids, response, fitted value, residual.

    The replicate ids (``seed``, ``data_seed``, ``run``, a custom bootstrap ``unit``
    column) stay, so that intervals clustered on them can be computed afterwards.

    Parameters
    ----------
    frame : pandas.DataFrame
        Cells fitted.
    inputs : sequence of str
        Input columns.
    response : str
        Response column.
    fitted, resid : numpy.ndarray
        Fitted values and residuals.
    unit : str
        The bootstrap's resampling unit (kept when it names a column).

    Returns
    -------
    pandas.DataFrame
        The ``points`` of the FitResult.
    """
    ids = [*REPLICATE_DIMS, "run", unit]
    keep_cols = [
        c
        for c in dict.fromkeys([*inputs, *ids, response, "loss_after"])
        if isinstance(c, str) and c in frame.columns
    ]
    points = frame[keep_cols].copy()
    points["fitted"] = fitted
    points["residual"] = resid
    return points
