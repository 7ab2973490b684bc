"""What memorization-oriented finetuning (MemFT) saves over plain SFT.

Two questions, answered separately:

1. **Gradient budget** (:func:`gradient_budget`): plain SFT averages the loss over
   every target token, so at each step a share ``frac_above`` of its loss weight goes
   to tokens that already clear the p > 0.5 threshold (greedy decoding already
   reproduces them given an intact prefix). MemFT-OT gives those tokens weight 0: the
   share is what it would save. Integrated over the SFT trajectory
   (``frac_above_curve`` over ``step``), and as a snapshot at the end from the per-token
   ``p_after`` (loss-weight share and a gradient-magnitude proxy, |∂Lₜ/∂zₜ| ≈ 1 − pₜ).
2. **Capacity savings** (:func:`memft_savings`): laws fitted per method (SFT vs
   ``memft_*``) predict the rank and trainable parameters each needs for a fidelity
   target at new lengths; the ratio is the saving, with CIs from paired bootstrap
   draws, and it is checked against measured MemFT cells.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit._tokens import load, ok_mask, token_arrays
from lawfit.data import LN2, collected_lengths, require_variables
from lawfit.errors import LawfitError
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import FitResult, Flag

__all__ = ["GradientBudget", "MemftSavings", "gradient_budget", "memft_savings"]

THRESHOLD = 0.5
#: fit space of every law memft_savings fits: one space for all objectives, so that the
#: savings compare laws fitted alike (linear, as its tests validate; lawfit.fit's default
#: "auto" could pick another space per objective)
_SPACE = "linear"


@dataclass(frozen=True)
class GradientBudget(ResultProtocol):
    """Share of SFT's loss weight spent on tokens already above threshold.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per SFT run: coordinates, ``share_trajectory`` (time-average of
        ``frac_above_curve`` over optimizer steps, NaN without trajectories),
        ``share_final`` (share of tokens above 0.5 at the end) and ``grad_share_final``
        (share of the gradient-magnitude proxy Σ(1 − p) carried by tokens above 0.5
        at the end; NaN without token probabilities).
    summary_table : pandas.DataFrame
        Mean of each share over runs with a bootstrap percentile CI over runs, and per
        rank (mean over lengths and seeds).
    level : float
        Confidence level.
    notes : tuple of str
        Definitions used and what was missing.
    flags : tuple of Flag
        Warnings (none set yet; the field completes the common result interface).
    """

    cells: pd.DataFrame
    summary_table: pd.DataFrame
    level: float
    notes: tuple[str, ...]
    flags: tuple[Flag, ...] = ()

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        str
            Multi-line text.
        """
        out = ["SFT gradient budget spent on tokens already above p = 0.5", "=" * 57]
        for _, r in self.summary_table.iterrows():
            out.append(
                f"{r['quantity']} (rank {r['rank']}): {r['mean']:.3f} "
                f"[{r['low']:.3f}, {r['high']:.3f}] over {int(r['n_runs'])} runs"
            )
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def _check_common(bootstrap, confidence_level):
    V.bootstrap_count(bootstrap)
    V.confidence_level(confidence_level)


def _time_average(steps: np.ndarray, frac: np.ndarray, frac0: np.ndarray) -> np.ndarray:
    """Average of a step function sampled at checkpoints over [0, last finite step]."""
    out = np.full(frac.shape[0], np.nan)
    for i in range(frac.shape[0]):
        ok = np.isfinite(frac[i])
        if not ok.any():
            continue
        s, f = steps[ok].astype(float), frac[i, ok]
        f0 = frac0[i] if np.isfinite(frac0[i]) else f[0]
        s = np.concatenate([[0.0], s]) if s[0] > 0 else s
        f = np.concatenate([[f0], f]) if len(f) < len(s) else f
        if s[-1] <= 0:
            out[i] = f[-1]
            continue
        out[i] = np.trapezoid(f, s) / s[-1]
    return out


def _boot_mean(x, level, n_boot, gen):
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan, 0
    if x.size == 1 or n_boot == 0:
        return float(x.mean()), math.nan, math.nan, x.size
    m = gen.choice(x, size=(n_boot, x.size)).mean(axis=1)
    lo, hi = np.quantile(m, [0.5 - level / 2, 0.5 + level / 2])
    return float(x.mean()), float(lo), float(hi), x.size


