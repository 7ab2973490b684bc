"""The fit space (ΔL or log ΔL), decided from a heteroscedasticity test: one rule for lawfit.

Memorization sweeps have multiplicative noise: the spread of ΔL grows with ΔL. Fitted
with unweighted least squares in linear space, a handful of the largest cells dominate
the fit, the estimate is several times less precise than the log-space (maximum
likelihood) fit, and the case-bootstrap percentile interval is short (the bootstrap
under-estimates the spread of a fit dominated by few high-leverage cells; see
docs/lawfit.md, "Calibration"). The log-space fit of the same data is efficient and its
intervals are calibrated.

The rule (:func:`choose_space`): fit in log space when

1. every ΔL is positive (log ΔL exists),
2. the linear-space residuals are heteroscedastic: a Breusch-Pagan test of the squared
   residuals against the fitted values rejects at :data:`HETEROSCEDASTIC_P`, and
3. the log transform removes the problem rather than reversing it: the log-space
   residuals' Breusch-Pagan p-value is larger than the linear-space one. (With additive
   noise, a chance rejection in linear space is not followed, because log residuals
   then shrink with ΔL and their test rejects far more strongly.)

Otherwise the fit stays in linear space. :func:`lawfit.fit` (``space="auto"``, the
default), :func:`lawfit.compare` (its ``heteroscedasticity_pvalue``) and the report all
decide through this module, from test results, never from text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["HETEROSCEDASTIC_P", "SpaceChoice", "breusch_pagan_pvalue", "choose_space"]

#: Breusch-Pagan p-value under which linear-space residuals count as heteroscedastic.
HETEROSCEDASTIC_P = 0.01


@dataclass(frozen=True)
class SpaceChoice:
    """Outcome of :func:`choose_space`.

    Attributes
    ----------
    space : {"linear", "log"}
        The chosen fit space.
    pvalue_linear : float or None
        Breusch-Pagan p-value of the linear-space residuals (None: not computable).
    pvalue_log : float or None
        Breusch-Pagan p-value of the log-space residuals (None: not computed, because
        the linear residuals were not heteroscedastic or ΔL is not positive).
    reason : str
        One sentence saying why.
    """

    space: str
    pvalue_linear: float | None
    pvalue_log: float | None
    reason: str

    def to_dict(self) -> dict:
        """Plain JSON-safe dict (stored in a fit's ``meta["space_choice"]``)."""
        return {
            "space": self.space,
            "pvalue_linear": self.pvalue_linear,
            "pvalue_log": self.pvalue_log,
            "reason": self.reason,
        }


def breusch_pagan_pvalue(residuals, fitted) -> float | None:
    """Breusch-Pagan p-value of ``residuals`` against ``fitted`` (statsmodels).

    Parameters
    ----------
    residuals : array_like, shape (n,)
        Residuals on the fit scale (ΔL, or log ΔL for a log-space fit).
    fitted : array_like, shape (n,)
        Fitted ΔL (the regressor of the squared residuals).

    Returns
    -------
    float or None
        None with fewer than 8 points, constant fitted values or a singular test.
    """
    from statsmodels.stats.diagnostic import het_breuschpagan

    e = np.asarray(residuals, float)
    fv = np.asarray(fitted, float)
    if e.size < 8 or not np.all(np.isfinite(e) & np.isfinite(fv)) or np.ptp(fv) == 0:
        return None
    try:
        p = float(het_breuschpagan(e, np.column_stack([np.ones_like(fv), fv]))[1])
    except (ValueError, np.linalg.LinAlgError):  # pragma: no cover
        return None
    return p if np.isfinite(p) else None


def choose_space(
    pvalue_linear: float | None,
    pvalue_log: Callable[[], float | None],
    *,
    positive: bool,
    threshold: float = HETEROSCEDASTIC_P,
) -> SpaceChoice:
    """Decide between a linear- and a log-space fit (the rule in the module docstring).

    Parameters
    ----------
    pvalue_linear : float or None
        Breusch-Pagan p-value of the linear-space residuals.
    pvalue_log : callable
        Returns the log-space residuals' p-value; called only when the linear residuals
        are heteroscedastic and ΔL is positive (a log-space fit costs a fit).
    positive : bool
        Every ΔL is > 0.
    threshold : float
        Significance level of the heteroscedasticity test.

    Returns
    -------
    SpaceChoice
    """
    if pvalue_linear is None or pvalue_linear >= threshold:
        shown = "not computable" if pvalue_linear is None else f"p = {pvalue_linear:.2g}"
        return SpaceChoice(
            "linear",
            pvalue_linear,
            None,
            f"linear-space residuals not heteroscedastic (Breusch-Pagan {shown})",
        )
    if not positive:
        return SpaceChoice(
            "linear",
            pvalue_linear,
            None,
            f"heteroscedastic (Breusch-Pagan p = {pvalue_linear:.2g}) but some "
            "ΔL <= 0, so log ΔL does not exist: kept in linear space",
        )
    p_log = pvalue_log()
    if p_log is not None and p_log > pvalue_linear:
        return SpaceChoice(
            "log",
            pvalue_linear,
            p_log,
            f"residual spread grows with ΔL (Breusch-Pagan p = "
            f"{pvalue_linear:.2g}) and log space removes it (p = {p_log:.2g}): "
            "multiplicative noise, fitted in log space",
        )
    shown = "not computable" if p_log is None else f"p = {p_log:.2g}"
    return SpaceChoice(
        "linear",
        pvalue_linear,
        p_log,
        f"heteroscedastic (Breusch-Pagan p = {pvalue_linear:.2g}) but log space "
        f"is no better ({shown}): kept in linear space",
    )
