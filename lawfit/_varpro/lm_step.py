"""One Levenberg-Marquardt step and its acceptance rule.

Shared by the generic :func:`~lawfit._varpro.levenberg.lm` and the power law's
:func:`~lawfit._varpro.power.lm_power`: damping, acceptance and convergence.
"""

from __future__ import annotations

import numpy as np

from lawfit._varpro.linear import _solve_spd
from lawfit._varpro.loss import _TINY


def _damped_step(
    A: np.ndarray,
    g: np.ndarray,
    lam: np.ndarray,
    act: np.ndarray,
    done: np.ndarray,
    conv: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt step of the active replicates, damped relative to the diagonal.

    Parameters
    ----------
    A : numpy.ndarray, shape (a, p, p)
        Normal matrices of the active replicates.
    g : numpy.ndarray, shape (a, p)
        Their gradients (``Jᵀ W r``).
    lam : numpy.ndarray, shape (a,)
        Their damping.
    act : numpy.ndarray of int
        Indices of the active replicates among all.
    done, conv : numpy.ndarray of bool
        State over all replicates; a replicate with no usable step is marked done and
        not converged, in place.

    Returns
    -------
    step : numpy.ndarray, shape (a, p)
        The steps (0 where singular).
    singular : numpy.ndarray of bool, shape (a,)
        Replicates whose damped system had no finite solution.
    """
    diag = np.einsum("rii->ri", A)
    diag = np.where(diag > 0, diag, 1e-12)
    step = _solve_spd(A + lam[:, None, None] * diag[:, :, None] * np.eye(A.shape[1]), g)
    singular = ~np.all(np.isfinite(step), axis=1)
    if singular.any():  # no usable step: a failed fit, never a silent "convergence"
        done[act[singular]] = True
        conv[act[singular]] = False
        step = np.where(np.isfinite(step), step, 0.0)
    return step, singular


def _lm_accept(act, new, o_new, step_norm, scale, singular, *, state, ftol, xtol, carry=()):
    """Accept or reject one batched Levenberg-Marquardt trial step, in place.

    ``state`` is ``(theta, obj, lam, conv, done, nit)`` over all replicates; ``act`` indexes
    the active ones, whose trial parameters ``new`` have objective ``o_new``. ``carry`` pairs
    (array, trial values) of extra per-replicate state kept where the step is accepted.
    Damping falls by 3 on acceptance and rises by 4 on rejection; a replicate converges on a
    small accepted step, or when no descent direction is left (the damping explodes or a
    rejected step changes the objective only at rounding level); non-finite parameters fail.
    """
    theta, obj, lam, conv, done, nit = state
    o_old = obj[act]
    ok = np.isfinite(o_new) & (o_new <= o_old) & np.all(np.isfinite(new), axis=1)
    small_f = (o_old - o_new) <= ftol * np.maximum(o_old, _TINY)
    small_x = step_norm <= xtol * scale
    nit[act] += 1
    acc = act[ok]
    theta[acc] = new[ok]
    obj[acc] = o_new[ok]
    for array, trial in carry:
        array[acc] = trial[ok]
    lam[acc] = np.maximum(lam[acc] / 3.0, 1e-12)
    rej = act[~ok]
    lam[rej] = lam[rej] * 4.0
    fin = ok & (small_f | small_x) & ~singular
    conv[act[fin]] = True
    done[act[fin]] = True
    flat = (~ok) & np.isfinite(o_new) & (np.abs(o_new - o_old) <= ftol * np.maximum(o_old, _TINY))
    stuck = (((~ok) & (lam[act] > 1e12)) | flat) & ~singular
    conv[act[stuck]] = True
    done[act[stuck]] = True
    bad = ~np.all(np.isfinite(theta[act]), axis=1)
    done[act[bad]] = True
    conv[act[bad]] = False