def _select_objective(ds, objective: str):
    """Keep the cells of ``objective`` (a size-1 dim) when the dataset has that dim.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.
    objective : str
        Value of the ``objective`` dim.

    Returns
    -------
    xarray.Dataset
        ``ds`` itself when it has no ``objective`` dim.

    Raises
    ------
    LawfitError
        ``objective`` is not among the dataset's objectives.
    """
    if "objective" not in ds.dims:
        return ds
    if objective not in ds["objective"].values:
        raise LawfitError(
            f"objective {objective!r} is not in the dataset; its objectives are "
            f"{list(map(str, ds['objective'].values))}. Pass objective=one of them."
        )
    return ds.sel(objective=[objective])


def _budget_sources(ds) -> tuple[bool, bool]:
    """Say whether the dataset has trajectories and per-token probabilities.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.

    Returns
    -------
    has_traj, has_tok : bool
        ``frac_above_curve`` over ``step``; ``p_after`` over ``token``.

    Raises
    ------
    LawfitError
        Neither is present.
    """
    has_traj = "frac_above_curve" in ds and "step" in ds["frac_above_curve"].dims
    has_tok = "p_after" in ds and "token" in ds["p_after"].dims
    if not (has_traj or has_tok):
        raise LawfitError(
            "gradient_budget needs 'frac_above_curve' over 'step' (training trajectories) or "
            f"'p_after' over 'token'; the dataset has {sorted(ds.data_vars)}. Record "
            "trajectories (collect) or per-token probabilities."
        )
    return has_traj, has_tok


def _initial_share(ds, fa, dims: tuple[str, ...]) -> np.ndarray:
    """Share of target tokens above threshold before training, one value per run.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset (``p_before`` over ``token`` is used when present).
    fa : xarray.DataArray
        ``frac_above_curve``, for the run layout.
    dims : tuple of str
        Run dims, in the order of the flattened runs.

    Returns
    -------
    numpy.ndarray
        Shares at step 0 (NaN everywhere without ``p_before``).
    """
    if not ("p_before" in ds and "token" in ds["p_before"].dims):
        return np.full(int(np.prod([fa.sizes[d] for d in dims])), np.nan)
    pb = ds["p_before"].broadcast_like(fa.isel(step=0, drop=True))
    num = (pb > THRESHOLD).sum("token")
    den = pb.notnull().sum("token")
    return np.asarray((num / den).transpose(*dims).values, float).reshape(-1)


def _trajectory_shares(ds) -> pd.DataFrame:
    """Per-run time-average of ``frac_above_curve`` over the optimizer steps.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset with ``frac_above_curve`` over ``step``.

    Returns
    -------
    pandas.DataFrame
        One row per ok run with a finite share: the run dims and ``share_trajectory``.
    """
    fa = ds["frac_above_curve"]
    dims = tuple(d for d in fa.dims if d != "step")
    arr = np.asarray(fa.transpose(*dims, "step").values, float)
    arr = arr.reshape(-1, arr.shape[-1])
    share = _time_average(np.asarray(ds["step"].values), arr, _initial_share(ds, fa, dims))
    idx = pd.MultiIndex.from_product([ds[d].values for d in dims], names=list(dims))
    df = idx.to_frame(index=False)
    df["share_trajectory"] = share
    df = df[ok_mask(ds, dims).reshape(-1) & np.isfinite(share)]
    return df.reset_index(drop=True)


def _final_shares(ta) -> pd.DataFrame:
    """Per-run loss-weight and gradient shares of the tokens above threshold at the end.

    Parameters
    ----------
    ta : TokenArrays
        Token arrays (``p_after``, validity, run table).

    Returns
    -------
    pandas.DataFrame
        The run table with ``share_final`` and ``grad_share_final`` (share of
        Σ(1 − p); NaN where that sum is 0).
    """
    p = np.where(ta.valid, ta.p_after, np.nan)
    above = p > THRESHOLD
    df = ta.runs.copy()
    df["share_final"] = np.nansum(above, axis=1) / ta.valid.sum(axis=1)
    g = np.where(ta.valid, 1.0 - p, 0.0)
    tot = g.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        df["grad_share_final"] = np.where(tot > 0, (g * above).sum(axis=1) / tot, np.nan)
    return df


