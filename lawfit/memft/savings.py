"""Capacity MemFT saves over SFT, predicted from laws fitted per objective.

:func:`memft_savings` and its result :class:`MemftSavings`: one law per objective
(SFT and each ``memft_*``) inverted at each target length gives the rank each needs for
the fidelity target; the saving and its CI come from the two laws' bootstrap draws
combined draw by draw. Beside it: the argument checks, the fits per objective, the
smallest measured rank meeting the target, and the predictions table with its flags.
The shared-exponent predictions live in :mod:`lawfit.memft.shared_exponents`, the
check against measured cells in :mod:`lawfit.memft.validation`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit._tokens import load, ok_mask
from lawfit.data import LN2, collected_lengths, require_variables
from lawfit.errors import LawfitError
from lawfit.memft._common import _SPACE, _check_common
from lawfit.memft.gradient_shares import GradientBudget, gradient_budget
from lawfit.memft.paired import paired_ratios
from lawfit.memft.shared_exponents import _shared_exponent_savings
from lawfit.memft.validation import _validate, _validation_notes
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import FitResult, Flag

_PAIRED_TITLE = (
    "MemFT over SFT on the same cells (ΔL ratio, token accuracy and greedy recall gains, "
    "t intervals over targets)"
)


@dataclass(frozen=True)
class MemftSavings(ResultProtocol):
    """Predicted and measured savings of MemFT over SFT.

    Attributes
    ----------
    budget : GradientBudget or None
        SFT gradient budget on already-above tokens (what MemFT-OT would save).
    predictions : pandas.DataFrame
        Per (objective, model, target length): rank needed by SFT and by the MemFT method,
        ``saving = 1 − r_memft / r_sft`` and the parameters saved, each with a CI from
        the bootstrap draws, and unreachable counts. ``model`` is ``"separate laws"``
        (one full law per method; needs k + 3 non-memorized MemFT cells) or
        ``"shared exponents"`` (α, β, b from the SFT law on each draw, only C refitted
        on the MemFT cells; works with 2+ cells, under that stated assumption).
    validation : pandas.DataFrame
        Measured MemFT cells (seed means) against the MemFT law (in-sample, with a
        prediction interval), against a MemFT law refitted without the longest MemFT
        length (``dL_memft_law_heldout``, out-of-sample for that length) and against
        the SFT law (``gain_over_sft_law``), and the measured SFT cell at the same rank
        and length (``gain_measured``; optimizer steps ``steps`` against ``steps_sft`` and
        ``steps_ratio``: for cells both methods memorize, the training time to recall), and
        ``sft_equivalent_rank``: the rank SFT needs by
        its law (CI over its draws) to reach the ΔL MemFT measured, so that
        ``saving_measured = 1 − rank / sft_equivalent_rank`` is a rank saving read off
        measured MemFT cells (a lower bound for memorized cells, where ΔL saturates).
        Rows exist even when the MemFT law could not be fitted (then only the SFT
        comparisons are filled).
    fits : dict
        The fitted laws by method (``FitResult``).
    target : str
        The fidelity target, in words.
    notes : tuple of str
        Skipped parts and why, assumptions.
    flags : tuple of Flag
        Warnings: ``extrapolated``.
    paired : pandas.DataFrame
        MemFT's measured cells against SFT's on the same cells (same rank, length, seeds
        and target), per objective, rank and length: the geometric-mean ΔL ratio and the
        gains in token accuracy and in tokens recalled greedily, each with a t interval
        over target sequences (:func:`lawfit.memft.paired.paired_ratios`). No law and no
        assumption about exponents enters it; unmemorized pairs only.
    """

    budget: GradientBudget | None
    predictions: pd.DataFrame
    validation: pd.DataFrame
    fits: dict = field(repr=False)
    target: str = ""
    notes: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy predictions table (a copy of ``predictions``).

        Returns
        -------
        pandas.DataFrame
            One row per (objective, length).
        """
        return self.predictions.copy()

    def _tables(self):
        tabs = [("capacity savings", self.predictions)]
        if len(self.validation):
            tabs.append(("validation against measured MemFT cells", self.validation))
        if len(self.paired):
            tabs.append((_PAIRED_TITLE, self.paired))
        return tabs

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        str
            Multi-line text.
        """
        out = ["MemFT savings over SFT", "=" * 22]
        if self.budget is not None:
            out.append(self.budget.summary())
        if len(self.predictions):
            out.append(f"capacity savings for {self.target}:")
            with pd.option_context("display.width", 140, "display.max_columns", 30):
                out.append(self.predictions.to_string(index=False))
        for title, table in self._tables()[1:]:
            out.append(f"{title}:")
            with pd.option_context("display.width", 140, "display.max_columns", 30):
                out.append(table.to_string(index=False))
        out += [f"flag: {f}" for f in self.flags]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def _empirical_rank(ds_m, target, target_kind):
    """Smallest measured rank whose seed-mean meets the target, per length (NaN: none)."""
    var = "loss_after" if target_kind == "loss_after" else "loss_reduction"
    if var not in ds_m or "rank" not in ds_m.dims or "length" not in ds_m.dims:
        return {}
    v = ds_m[var]
    v = v.where(ok_mask(ds_m, v.dims))
    other = [d for d in v.dims if d not in ("rank", "length")]
    m = v.mean(other, skipna=True) if other else v
    out = {}
    for L in m["length"].values:
        col = m.sel(length=L)
        meets = (col <= target) if target_kind == "loss_after" else (col >= target)
        meets = meets & col.notnull()
        ranks = col["rank"].values[meets.values]
        measured = col["rank"].values[col.notnull().values]
        if measured.size == 0:
            continue
        out[int(L)] = float(ranks.min()) if ranks.size else math.inf
    return out


def memft_savings(
    ds,
    *,
    target: float = LN2,
    target_kind: str = "loss_after",
    lengths=None,
    form: str = "power_law",
    capacity: str = "rank",
    exclude: str | float | None = "memorized",
    bootstrap: int = 500,
    unit: str = "cell",
    confidence_level: float = 0.95,
    rng: int | np.random.Generator | None = None,
    fits: Mapping[str, FitResult] | None = None,
) -> MemftSavings:
    """Predicted and measured savings of MemFT over SFT.

    Parameters
    ----------
    ds : xarray.Dataset or path
        One setting (model, task, ...) of a sweep with an ``objective`` dim holding
        ``"sft"`` and at least one ``memft_*`` method (cells not collected carry
        ``status="not_run"``). Trajectories/token probabilities feed the gradient
        budget; cell losses feed the laws.
    target : float
        Fidelity target: ``loss_after`` (default ln 2, the recall threshold) or ΔL.
    target_kind : {"loss_after", "loss_reduction"}
        Meaning of ``target``.
    lengths : array_like, optional
        Lengths at which to predict; default the observed lengths and 2× and 4× the
        longest (new lengths).
    form : str
        Law fitted per method (default the paper's power law).
    capacity : {"rank", "n_params"}
        Capacity variable of the laws.
    exclude : {"memorized"} or float or None
        Passed to :func:`lawfit.fit`.
    bootstrap : int
        Bootstrap replicates per law (the savings' CIs combine the draws of the two
        independently fitted laws draw by draw).
    unit : str
        Bootstrap resampling unit (see :func:`lawfit.fit`).
    confidence_level : float
        Level of the intervals.
    rng : int, Generator or None
        Seed.
    fits : mapping of str to FitResult, optional
        Laws already fitted on this setting, by objective (e.g. ``{"sft": law}``), used
        instead of refitting them, so that one analysis reports one interval per quantity.
        Each must be a fit of ``form`` in ``capacity`` and length.

    Returns
    -------
    MemftSavings
        Gradient budget, predicted savings, validation against measured MemFT cells.
        Parts the data cannot support are empty with a note.

    Raises
    ------
    LawfitError
        Not a dataset, grouping dims other than ``objective`` of size > 1, bad options.
    """
    ds = load(ds)
    _check_savings_args(ds, bootstrap, confidence_level, target_kind)
    gen = V.random_generator(rng)
    exclude, target = V.exclude_rule(exclude), V.positive_number(target, "target")
    notes: list[str] = []
    target_txt = (
        f"loss_after <= {target:.4g} nats/token"
        if target_kind == "loss_after"
        else f"ΔL >= {target:.4g} nats/token"
    )
    methods = list(map(str, ds["objective"].values)) if "objective" in ds.dims else []
    budget = _sft_budget(ds, methods, bootstrap, confidence_level, gen, notes)
    empty = pd.DataFrame()
    memfts = [m for m in methods if m.startswith("memft")]
    if "sft" not in methods or not memfts:
        notes.append(
            "no 'objective' dim with 'sft': laws per objective not compared "
            f"(objectives: {methods or 'none'})"
            if "sft" not in methods
            else f"no memft_* objective in the dataset (objectives: {methods}): savings skipped"
        )
        return MemftSavings(budget, empty, empty, {}, target_txt, tuple(notes))
    fit_kw = dict(
        form=form,
        capacity=capacity,
        exclude=exclude,
        bootstrap=int(bootstrap),
        unit=unit,
        confidence_level=confidence_level,
        rng=gen,
        space=_SPACE,
    )
    fits, emp = _laws_per_objective(
        ds, ["sft"] + memfts, fit_kw, target, target_kind, notes, given=fits
    )
    if "sft" not in fits:
        notes.append("no SFT law: savings cannot be predicted")
        return MemftSavings(budget, empty, empty, fits, target_txt, tuple(notes))
    obs_len = collected_lengths(ds).astype(float)
    if lengths is None:
        lengths = np.concatenate([obs_len, [2 * obs_len.max(), 4 * obs_len.max()]])
    lengths = np.atleast_1d(np.asarray(lengths, float))
    rows = _predicted_savings(
        ds,
        fits,
        memfts,
        lengths,
        (target, target_kind),
        capacity,
        exclude,
        confidence_level,
        gen,
        emp,
        notes,
    )
    preds, flags = _savings_table(rows, notes)
    # validation: measured memft cells vs the laws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means over all-NaN (not_run) cells
        validation = _validate(ds, memfts, fits, form, capacity, exclude, confidence_level, notes)
    notes += _validation_notes(validation)
    paired = paired_ratios(ds, memfts, exclude=exclude, confidence_level=confidence_level)
    return MemftSavings(
        budget=budget,
        predictions=preds,
        validation=validation,
        fits=fits,
        target=target_txt,
        notes=tuple(notes),
        flags=tuple(flags),
        paired=paired,
    )


def _sft_budget(ds, methods, bootstrap, confidence_level, gen, notes):
    """Return the SFT gradient budget (None, with a note, where the data cannot give it)."""
    if methods and "sft" not in methods:
        return None
    try:
        return gradient_budget(
            ds, objective="sft", bootstrap=bootstrap, confidence_level=confidence_level, rng=gen
        )
    except LawfitError as exc:
        notes.append(f"gradient budget skipped: {exc}")
        return None


def _predicted_savings(
    ds, fits, memfts, lengths, goal, capacity, exclude, confidence_level, gen, emp, notes
) -> list[dict]:
    """Return the rows of predicted savings: separate laws, then shared exponents, per MemFT."""
    target, target_kind = goal
    per_rank = _params_per_rank_exact(ds) if capacity == "rank" else None
    l0 = ds if target_kind == "loss_after" else None
    rows = _separate_law_rows(
        fits, memfts, lengths, target, target_kind, l0, capacity, confidence_level, emp, per_rank
    )
    for m in memfts:
        try:
            rows += _shared_exponent_savings(
                ds.sel(objective=m),
                m,
                fits["sft"],
                lengths,
                target,
                target_kind,
                l0,
                exclude,
                confidence_level,
                gen,
                per_rank,
                notes,
            )
        except LawfitError as exc:
            notes.append(f"shared-exponent savings for {m} skipped: {exc}")
    return rows


def _savings_table(rows: list[dict], notes: list[str]) -> tuple[pd.DataFrame, list[Flag]]:
    """Return the predictions as a frame (objective, model, length first) and their flags."""
    preds = pd.DataFrame(rows)
    flags = []
    if not len(preds):
        return preds, flags
    lead = ["objective", "model", "length"]
    preds = preds[lead + [c for c in preds.columns if c not in lead]]
    if preds["extrapolated"].any():
        flags.append(
            Flag(
                "extrapolated",
                "some predictions extrapolate beyond the fitted "
                "ranks/lengths (column extrapolated)",
            )
        )
    notes.append(
        "saving = 1 − capacity_memft / capacity_sft; CI from the two laws' "
        "bootstrap draws combined draw by draw (independent resamples of disjoint "
        "cells)"
    )
    notes.append(
        "measured_rank_*: smallest measured rank whose seed-mean meets the target "
        "(inf: no measured rank does; NaN: length not measured)"
    )
    return preds, flags


def _check_savings_args(ds, bootstrap, confidence_level, target_kind):
    """Validate :func:`memft_savings`'s options and that ``ds`` is one setting."""
    _check_common(bootstrap, confidence_level)
    require_variables(ds, ["loss_reduction"])
    if target_kind not in ("loss_after", "loss_reduction"):
        raise LawfitError(
            f"target_kind must be 'loss_after' or 'loss_reduction'; got {target_kind!r}."
        )
    multi = [
        d for d in ("model", "task", "random_ratio", "modules") if d in ds.dims and ds.sizes[d] > 1
    ]
    if multi:
        vals = {d: list(map(str, ds[d].values))[:4] for d in multi}
        raise LawfitError(
            f"memft_savings compares methods within one setting; the dataset has grouping "
            f"dims of size > 1: {vals}. Select one first, e.g. "
            f"ds.sel({{{multi[0]!r}: {vals[multi[0]][0]!r}}})."
        )


def _laws_per_objective(ds, objectives, fit_kw, target, target_kind, notes, given=None):
    """Fit one law per objective (or take it from ``given``); keep those with >= k + 3 cells."""
    from lawfit.fitting import fit

    fits, emp = {}, {}
    for m in objectives:
        sub = ds.sel(objective=m)
        n_ok = (
            int(ok_mask(sub, tuple(sub["loss_reduction"].dims)).sum())
            if "status" in sub
            else int(sub["loss_reduction"].notnull().sum())
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits[m] = given[m] if given and m in given else fit(sub, **fit_kw)
        except LawfitError as exc:
            notes.append(f"law for {m} not fitted ({n_ok} ok cells): {exc}")
            continue
        k = len(fits[m].param_names)
        if fits[m].n_obs < k + 3:
            notes.append(
                f"law for {m} not used: only {fits[m].n_obs} cells left to fit {k} parameters "
                f"(after excluding memorized cells); need at least {k + 3}. Collect more "
                f"{m} cells (more ranks/lengths below the memorization boundary)"
            )
            del fits[m]
        elif fits[m].flags:
            notes.append(f"law for {m} flags: " + "; ".join(map(str, fits[m].flags)))
        emp[m] = _empirical_rank(sub, target, target_kind)
    return fits, emp


def _params_per_rank_exact(ds):
    """Trainable parameters per rank when n_params is exactly proportional to rank."""
    if "n_params" not in ds:
        return None
    npar = ds["n_params"]
    ratio = (npar / npar["rank"]).values
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]  # -1: rank not collected yet
    if ratio.size and np.ptp(ratio) <= 1e-9 * ratio.max():
        return float(ratio.max())
    return None


def _separate_law_rows(
    fits, memfts, lengths, target, target_kind, l0, capacity, confidence_level, emp, per_rank
):
    """Build the savings rows of one law per objective, inverted at every length."""
    from lawfit.capacity import predict_capacity

    kw = dict(length=lengths, target=target, target_kind=target_kind, data=l0)
    pred_sft = predict_capacity(fits["sft"], **kw)
    rows = []
    for m in memfts:
        if m not in fits:
            continue
        pred_m = predict_capacity(fits[m], **kw)
        for j, L in enumerate(lengths):
            row = _saving_row(pred_sft, pred_m, j, capacity, confidence_level)
            row = {"objective": m, "length": L, **row}
            if per_rank is not None:
                row["params_saved"] = (row[f"{capacity}_sft"] - row[f"{capacity}_memft"]) * per_rank
            row["measured_rank_sft"] = emp.get("sft", {}).get(int(L), math.nan)
            row["measured_rank_memft"] = emp.get(m, {}).get(int(L), math.nan)
            row["model"] = "separate laws"
            rows.append(row)
    return rows


def _saving_row(pred_sft, pred_m, j, capacity, confidence_level):
    """Capacities of SFT and MemFT at one length, the saving and its draw-by-draw CI."""
    ts, tm = pred_sft.table.iloc[j], pred_m.table.iloc[j]
    est_s, est_m = float(ts["estimate"]), float(tm["estimate"])
    with np.errstate(all="ignore"):
        saving = 1 - est_m / est_s if np.isfinite(est_s) and est_s > 0 else math.nan
    row = {
        f"{capacity}_sft": est_s,
        f"{capacity}_sft_low": ts["low"],
        f"{capacity}_sft_high": ts["high"],
        f"{capacity}_memft": est_m,
        f"{capacity}_memft_low": tm["low"],
        f"{capacity}_memft_high": tm["high"],
        "saving": saving,
        "saving_low": math.nan,
        "saving_high": math.nan,
        "n_unreachable_sft": int(ts["n_unreachable"]),
        "n_unreachable_memft": int(tm["n_unreachable"]),
        "extrapolated": bool(ts["extrapolated"] or tm["extrapolated"]),
    }
    if pred_sft.draw_values is not None and pred_m.draw_values is not None:
        rs, rm = pred_sft.draw_values.T, pred_m.draw_values.T  # (R, lengths)
        k = min(rs.shape[0], rm.shape[0])
        with np.errstate(all="ignore"):
            sv = 1 - rm[:k, j] / rs[:k, j]
        sv = np.where(np.isinf(rs[:k, j]) & np.isfinite(rm[:k, j]), 1.0, sv)
        sv = sv[np.isfinite(sv)]
        if sv.size >= 20:
            a = (1 - confidence_level) / 2
            row["saving_low"], row["saving_high"] = (float(v) for v in np.quantile(sv, [a, 1 - a]))
    return row
