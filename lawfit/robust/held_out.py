"""Leave one cell out: how often a fit's one-cell prediction intervals hold its own cells.

:func:`~lawfit.robust.law_prediction_interval` is calibrated on synthetic sweeps with a
known law (docs/lawfit.md); on real cells the question is whether their scatter is what
it assumes (log-normal, one level per target sequence). :func:`leave_one_out_coverage`
refits the law without each cell in turn, with the fit's own form and settings, predicts
the held-out cell from the others (a cell of its own sequence where that sequence keeps
other cells, else of a new sequence) and counts how often the interval holds it. The
folds share most of their cells, so the count is not binomial: read its binomial p-value
as a screen, not a test; a form that misses the cell's neighbourhood shows up as misses
where the design is sparse.
"""

from __future__ import annotations

import dataclasses
import warnings

import pandas as pd
from scipy import stats

from lawfit.errors import LawfitError
from lawfit.robust.law_intervals import law_prediction_interval


@dataclasses.dataclass(frozen=True)
class HeldOutCoverage:
    """Coverage of one-cell prediction intervals, each cell held out of its own fit.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per cell: its inputs, ``cluster`` value, ``measured`` response,
        ``predicted`` centre, ``low``, ``high``, ``inside``, ``error_pct`` (measured against
        the centre) and ``interval`` ("cell of this sequence" or "cell of a new sequence").
    covered, n : int
        Cells inside their interval, and cells predicted.
    level : float
        The intervals' nominal level.
    pvalue : float
        P(at most ``covered`` of ``n``) were each interval an independent ``level`` one.
    """

    table: pd.DataFrame
    covered: int
    n: int
    level: float
    pvalue: float

    def __str__(self) -> str:
        return (
            f"held out one at a time, {self.covered} of {self.n} cells inside their "
            f"{self.level:.0%} interval (P(at most {self.covered} of {self.n}) = "
            f"{self.pvalue:.3f} were they independent)"
        )


def leave_one_out_coverage(
    result, *, cluster: str, level: float = 0.95, in_cluster: bool = True
) -> HeldOutCoverage:
    """Refit ``result`` without each of its cells and score the held-out cell's interval.

    Parameters
    ----------
    result : FitResult
        A least-squares fit of one group (:func:`lawfit.fit`); its fitted cells
        (``result.points``) are held out one at a time.
    cluster : str
        The column of ``result.points`` naming the target sequences (``"data_seed"``).
    level : float
        Level of the prediction intervals.
    in_cluster : bool
        Predict each cell as one of its own sequence (the sequence's other cells move the
        centre; :func:`law_prediction_interval` ``in_cluster=``) where the sequence keeps
        other cells; ``False``: always as a cell of a new sequence.

    Returns
    -------
    HeldOutCoverage

    Raises
    ------
    LawfitError
        ``cluster`` is not a column of the fitted cells, or a fold cannot be fitted.
    """
    points = result.points.reset_index(drop=True)
    if cluster not in points.columns:
        raise LawfitError(
            f"cluster={cluster!r} is not a column of the fitted cells; expected one of "
            f"{sorted(points.columns)} (e.g. 'data_seed')."
        )
    rows = [_held_out_row(result, points, i, cluster, level, in_cluster) for i in points.index]
    table = pd.DataFrame(rows)
    covered, n = int(table["inside"].sum()), len(table)
    pvalue = float(stats.binom.cdf(covered, n, level))
    return HeldOutCoverage(table, covered, n, level, pvalue)


def _held_out_row(result, points, i, cluster, level, in_cluster) -> dict:
    """Fit without cell ``i``, predict it, and say whether its interval holds it."""
    from lawfit.fitting import fit

    rest, cell = points.drop(index=i), points.loc[i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = fit(
            rest,
            result.form,
            capacity=result.capacity,
            exclude=None,  # the fit's cells, as it fitted them
            loss=result.loss,
            huber_delta=result.huber_delta,
            space=result.space,
            profile=False,
        )
    own = in_cluster and bool((rest[cluster] == cell[cluster]).any())
    inputs = {name: float(cell[name]) for name in result.inputs}
    out = law_prediction_interval(
        refit, cluster=cluster, level=level, in_cluster=cell[cluster] if own else None, **inputs
    ).iloc[0]
    measured = float(cell[result.response])
    return {
        **inputs,
        cluster: cell[cluster],
        "measured": measured,
        "predicted": float(out["predicted"]),
        "low": float(out["low"]),
        "high": float(out["high"]),
        "inside": bool(out["low"] <= measured <= out["high"]),
        "error_pct": 100.0 * (measured / float(out["predicted"]) - 1.0),
        "interval": "cell of this sequence" if own else "cell of a new sequence",
    }