def _budget_table(
    cells: pd.DataFrame, level: float, n_boot: int, gen: np.random.Generator
) -> pd.DataFrame:
    """Mean of each share over runs with a bootstrap CI, overall and per rank.

    Parameters
    ----------
    cells : pandas.DataFrame
        Per-run shares.
    level : float
        Level of the mean's interval.
    n_boot : int
        Resamples of the runs (0: no interval).
    gen : numpy.random.Generator
        Draws the resamples.

    Returns
    -------
    pandas.DataFrame
        ``quantity, rank`` (``"all"`` or an int), ``mean, low, high, n_runs``.
    """
    rows = []
    for q in ("share_trajectory", "share_final", "grad_share_final"):
        if q not in cells:
            continue
        groups = [("all", cells)]
        if "rank" in cells:
            groups += [(int(r), sub) for r, sub in cells.groupby("rank")]
        for rank, sub in groups:
            m, lo, hi, n = _boot_mean(sub[q], level, n_boot, gen)
            rows.append(
                {"quantity": q, "rank": rank, "mean": m, "low": lo, "high": hi, "n_runs": n}
            )
    return pd.DataFrame(rows)


def gradient_budget(
    ds,
    *,
    objective: str = "sft",
    bootstrap: int = 1000,
    confidence_level: float = 0.95,
    rng: int | np.random.Generator | None = None,
    method: str | None = None,
) -> GradientBudget:
    """Share of the SFT gradient budget spent on tokens already above threshold.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``frac_above_curve`` over ``step`` (trajectories) and/or
        ``p_after`` over ``token``. Runs whose ``status`` is not ok are left out.
    objective : str
        Value of the ``objective`` dim to analyse (ignored when there is no such dim).
    bootstrap : int
        Replicates for the CI of the mean over runs.
    confidence_level : float
        Level of the intervals.
    rng : int, Generator or None
        Seed.
    method : str, optional
        Deprecated name of ``objective``.

    Returns
    -------
    GradientBudget
        Per-run shares and their means with CIs.

    Raises
    ------
    LawfitError
        If the dataset has neither trajectories nor token probabilities, or lacks the
        requested objective.
    """
    if method is not None:
        warnings.warn(
            "gradient_budget(method=...) is deprecated: use objective=... (the "
            "dataset dim is now 'objective').",
            DeprecationWarning,
            stacklevel=2,
        )
        objective = method
    ds = load(ds)
    _check_common(bootstrap, confidence_level)
    ds = _select_objective(ds, objective)
    has_traj, has_tok = _budget_sources(ds)
    gen = V.random_generator(rng)
    notes = [
        "share_trajectory: time-average over optimizer steps of the share of target tokens "
        "with p > 0.5 (SFT weights tokens equally, so this is its loss-weight share on "
        "tokens MemFT-OT would mask)",
    ]
    frames = []
    if has_traj:
        frames.append(_trajectory_shares(ds))
    else:
        notes.append("no trajectories (frac_above_curve): share_trajectory not computed")
    if has_tok:
        ta = token_arrays(ds, need_greedy=False)
        df = _final_shares(ta)
        notes.append(
            "grad_share_final: share of Σ(1 − p) (|∂L/∂logit of the correct token|) carried by "
            "tokens above 0.5 at the end of training: a snapshot, not a trajectory"
        )
        if frames:
            keys = [c for c in ta.cell_dims if c in frames[0].columns]
            frames[0] = frames[0].merge(df, on=keys, how="outer")
        else:
            frames.append(df)
    cells = frames[0]
    if "objective" in cells.columns:
        cells = cells.drop(columns="objective")
    table = _budget_table(cells, confidence_level, int(bootstrap), gen)
    return GradientBudget(
        cells=cells, summary_table=table, level=confidence_level, notes=tuple(notes)
    )


