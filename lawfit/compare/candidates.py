"""Candidate forms of a comparison: the data they share, their fits and held-out errors.

:func:`_frame` builds the tidy frame every candidate is fitted on, :func:`_check_options`,
:func:`_candidate_forms` and :func:`_usable_forms` decide which forms are fitted,
:func:`_fit_candidates` fits them on the same points, and :func:`_holdout` and
:func:`_leave_one_target_out` measure held-out errors of ΔL.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

import lawfit.forms_extra as _fx
from lawfit import _validate as V
from lawfit.compare.statistics import pointwise_loglik
from lawfit.data import as_frame, memorized_threshold
from lawfit.errors import LawfitError
from lawfit.fitting import fit
from lawfit.forms import get_form
from lawfit.space import breusch_pagan_pvalue

HOLDOUT_AXES = ("rank", "length", "data_seed")
"""Held-out errors :func:`lawfit.compare` can compute: extrapolation in rank and in length,
and leaving one target sequence (``data_seed``) out."""


def _frame(ds, forms, capacity, pool):
    """Return the validated tidy frame with every column any candidate needs."""
    need = ["loss_reduction"]
    for f in forms:
        for i in f.inputs:
            if i not in ("rank", "length") and i not in need:
                need.append(i)
    from lawfit.data import GROUP_DIMS, load_data

    ds = load_data(ds)
    if isinstance(ds, pd.DataFrame):
        multi = [
            c
            for c in GROUP_DIMS
            if c in ds.columns and c not in pool and ds[c].nunique(dropna=False) > 1
        ]
    elif hasattr(ds, "dims"):
        multi = [d for d in GROUP_DIMS if d in ds.dims and ds.sizes[d] > 1 and d not in pool]
    else:
        multi = []
    if multi:
        raise LawfitError(
            f"compare ranks forms within one setting, but the data has grouping dim(s) of size "
            f"> 1: {multi}. Select one setting first, e.g. ds.sel({{{multi[0]!r}: ...}}) (or "
            f"filter the frame), or pool them into one law with pool={tuple(multi)!r}."
        )
    if isinstance(ds, pd.DataFrame):
        variables = [v for v in need if v in ds.columns]
        frame, excl = as_frame(
            ds, variables=variables, by=list(pool) or None, inputs=("rank", "length")
        )
    else:
        import xarray as xr

        if not isinstance(ds, xr.Dataset):
            raise LawfitError(
                f"expected an xarray.Dataset or a pandas.DataFrame; got {type(ds).__name__}. "
                "Load the file first (xarray.load_dataset) or pass a tidy frame."
            )
        variables = [v for v in need if v in ds.data_vars]
        frame, excl = as_frame(
            ds, variables=variables, by=list(pool) or None, inputs=("rank", "length")
        )
        if "n_params" in ds.data_vars and "n_params" not in frame.columns:
            npar = ds["n_params"].to_dataframe().reset_index()
            keys = [c for c in npar.columns if c in frame.columns and c != "n_params"]
            frame = frame.merge(npar[keys + ["n_params"]], on=keys, how="left")
    if pool:
        cols = [c for c in list(pool) + ["seed"] if c in frame.columns]
        frame["run"] = pd.factorize(pd.MultiIndex.from_frame(frame[cols].astype(str)))[0]
        frame = frame.drop(columns=list(pool))
    return frame, excl


def _heteroscedasticity(points: pd.DataFrame) -> float | None:
    """Breusch-Pagan p-value of the residuals against the fitted values (or None)."""
    return breusch_pagan_pvalue(points["residual"], points["fitted"])


def _predict(form, params, frame):
    args = [frame[c].to_numpy(float) for c in form.inputs]
    with np.errstate(all="ignore"):
        out = form.func(*args, **{p: float(params[p]) for p in form.params})
    return np.broadcast_to(np.asarray(out, float), (len(frame),))


def _quiet_fit(data, form, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(data, form, **kw)


def _evaluable(frame: pd.DataFrame, exclude) -> pd.DataFrame:
    """Return the cells a held-out error is measured on: those the exclusion rule keeps."""
    if exclude is not None and "loss_after" in frame.columns:
        return frame[frame["loss_after"] > memorized_threshold(exclude)]
    return frame


def _errors(form, params, test: pd.DataFrame) -> np.ndarray:
    """Prediction errors of ΔL on ``test`` (not yet squared, so folds can be pooled)."""
    return _predict(form, params, test) - test["loss_reduction"].to_numpy(float)


def _leave_one_target_out(frame, form, kw, exclude) -> float:
    """RMSE of ΔL on each target sequence's cells, from the form fitted on the others.

    Cells of one sequence share its errors, so this is the held-out error that speaks for
    new content; NaN without 2+ ``data_seed`` values or when a fold cannot be fitted.
    """
    if "data_seed" not in frame.columns or frame["data_seed"].nunique() < 2:
        return math.nan
    evaluable, errors = _evaluable(frame, exclude), []
    for seq in sorted(frame["data_seed"].unique()):
        test = evaluable[evaluable["data_seed"] == seq]
        if test.empty:
            continue
        train = frame[frame["data_seed"] != seq].reset_index(drop=True)
        try:
            res = _quiet_fit(train, form, exclude=exclude, **kw)
        except LawfitError:
            return math.nan
        errors.append(_errors(form, res.params, test))
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2))) if errors else math.nan


def _holdout(frame, form, axis, kw, exclude):
    """Fit on cells with axis < top, RMSE of ΔL at top: the largest evaluable value."""
    evaluable = _evaluable(frame, exclude)
    if evaluable.empty:
        return math.nan
    # the largest value that still has cells that are not memorized
    top = evaluable[axis].max()
    train, test = frame[frame[axis] < top], evaluable[evaluable[axis] == top]
    if len(test) == 0 or train[axis].nunique() < 2:
        return math.nan
    try:
        res = _quiet_fit(train.reset_index(drop=True), form, exclude=exclude, **kw)
    except LawfitError:
        return math.nan
    return float(np.sqrt(np.mean(_errors(form, res.params, test) ** 2)))


def _check_options(
    loss: str, criterion: str, exclude: str | float | None, holdout: Sequence[str]
) -> str | float | None:
    """Reject options :func:`compare` cannot use; return the validated exclusion rule.

    Parameters
    ----------
    loss : str
        Must be ``"l2"``: the criteria need a likelihood.
    criterion : str
        ``"aicc"`` or ``"bic"``.
    exclude : {"memorized"} or float or None
        Exclusion rule passed on to :func:`lawfit.fit`.
    holdout : sequence of str
        Held-out errors among ``"rank"``, ``"length"`` and ``"data_seed"``.

    Returns
    -------
    str or float or None
        ``exclude`` as :func:`lawfit._validate.exclude_rule` normalises it.

    Raises
    ------
    LawfitError
        Any option outside its allowed values (checked in the order above).
    """
    if loss != "l2":
        raise LawfitError(
            f"compare needs a likelihood, so loss must be 'l2'; got {loss!r}. Use "
            "lawfit.fit(..., loss='huber') for a robust fit of a single form."
        )
    V.one_of(criterion, "criterion", ("aicc", "bic"))
    exclude = V.exclude_rule(exclude)
    bad_h = [h for h in holdout if h not in HOLDOUT_AXES]
    if bad_h:
        raise LawfitError(
            f"holdout axes must be among {list(HOLDOUT_AXES)}; got {bad_h}. Pass "
            "holdout=() to skip every held-out error."
        )
    return exclude


def _candidate_forms(forms: Sequence[str] | None) -> list:
    """Look up the candidate forms (the built-in candidates when ``forms`` is None).

    Parameters
    ----------
    forms : sequence of str or None
        Registered form names.

    Returns
    -------
    list of Form
        One form object per name, in the given order.

    Raises
    ------
    LawfitError
        A name listed twice, or an unknown form.
    """
    names = list(_fx.BUILTIN_CANDIDATES if forms is None else forms)
    if len(set(names)) != len(names):
        raise LawfitError(f"forms contains duplicates: {names}. List each form once.")
    return [get_form(n) for n in names]


def _nparams_is_rank(frame: pd.DataFrame) -> bool:
    """Return True when ``n_params`` is proportional to ``rank`` on every cell."""
    ratio = frame["n_params"].to_numpy(float) / frame["rank"].to_numpy(float)
    return bool(np.ptp(ratio) <= 1e-9 * ratio.max())


def _usable_forms(
    form_objs: list, frame: pd.DataFrame, notes: list[str], *, default_forms: bool
) -> list:
    """Keep the forms the data can fit; note each one skipped and why.

    Parameters
    ----------
    form_objs : list of Form
        Candidate forms.
    frame : pandas.DataFrame
        Tidy data from :func:`_frame`.
    notes : list of str
        Appended with one note per skipped form.
    default_forms : bool
        True when the user did not name the forms: then ``power_law_nparams`` is skipped
        where ``n_params`` is proportional to rank (the same law as ``power_law``).

    Returns
    -------
    list of Form
        The forms whose inputs the frame has.
    """
    usable = []
    for f in form_objs:
        missing = [c for c in f.inputs if c not in frame.columns]
        if missing:
            notes.append(f"{f.name} skipped: the data lacks {missing}")
            continue
        if (
            f.name == "power_law_nparams"
            and "n_params" in frame
            and default_forms
            and _nparams_is_rank(frame)
        ):
            notes.append(
                "power_law_nparams skipped: n_params is proportional to rank here, so it "
                "is the same law as power_law (pass pool=('modules',) over several "
                "modules/models to compare them)"
            )
            continue
        usable.append(f)
    return usable


def _fit_candidates(
    usable: list, frame: pd.DataFrame, kw: dict, exclude: str | float | None, notes: list[str]
) -> tuple[dict, dict]:
    """Fit every usable form on the same points, keeping pointwise log-likelihoods.

    Parameters
    ----------
    usable : list of Form
        Forms to fit.
    frame : pandas.DataFrame
        Tidy data.
    kw : dict
        Keyword arguments for :func:`lawfit.fit` (loss, space, profile, bootstrap).
    exclude : {"memorized"} or float or None
        Exclusion rule.
    notes : list of str
        Appended with a note per form that could not be fitted.

    Returns
    -------
    fits : dict
        Form name → FitResult, in fitting order.
    lls : dict
        Form name → (pointwise log-likelihood array, fitted points frame).

    Raises
    ------
    LawfitError
        Fewer than two forms could be fitted; the message groups the fit errors.
    """
    fits, lls = {}, {}
    failures: dict[str, list[str]] = {}
    n_ref = None
    for f in usable:
        try:
            res = _quiet_fit(frame, f, exclude=exclude, **kw)
        except LawfitError as exc:
            notes.append(f"{f.name} not fitted: {exc}")
            failures.setdefault(str(exc), []).append(f.name)
            continue
        pts = res.points
        if n_ref is None:
            n_ref = len(pts)
        elif len(pts) != n_ref:  # pragma: no cover - exclusion depends on data only
            notes.append(f"{f.name} fitted on {len(pts)} points, not {n_ref}: left out")
            continue
        y = pts["loss_reduction"].to_numpy(float)
        lls[f.name] = (pointwise_loglik(pts["residual"].to_numpy(float), y, kw["space"]), pts)
        fits[f.name] = res
    if len(fits) < 2:
        why = "; ".join(f"{', '.join(names)}: {msg}" for msg, names in failures.items())
        raise LawfitError(
            f"compare needs at least two forms that can be fitted; got {len(fits)} "
            f"({list(fits)}). {why or 'See the notes.'} Add cells, forms, or the "
            "variables they need (loss_before, n_params)."
        )
    return fits, lls
