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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from lawfit._tokens import CELL_DIMS, load, ok_mask, token_arrays
from lawfit.errors import LawfitError

__all__ = ["GradientBudget", "MemftSavings", "gradient_budget", "memft_savings"]

THRESHOLD = 0.5


@dataclass(frozen=True)
class GradientBudget:
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
    """

    cells: pd.DataFrame
    summary_table: pd.DataFrame
    level: float
    notes: tuple[str, ...]

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy per-run table (a copy of ``cells``).

        Returns
        -------
        pandas.DataFrame
            One row per run.
        """
        return self.cells.copy()

    def summary(self) -> str:
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
        return "\n".join(out)


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


def gradient_budget(
    ds,
    *,
    method: str = "sft",
    bootstrap: int = 1000,
    confidence_level: float = 0.95,
    rng: int | np.random.Generator | None = None,
) -> GradientBudget:
    """Share of the SFT gradient budget spent on tokens already above threshold.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``frac_above_curve`` over ``step`` (trajectories) and/or
        ``p_after`` over ``token``. Runs whose ``status`` is not ok are left out.
    method : str
        Value of the ``method`` dim to analyse (ignored when there is no such dim).
    bootstrap : int
        Replicates for the CI of the mean over runs.
    confidence_level : float
        Level of the intervals.
    rng : int, Generator or None
        Seed.

    Returns
    -------
    GradientBudget
        Per-run shares and their means with CIs.

    Raises
    ------
    LawfitError
        If the dataset has neither trajectories nor token probabilities, or lacks the
        requested method.
    """
    ds = load(ds)
    if "method" in ds.dims:
        if method not in ds["method"].values:
            raise LawfitError(
                f"method {method!r} is not in the dataset; its methods are "
                f"{list(map(str, ds['method'].values))}. Pass method=one of them."
            )
        ds = ds.sel(method=[method])
    has_traj = "frac_above_curve" in ds and "step" in ds["frac_above_curve"].dims
    has_tok = "p_after" in ds and "token" in ds["p_after"].dims
    if not (has_traj or has_tok):
        raise LawfitError(
            "gradient_budget needs 'frac_above_curve' over 'step' (training trajectories) or "
            f"'p_after' over 'token'; the dataset has {sorted(ds.data_vars)}. Record "
            "trajectories (collect) or per-token probabilities."
        )
    gen = np.random.default_rng(rng)
    notes = [
        "share_trajectory: time-average over optimizer steps of the share of target tokens "
        "with p > 0.5 (SFT weights tokens equally, so this is its loss-weight share on "
        "tokens MemFT-OT would mask)",
    ]
    frames = []
    if has_traj:
        fa = ds["frac_above_curve"]
        dims = tuple(d for d in fa.dims if d != "step")
        arr = np.asarray(fa.transpose(*dims, "step").values, float)
        arr = arr.reshape(-1, arr.shape[-1])
        f0 = np.full(arr.shape[0], np.nan)
        if "p_before" in ds and "token" in ds["p_before"].dims:
            pb = ds["p_before"].broadcast_like(fa.isel(step=0, drop=True))
            num = (pb > THRESHOLD).sum("token")
            den = pb.notnull().sum("token")
            f0 = np.asarray((num / den).transpose(*dims).values, float).reshape(-1)
        share = _time_average(np.asarray(ds["step"].values), arr, f0)
        idx = pd.MultiIndex.from_product([ds[d].values for d in dims], names=list(dims))
        df = idx.to_frame(index=False)
        df["share_trajectory"] = share
        df = df[ok_mask(ds, dims).reshape(-1) & np.isfinite(share)]
        frames.append(df.reset_index(drop=True))
    else:
        notes.append("no trajectories (frac_above_curve): share_trajectory not computed")
    if has_tok:
        ta = token_arrays(ds, need_greedy=False)
        p = np.where(ta.valid, ta.p_after, np.nan)
        above = p > THRESHOLD
        df = ta.runs.copy()
        df["share_final"] = np.nansum(above, axis=1) / ta.valid.sum(axis=1)
        g = np.where(ta.valid, 1.0 - p, 0.0)
        tot = g.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            df["grad_share_final"] = np.where(tot > 0, (g * above).sum(axis=1) / tot, np.nan)
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
    if "method" in cells.columns:
        cells = cells.drop(columns="method")
    rows = []
    for q in ("share_trajectory", "share_final", "grad_share_final"):
        if q in cells:
            m, lo, hi, n = _boot_mean(cells[q], confidence_level, int(bootstrap), gen)
            rows.append({"quantity": q, "rank": "all", "mean": m, "low": lo, "high": hi,
                         "n_runs": n})
            if "rank" in cells:
                for r, sub in cells.groupby("rank"):
                    m, lo, hi, n = _boot_mean(sub[q], confidence_level, int(bootstrap), gen)
                    rows.append({"quantity": q, "rank": int(r), "mean": m, "low": lo,
                                 "high": hi, "n_runs": n})
    table = pd.DataFrame(rows)
    return GradientBudget(cells=cells, summary_table=table, level=confidence_level,
                          notes=tuple(notes))


# ------------------------------------------------------------------ capacity savings
@dataclass(frozen=True)
class MemftSavings:
    """Predicted and measured savings of MemFT over SFT.

    Attributes
    ----------
    budget : GradientBudget or None
        SFT gradient budget on already-above tokens (what MemFT-OT would save).
    predictions : pandas.DataFrame
        Per (method, target length): rank needed by SFT and by the MemFT method, the
        ratio ``rank_saving = 1 − r_memft / r_sft`` and the parameter saving, each
        with a CI from paired bootstrap draws, and unreachable counts.
    validation : pandas.DataFrame
        Measured MemFT cells against the MemFT law's prediction and against the SFT
        law (ΔL measured vs predicted, with prediction intervals where available).
    fits : dict
        The fitted laws by method (``FitResult``).
    target : str
        The fidelity target, in words.
    notes : tuple of str
        Flags, skipped parts and why.
    """

    budget: GradientBudget | None
    predictions: pd.DataFrame
    validation: pd.DataFrame
    fits: dict = field(repr=False)
    target: str = ""
    notes: tuple[str, ...] = ()

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy predictions table (a copy of ``predictions``).

        Returns
        -------
        pandas.DataFrame
            One row per (method, length).
        """
        return self.predictions.copy()

    def summary(self) -> str:
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
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def memft_savings(*args, **kwargs):  # defined below once lawfit.fit is available
    """Raise NotImplementedError (defined once lawfit.fit lands)."""
    raise NotImplementedError


_ = (xr, CELL_DIMS)