# ------------------------------------------------------------------ capacity savings
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
    """

    budget: GradientBudget | None
    predictions: pd.DataFrame
    validation: pd.DataFrame
    fits: dict = field(repr=False)
    target: str = ""
    notes: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()

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
        if len(self.validation):
            out.append("validation against measured MemFT cells:")
            with pd.option_context("display.width", 140, "display.max_columns", 30):
                out.append(self.validation.to_string(index=False))
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
    return MemftSavings(
        budget=budget,
        predictions=preds,
        validation=validation,
        fits=fits,
        target=target_txt,
        notes=tuple(notes),
        flags=tuple(flags),
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


def _validation_notes(validation) -> list[str]:
    """Say what the validation table holds and how to read it."""
    if not len(validation):
        return []
    n = len(validation)
    out = [
        f"validation: {n} measured MemFT cell(s) (seed means); gain_measured = MemFT − SFT "
        "measured ΔL at the same cell; saving_measured = 1 − rank / sft_equivalent_rank "
        "compares with the predicted saving; dL_memft_law is in-sample (the law was fitted on "
        "them); dL_memft_law_heldout predicts the longest MemFT length from a law fitted "
        "without it (out-of-sample)" + (" — few cells, read with care" if n < 8 else "")
    ]
    if "memorized" in validation and validation["memorized"].any():
        out.append(
            "memorized MemFT cells (loss_after <= ln 2) are excluded from the laws "
            "(ΔL saturates there); they are listed in validation with memorized=True"
        )
    return out


def _rank_needed(C, alpha, beta, b, length, T):
    """Closed-form inverse of C r^alpha l^-beta + b = T (inf where unreachable)."""
    with np.errstate(all="ignore"):
        base = (T - b) / C
        r = np.exp((np.log(base) + beta * np.log(length)) / alpha)
    ok = (base > 0) & (alpha > 0) & np.isfinite(r)
    return np.where(ok, r, np.inf)


def _shared_exponent_savings(
    sub, m, fit_sft, lengths, target, target_kind, l0, exclude, level, gen, per_rank, notes
):
    """Predict savings assuming MemFT changes only the prefactor C of the SFT law."""
    from lawfit.capacity import _loss_before_fn

    if tuple(fit_sft.param_names) != ("C", "alpha", "beta", "b") or fit_sft.boot is None:
        raise LawfitError("needs the SFT power law (C, alpha, beta, b) with bootstrap draws")
    df = _unmemorized_cells(sub, m, exclude)
    sft, c_memft, rmse = _refit_prefactor(fit_sft, df, gen)
    l0fn, _ = _loss_before_fn(None, l0) if target_kind == "loss_after" else (None, "")
    rows = []
    for L in lengths:
        T = target if target_kind == "loss_reduction" else float(l0fn(np.array([L]))[0]) - target
        rs = _rank_needed(*sft, L, T)
        rm = _rank_needed(c_memft, *sft[1:], L, T)
        row = {
            "objective": m,
            "model": "shared exponents",
            "length": float(L),
            **_rank_quantiles(rs, rm, level),
            "extrapolated": bool(
                not (fit_sft.input_ranges["length"][0] <= L <= fit_sft.input_ranges["length"][1])
                or not np.isfinite(rs[0])
                or rs[0] > fit_sft.input_ranges[fit_sft.inputs[0]][1]
            ),
            "memft_cells": len(df),
            "memft_rmse": rmse,
            "C_ratio": float(c_memft[0] / sft[0][0]),
        }
        if per_rank is not None:
            row["params_saved"] = (float(rs[0]) - float(rm[0])) * per_rank
        rows.append(row)
    notes.append(
        f"shared exponents ({m}): alpha, beta, b from the SFT law (each bootstrap draw), only C "
        f"refitted on {len(df)} non-memorized {m} cells (case bootstrap), C_memft/C_sft = "
        f"{c_memft[0] / sft[0][0]:.3g}, RMSE on those cells {rmse:.3g} nats: an assumption that "
        "MemFT scales the law without changing its exponents; check it against "
        "saving_measured in the validation table"
    )
    return rows


def _unmemorized_cells(sub, m, exclude) -> pd.DataFrame:
    """Return the ok MemFT cells of one objective as a frame, memorized ones dropped."""
    okm = ok_mask(sub, tuple(sub["loss_reduction"].dims))
    df = (
        sub[["loss_reduction"] + (["loss_after"] if "loss_after" in sub else [])]
        .where(xr_mask(sub, okm))
        .to_dataframe()
        .reset_index()
        .dropna(subset=["loss_reduction"])
    )
    if exclude is not None and "loss_after" in df:
        thr = LN2 if exclude == "memorized" else float(exclude)
        df = df[df["loss_after"] > thr]
    if len(df) < 2:
        raise LawfitError(f"{len(df)} non-memorized {m} cell(s); need at least 2 to fit C")
    return df


def _refit_prefactor(fit_sft, df, gen):
    """C of the MemFT cells under the SFT law's α, β, b: point estimate and one per draw.

    Returns
    -------
    sft : tuple of numpy.ndarray
        C, α, β, b of the SFT law: row 0 the estimate, then its bootstrap draws.
    c_memft : numpy.ndarray
        The MemFT prefactor under each row's exponents (least squares in C; each draw on a
        case resample of the MemFT cells).
    rmse : float
        Root mean square residual of the point estimate on the MemFT cells (nats).
    """
    r, ell = df["rank"].to_numpy(float), df["length"].to_numpy(float)
    y = df["loss_reduction"].to_numpy(float)
    draws = fit_sft.boot.usable_draws()
    allth = np.vstack([np.asarray(fit_sft.theta, float), draws])  # row 0: point estimate
    Cs, al, be, bb = (allth[:, j : j + 1] for j in range(4))
    G = np.exp(al * np.log(r) - be * np.log(ell))  # (R+1, n)
    W = np.ones_like(G)
    n = y.size
    idx = gen.integers(0, n, size=(draws.shape[0], n))
    W[1:] = np.apply_along_axis(lambda i: np.bincount(i, minlength=n), 1, idx)
    Cm = (W * G * (y - bb)).sum(1, keepdims=True) / (W * G * G).sum(1, keepdims=True)
    rmse = float(np.sqrt(np.mean((y - (Cm[0, 0] * G[0] + bb[0, 0])) ** 2)))
    return (Cs[:, 0], al[:, 0], be[:, 0], bb[:, 0]), Cm[:, 0], rmse


def _rank_quantiles(rs, rm, level) -> dict:
    """Ranks needed under SFT and MemFT and the saving: estimates (row 0) and intervals."""
    a = (1 - level) / 2
    with np.errstate(all="ignore"):
        sv = 1 - rm / rs
    sv = np.where(np.isinf(rs) & np.isfinite(rm), 1.0, sv)

    def interval(v):  # inverted_cdf when some draws are unreachable (inf)
        meth = "linear" if np.all(np.isfinite(v[1:])) else "inverted_cdf"
        return np.quantile(v[1:], [a, 1 - a], method=meth)

    qs, qm = interval(rs), interval(rm)
    svd = sv[1:][np.isfinite(sv[1:])]
    q = np.quantile(svd, [a, 1 - a]) if svd.size >= 20 else (math.nan, math.nan)
    return {
        "rank_sft": float(rs[0]),
        "rank_sft_low": float(qs[0]),
        "rank_sft_high": float(qs[1]),
        "rank_memft": float(rm[0]),
        "rank_memft_low": float(qm[0]),
        "rank_memft_high": float(qm[1]),
        "saving": float(sv[0]),
        "saving_low": float(q[0]),
        "saving_high": float(q[1]),
        "n_unreachable_sft": int(np.isinf(rs[1:]).sum()),
        "n_unreachable_memft": int(np.isinf(rm[1:]).sum()),
    }


def xr_mask(sub, okm):
    """Wrap a numpy mask over the loss_reduction dims as a DataArray."""
    import xarray as xr

    return xr.DataArray(
        okm,
        dims=sub["loss_reduction"].dims,
        coords={d: sub[d] for d in sub["loss_reduction"].dims if d in sub.coords},
    )


def _cell_mean(sub, var, okm, other, name):
    """Seed-mean of ``var`` over ok cells as a frame with columns rank, length, ``name``."""
    v = sub[var].where(okm)
    v = v.mean(other, skipna=True) if other else v
    return v.to_dataframe(name=name).reset_index()[["rank", "length", name]]


def _sft_measured(ds, sub) -> pd.DataFrame:
    """Means of the SFT cells paired with one MemFT objective's: ΔL, exact match and steps.

    Only SFT cells whose MemFT counterpart (same rank, length, seed and target sequence)
    is ok enter the mean, so that a MemFT cell is compared with SFT on the same content:
    target sequences differ by more than MemFT's effect (up to 0.7 nats/token at one
    rank and length), and a mean over all of SFT's sequences would mix that in.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset with an ``objective`` dim holding ``"sft"``.
    sub : xarray.Dataset
        The MemFT objective's cells (``ds.sel(objective=...)``).

    Returns
    -------
    pandas.DataFrame
        ``rank, length, dL_sft_measured, n_paired`` (+ ``exact_match_sft``, ``steps_sft``);
        ``n_paired`` counts the paired cells, 0 (and NaN means) where SFT has none.
    """
    sft_ds = ds.sel(objective="sft")
    dims = tuple(sft_ds["loss_reduction"].dims)
    paired = ok_mask(sft_ds, dims) & ok_mask(sub, tuple(sub["loss_reduction"].dims))
    other = [d for d in dims if d not in ("rank", "length")]
    sft_mean = _cell_mean(sft_ds, "loss_reduction", paired, other, "dL_sft_measured")
    count = xr_mask(sft_ds, paired)
    count = count.sum(other) if other else count.astype(int)
    sft_mean = sft_mean.merge(
        count.to_dataframe(name="n_paired").reset_index()[["rank", "length", "n_paired"]],
        on=["rank", "length"],
    )
    for var, name in (("exact_match", "exact_match_sft"), ("steps", "steps_sft")):
        if var in ds:
            sft_mean = sft_mean.merge(
                _cell_mean(sft_ds, var, paired, other, name), on=["rank", "length"], how="left"
            )
    return sft_mean


def _memft_measured(ds, sub, capacity: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Seed means of the measured cells of one MemFT objective, with their capacity.

    Parameters
    ----------
    ds : xarray.Dataset
        Whole dataset (for ``n_params``).
    sub : xarray.Dataset
        The objective's cells.
    capacity : {"rank", "n_params"}
        Capacity input of the laws.

    Returns
    -------
    df : pandas.DataFrame
        ``rank, length, dL_measured`` (+ ``loss_after``, ``n_params``, ``exact_match``,
        ``steps``) of the cells with a measured ΔL; empty when there are none.
    cap_vals : numpy.ndarray
        Capacity of each row.
    """
    okm = ok_mask(sub, tuple(sub["loss_reduction"].dims))
    other = [d for d in sub["loss_reduction"].dims if d not in ("rank", "length")]
    df = _cell_mean(sub, "loss_reduction", okm, other, "dL_measured").dropna(subset=["dL_measured"])
    if df.empty:
        return df, np.array([])
    if "loss_after" in sub:
        df = df.merge(
            _cell_mean(sub, "loss_after", okm, other, "loss_after"), on=["rank", "length"]
        )
    cap_vals = df["rank"].to_numpy(float)
    if capacity == "n_params":
        npar = ds["n_params"].to_dataframe(name="n_params").reset_index()
        df = df.merge(npar[["rank", "n_params"]].drop_duplicates("rank"), on="rank")
        cap_vals = df["n_params"].to_numpy(float)
    for var in ("exact_match", "steps"):
        if var in sub:
            df = df.merge(_cell_mean(sub, var, okm, other, var), on=["rank", "length"], how="left")
    return df, cap_vals


