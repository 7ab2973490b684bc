"""The stop rules' tests on a cell's loss history: plateau, convergence, tokens still crossing."""

from __future__ import annotations


def plateaued(history: list[float], patience: int, min_delta: float) -> bool:
    """Tell whether training has stopped improving.

    True when the best loss of the last ``patience`` steps improved on the best before them by
    less than ``min_delta`` (relative).
    """
    if len(history) <= patience:
        return False
    before = min(history[:-patience])
    recent = min(history[-patience:])
    return before - recent < min_delta * max(before, 1e-8)


def converged(history: list[float], loss_before: float, window: float, tol: float) -> bool:
    """Tell whether ΔL has converged: the convergence stop's test at the step just logged.

    With ``t = len(history) - 1`` the step just logged, true when the best ΔL of steps
    ``0..t`` (``loss_before`` minus the lowest loss) exceeds the best of steps
    ``0..t - w``, ``w = max(1, round(window * t))``, by at most ``tol`` times itself: the
    cell gained at most ``tol`` of its ΔL over its last ``window`` share of steps. Best-so-far
    values, so an oscillating loss cannot pass the test on a dip.
    """
    t = len(history) - 1
    lookback = max(1, round(window * t))
    if t < lookback:
        return False
    best_now = loss_before - min(history)
    best_then = loss_before - min(history[: t - lookback + 1])
    return best_now > 0 and best_now - best_then <= tol * best_now


def above_rising(curve_steps, frac_curve, step: int, patience: int, start: int = 0) -> bool:
    """Tell whether more target tokens are above threshold than ever before ``patience`` steps ago.

    Uses the logged share of tokens with p > 0.5 (``frac_curve`` at ``curve_steps``): True when
    its maximum over the last ``patience`` steps exceeds its maximum from ``start`` up to then.
    MemFT objectives move tokens across the threshold while the mean loss may stay flat, so a
    loss plateau alone must not stop them.
    """
    logged = list(zip(curve_steps, frac_curve, strict=True))
    recent = [f for s, f in logged if step - patience < s <= step]
    before = [f for s, f in logged if start <= s <= step - patience]
    return bool(recent and before and max(recent) > max(before))
