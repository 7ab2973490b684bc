"""The checks of the options of :func:`lawfit.fit`, before and after the data is read.

:func:`_checked_options` checks and normalises every option before the data is read,
in a fixed order (the first invalid one is reported), and :func:`_check_cluster_unit`
checks a cluster bootstrap's unit against the columns of the data read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit.bootstrap import RESAMPLING_UNITS, cluster_column
from lawfit.errors import LawfitError
from lawfit.forms import Form, get_form, resolve_inputs


def _checked_options(
    form: str | Form,
    *,
    capacity: str,
    exclude: str | float | None,
    loss: str,
    huber_delta: float | None,
    space: str,
    bootstrap: int,
    unit: str,
    ci_method: str,
    confidence_level: float,
    profile: bool,
    p0: Mapping[str, float] | None,
    fixed: Mapping[str, float] | None,
    rng: int | np.random.Generator | None,
) -> tuple[dict, np.random.Generator]:
    """Check the options of :func:`lawfit.fit` before the data is read, and normalise them.

    Parameters
    ----------
    form, fixed, capacity, p0, unit
        As in :func:`lawfit.fit`: the form, the parameters held fixed, the capacity
        input, the extra starts and the resampling unit.
    loss, space, ci_method, confidence_level, bootstrap, huber_delta, exclude, rng, profile
        As in :func:`lawfit.fit`.

    Returns
    -------
    opts : dict
        The keyword arguments of :func:`~lawfit.fitting.driver._fit_one` other than
        ``rng``, ``group`` and ``where``: the form (with ``fixed`` applied), its inputs
        and response, and the checked options (``confidence_level`` as ``level``).
    rng : numpy.random.Generator
        The bootstrap's generator.

    Raises
    ------
    LawfitError
        For the first invalid option, in this order: the form and ``fixed``,
        ``capacity``, ``loss``, ``space``, ``ci_method``, ``confidence_level``,
        ``bootstrap``, ``huber_delta``, ``exclude``, ``rng``, ``p0``, then a ``unit``
        that is neither a resampling unit nor a column name.
    """
    form_obj = get_form(form)
    if fixed:
        form_obj = form_obj.with_fixed(fixed)
    inputs = resolve_inputs(form_obj, capacity)
    V.one_of(loss, "loss", ("l2", "huber"))
    V.one_of(space, "space", ("auto", "linear", "log"))
    V.one_of(ci_method, "ci_method", ("percentile", "bca"))
    confidence_level = V.confidence_level(confidence_level)
    bootstrap = V.bootstrap_count(bootstrap)
    huber_delta = None if huber_delta is None else V.positive_number(huber_delta, "huber_delta")
    exclude = V.exclude_rule(exclude)
    rng = V.random_generator(rng)
    if p0 is not None:
        bad = [p for p in p0 if p not in form_obj.params]
        if bad:
            raise LawfitError(
                f"p0 names unknown parameter(s) {bad}; the form's parameters are {form_obj.params}."
            )
    if bootstrap and unit not in RESAMPLING_UNITS and not isinstance(unit, str):
        raise LawfitError(f"unit must be one of {RESAMPLING_UNITS} or a column name; got {unit!r}.")
    opts = dict(
        form=form_obj,
        inputs=inputs,
        response=form_obj.response,
        exclude=exclude,
        loss=loss,
        huber_delta=huber_delta,
        space=space,
        bootstrap=int(bootstrap),
        unit=unit,
        ci_method=ci_method,
        level=float(confidence_level),
        profile=profile,
        p0=p0,
        capacity=capacity,
    )
    return opts, rng


def _check_cluster_unit(frame: pd.DataFrame, unit: str) -> None:
    """Raise when a cluster bootstrap's unit names no column of the data.

    Parameters
    ----------
    frame : pandas.DataFrame
        Cells read from the data.
    unit : str
        Resampling unit. ``"cell"``, ``"residual"`` and ``"wild"`` need no column;
        ``"run"`` clusters on ``seed`` when the data has no ``run`` column.

    Raises
    ------
    LawfitError
        When the column to cluster on is not in the data.
    """
    if unit in ("cell", "residual", "wild"):
        return
    col = cluster_column(frame, unit)
    if col not in frame.columns:
        raise LawfitError(
            f"unit={unit!r} needs a {col!r} dim/column to cluster on; the data has "
            f"{list(frame.columns)}. Use unit='cell' or add the column."
        )