def _add_law_predictions(
    df: pd.DataFrame, laws: tuple, cap_vals: np.ndarray, confidence_level: float
) -> None:
    """Add each law's prediction of ΔL with its prediction interval, in place.

    Parameters
    ----------
    df : pandas.DataFrame
        Measured cells.
    laws : tuple of (str, FitResult or None)
        Column stem and law; a missing law, or one in ``loss_before``, is skipped.
    cap_vals : numpy.ndarray
        Capacity of each row.
    confidence_level : float
        Level of the prediction intervals.
    """
    for name, f in laws:
        if f is None or "loss_before" in f.inputs:
            continue
        kw = {
            c: (cap_vals if c in ("rank", "n_params") else df[c].to_numpy(float)) for c in f.inputs
        }
        p = f.predict(interval="prediction", confidence_level=confidence_level, warn=False, **kw)
        df[f"dL_{name}"] = p["mean"].to_numpy()
        df[f"dL_{name}_low"] = p["low"].to_numpy()
        df[f"dL_{name}_high"] = p["high"].to_numpy()


def _add_heldout_prediction(
    df: pd.DataFrame,
    sub,
    m: str,
    fits: Mapping,
    form,
    capacity: str,
    exclude,
    cap_vals: np.ndarray,
    notes: list[str],
) -> None:
    """Refit the MemFT law without its longest length and predict that length, in place.

    Parameters
    ----------
    df : pandas.DataFrame
        Measured cells; gets ``dL_memft_law_heldout`` (NaN where not predicted).
    sub : xarray.Dataset
        The objective's cells.
    m : str
        The objective.
    fits : mapping
        Objective → law.
    form : str or Form
        Form of the laws.
    capacity : {"rank", "n_params"}
        Capacity input.
    exclude : {"memorized"} or float or None
        Exclusion rule of the refit.
    cap_vals : numpy.ndarray
        Capacity of each row.
    notes : list of str
        Appended with the reason when the refit fails.
    """
    df["dL_memft_law_heldout"] = np.nan
    lens_m = np.unique(df["length"])
    if not (m in fits and lens_m.size >= 3 and "loss_before" not in fits[m].inputs):
        return
    from lawfit.fitting import fit

    top = lens_m.max()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f_ho = fit(
                sub.where(sub["length"] < top, drop=True),
                form,
                capacity=capacity,
                exclude=exclude,
                space=_SPACE,
            )
        sel = (df["length"] == top).to_numpy()
        kw = {
            c: (cap_vals[sel] if c in ("rank", "n_params") else df.loc[sel, c].to_numpy(float))
            for c in f_ho.inputs
        }
        df.loc[sel, "dL_memft_law_heldout"] = f_ho.predict(warn=False, **kw)["mean"].to_numpy()
    except LawfitError as exc:
        notes.append(f"held-out check of the {m} law skipped: {exc}")


