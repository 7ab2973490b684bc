"""Share of SFT's gradient budget spent on tokens already above threshold.

:func:`gradient_budget` and its result :class:`GradientBudget`: plain SFT averages the
loss over every target token, so at each step a share of its loss weight goes to tokens
already above p = 0.5, which MemFT-OT gives weight 0. The share is integrated over the
SFT trajectory (``frac_above_curve`` over ``step``) and taken as a snapshot at the end
from the per-token ``p_after``, with the helpers that compute each and the table of means
with bootstrap CIs over runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit._tokens import load, ok_mask, token_arrays
from lawfit.errors import LawfitError
from lawfit.memft._common import _check_common
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

THRESHOLD = 0.5


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
