"""The options of :func:`lawfit.transition.phase_transition`: their checks and settings.

:func:`_check_options` rejects an option outside its allowed values before anything is
fitted; :class:`_TokenOptions` carries the validated settings of the token-level analyses
(threshold fit, sufficiency, cascade) to the functions that run them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lawfit.errors import LawfitError


def _check_options(
    cascade_unit: str, censored: str, orders: tuple[str, ...], capacity: str
) -> None:
    """Reject an option of :func:`phase_transition` outside its allowed values.

    Parameters
    ----------
    cascade_unit : str
        ``"run"`` or ``"entry"``.
    censored : str
        ``"end"`` or ``"drop"``.
    orders : tuple of str
        Among ``"exact_match"``, ``"frac_above"``, ``"token_accuracy"``.
    capacity : str
        ``"rank"`` or ``"n_params"``.

    Raises
    ------
    LawfitError
        The first bad option, in the order above.
    """
    if cascade_unit not in ("run", "entry"):
        raise LawfitError(f"cascade_unit must be 'run' or 'entry'; got {cascade_unit!r}.")
    if censored not in ("end", "drop"):
        raise LawfitError(f"censored must be 'end' or 'drop'; got {censored!r}.")
    bad = [o for o in orders if o not in ("exact_match", "frac_above", "token_accuracy")]
    if bad:
        raise LawfitError(
            f"orders must be among 'exact_match', 'frac_above', 'token_accuracy'; got {bad}."
        )
    if capacity not in ("rank", "n_params"):
        raise LawfitError(f"capacity must be 'rank' or 'n_params'; got {capacity!r}.")


@dataclass(frozen=True)
class _TokenOptions:
    """Settings of the token-level analyses, as :func:`phase_transition` validated them."""

    condition_on_prefix: bool
    tie_tol: float
    cascade_unit: str
    censored: str
    level: float
    n_boot: int
    gen: np.random.Generator
    threshold_interval: str = "profile"
