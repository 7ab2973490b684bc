"""Whether a design can identify a form's parameters.

:func:`check_identifiable` raises when it cannot (too few distinct values of an input,
too few points or distinct design points for the parameters); :func:`design_identifies`
decides, from the rank of the form's Jacobian over the design at parameter points drawn
by :func:`_probe_range`, whether a form is identified all the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError


def check_identifiable(
    frame: pd.DataFrame, inputs: Sequence[str], n_params: int, where: str = "", form=None
) -> None:
    """Raise if the design cannot identify the form's parameters.

    Each input needs at least two distinct values (one length cannot identify
    ``beta``; one rank cannot identify ``alpha``), unless ``form`` is given and its
    parameters are identified on this design all the same: a form of the ratio
    ``r/ℓ`` alone (``ratio_no_offset``) needs several ratios, not several ranks. That
    is decided by the rank of the form's Jacobian over the design
    (:func:`design_identifies`). There must also be more points than parameters, and
    more *distinct* design points than parameters: replicates of one point (seeds,
    target sequences) measure the noise, not the law's shape, so five cells at three
    (rank, length) points leave a four-parameter law undetermined. The bootstrap asks
    the same of each resample (:func:`lawfit.bootstrap.identifiable_rows`).
    """
    for c in inputs:
        u = np.unique(frame[c].to_numpy(float))
        if u.size < 2 and not (form is not None and design_identifies(form, frame)):
            what = {"length": "beta", "rank": "alpha", "n_params": "alpha", "n_bytes": "alpha"}.get(
                c, "its exponent"
            )
            raise LawfitError(
                f"{where}only a single {c} ({u.tolist()}) in the data: cannot identify {what}. "
                f"Expected at least 2 distinct values of {c!r} (better 4+); add cells or fix "
                f"the selection."
            )
    n = frame.shape[0]
    if n <= n_params:
        raise LawfitError(
            f"{where}{n} usable point(s) for {n_params} parameters; expected more "
            "points than parameters. Add cells or use exclude=None."
        )
    points = frame[list(inputs)].drop_duplicates()
    if points.shape[0] <= n_params:
        raise LawfitError(
            f"{where}{n} usable cells sit at only {points.shape[0]} distinct design point(s) "
            f"of ({', '.join(inputs)}) for {n_params} parameters: replicates measure the "
            "noise, not the law's shape, so a family of parameter values fits equally well. "
            "Expected more distinct points than parameters; add cells at new points."
        )


def design_identifies(form, frame: pd.DataFrame, tries: int = 3, tol: float = 1e-6) -> bool:
    """Tell whether ``form``'s parameters are locally identified on the design of ``frame``.

    The Jacobian of the form with respect to its parameters, over the design points
    (central differences, columns scaled to unit norm), must have full column rank at one
    of ``tries`` parameter points drawn inside the form's search ranges (or bounds). One
    rank with a law in ``r^α`` gives a column proportional to the scale's: rank deficient.
    """
    from lawfit.design import form_jacobian

    rng = np.random.default_rng(0)
    for _ in range(tries):
        theta = {p: rng.uniform(*_probe_range(form, p)) for p in form.params}
        with np.errstate(all="ignore"):
            J = form_jacobian(form, frame, theta)
        if not np.all(np.isfinite(J)):
            continue
        norms = np.linalg.norm(J, axis=0)
        if np.any(norms == 0):
            continue
        s = np.linalg.svd(J / norms, compute_uv=False)
        if s[-1] > tol * s[0]:
            return True
    return False


def _probe_range(form, p: str) -> tuple[float, float]:
    """Return a finite range inside a parameter's search range or bounds (Jacobian probes)."""
    lo, hi = form.search.get(p, form.bounds[p])
    if math.isfinite(lo) and math.isfinite(hi):
        return lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)
    if math.isfinite(lo):
        return lo + 0.5, lo + 2.0
    if math.isfinite(hi):
        return hi - 2.0, hi - 0.5
    return 0.5, 2.0