def _add_sft_equivalent_rank(df: pd.DataFrame, fit_sft: FitResult, confidence_level: float) -> None:
    """Add the rank SFT needs by its law to reach each measured ΔL, and the saving, in place.

    Parameters
    ----------
    df : pandas.DataFrame
        Measured MemFT cells (``rank, length, dL_measured``).
    fit_sft : FitResult
        The SFT law in rank.
    confidence_level : float
        Level of the interval of the rank.
    """
    from lawfit.capacity import predict_capacity

    eq, lo, hi = [], [], []
    for L, d in zip(df["length"].to_numpy(float), df["dL_measured"].to_numpy(float), strict=True):
        t = predict_capacity(
            fit_sft, length=L, target=d, confidence_level=confidence_level
        ).table.iloc[0]
        eq.append(t["estimate"])
        lo.append(t["low"])
        hi.append(t["high"])
    df["sft_equivalent_rank"] = eq
    df["sft_equivalent_rank_low"] = lo
    df["sft_equivalent_rank_high"] = hi
    with np.errstate(all="ignore"):
        df["saving_measured"] = 1 - df["rank"] / df["sft_equivalent_rank"]


def _validate(ds, memfts, fits, form, capacity, exclude, confidence_level, notes):
    """Measured MemFT cells against measured SFT cells and the fitted laws."""
    vrows = []
    for m in memfts:
        sub = ds.sel(objective=m)
        df, cap_vals = _memft_measured(ds, sub, capacity)
        if df.empty:
            continue
        df = df.merge(_sft_measured(ds, sub), on=["rank", "length"], how="left")
        df["gain_measured"] = df["dL_measured"] - df["dL_sft_measured"]
        if "steps" in df and "steps_sft" in df:
            df["steps_ratio"] = df["steps"] / df["steps_sft"]
        _add_law_predictions(
            df, (("memft_law", fits.get(m)), ("sft_law", fits["sft"])), cap_vals, confidence_level
        )
        if "dL_memft_law" in df:
            df["inside_memft_pi"] = (df["dL_measured"] >= df["dL_memft_law_low"]) & (
                df["dL_measured"] <= df["dL_memft_law_high"]
            )
        _add_heldout_prediction(df, sub, m, fits, form, capacity, exclude, cap_vals, notes)
        if "dL_sft_law" in df:
            df["gain_over_sft_law"] = df["dL_measured"] - df["dL_sft_law"]
        if capacity == "rank" and "loss_before" not in fits["sft"].inputs:
            _add_sft_equivalent_rank(df, fits["sft"], confidence_level)
        if "loss_after" in df and exclude is not None:
            thr = LN2 if exclude == "memorized" else float(exclude)
            df["memorized"] = df["loss_after"] <= thr
        df.insert(0, "objective", m)
        vrows.append(df)
    return pd.concat(vrows, ignore_index=True) if vrows else pd.DataFrame()
