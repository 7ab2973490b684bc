"""MemFT against SFT on the same targets: the measured ΔL ratio, with no law in between.

A MemFT cell and the SFT cell at its rank, length, initialisation seed and target sequence
form a pair; their ΔL ratio (and their difference in token accuracy, the share of target
tokens that are the model's first choice, which is what MemFT aims at) needs no fitted law
and no assumption about exponents. Target
sequences differ in ΔL by more than MemFT's effect, so the pairing removes the content and
the interval is a t interval over target sequences (pairs of one sequence averaged first on
the log scale), the unit a new target is drawn from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from lawfit import _validate as V
from lawfit._tokens import fails_before, ok_mask
from lawfit.data import memorized_threshold
from lawfit.errors import LawfitError

#: Columns of :func:`paired_ratios`'s table.
PAIRED_COLUMNS = [
    "objective",
    "rank",
    "length",
    "pairs",
    "sequences",
    "ratio",
    "low",
    "high",
    "ratios",
    "accuracy_gain",
    "accuracy_gain_low",
    "accuracy_gain_high",
    "recalled",
    "recalled_gain",
    "recalled_gain_low",
    "recalled_gain_high",
]


def _check_objectives(ds, memfts) -> None:
    """Refuse a dataset without an ``objective`` dim holding ``sft`` and each of ``memfts``."""
    have = list(map(str, ds["objective"].values)) if "objective" in ds.dims else []
    missing = [m for m in ("sft", *memfts) if m not in have]
    if missing:
        raise LawfitError(
            f"paired_ratios compares MemFT objectives with 'sft' on the same cells; the "
            f"dataset's objectives are {have or 'none (no objective dim)'}, without "
            f"{missing}. Pass memfts among them, on a dataset that holds SFT cells."
        )


def _series(part, var: str, dims: tuple[str, ...]) -> pd.Series:
    """Return ``part[var]`` over ``dims`` (in that order) as a series, one row per cell."""
    return part[var].transpose(*dims).to_series()


def _recalled(part, dims: tuple[str, ...]) -> pd.Series | None:
    """Return the tokens greedy decoding recalls before each entry's first error, per cell.

    For one long target it is the length of the recalled prefix; for many entries (a
    phone book), the sum over entries. None where the data hold no per-token greedy flags.
    """
    if "greedy_correct" not in part or "token" not in part["greedy_correct"].dims:
        return None
    flags = part["greedy_correct"]
    entry = part["entry"] if "entry" in part else xr.zeros_like(flags, dtype=int)
    flags, entry = (a.transpose(*dims, "token") for a in xr.broadcast(flags, entry))
    g = flags.values.reshape(-1, flags.sizes["token"])
    valid = np.isfinite(g)
    before = fails_before(np.where(valid, g, 0), entry.values.reshape(g.shape), valid)
    count = ((g == 1) & valid & (before == 0)).sum(axis=1).astype(float)
    count[~valid.any(axis=1)] = np.nan
    return pd.Series(count, index=flags.isel(token=0, drop=True).to_series().index)


def _pairs(ds, objective: str, exclude) -> pd.DataFrame:
    """Return the ok, unmemorized (MemFT, SFT) cell pairs of one objective as a tidy frame.

    Columns ``memft`` and ``sft`` hold the two ΔL, ``acc_memft`` and ``acc_sft`` the
    token accuracies and ``rec_memft`` and ``rec_sft`` the tokens recalled greedily
    (:func:`_recalled`) where the data have them.
    """
    memft, sft = ds.sel(objective=objective), ds.sel(objective="sft")
    dims = tuple(memft["loss_reduction"].dims)
    ok = ok_mask(memft, dims) & ok_mask(sft, dims)
    frame = pd.DataFrame(
        {
            "memft": _series(memft, "loss_reduction", dims).where(ok.ravel()),
            "sft": _series(sft, "loss_reduction", dims).where(ok.ravel()),
        }
    )
    if "token_accuracy" in ds:
        frame["acc_memft"] = _series(memft, "token_accuracy", dims)
        frame["acc_sft"] = _series(sft, "token_accuracy", dims)
    recalled = {name: _recalled(part, dims) for name, part in (("memft", memft), ("sft", sft))}
    if all(r is not None for r in recalled.values()):
        frame["rec_memft"], frame["rec_sft"] = recalled["memft"], recalled["sft"]
    thr = memorized_threshold(exclude)
    if thr is not None and "loss_after" in ds:
        keep = (_series(memft, "loss_after", dims) > thr) & (_series(sft, "loss_after", dims) > thr)
        frame = frame[keep]
    frame = frame.dropna(subset=["memft", "sft"])
    frame = frame[(frame["memft"] > 0) & (frame["sft"] > 0)]
    return frame.reset_index()


def _t_interval(values: pd.Series, level: float) -> tuple[float, float, float, int]:
    """Return the mean, its t interval (NaN with one value) and the number of values."""
    n, centre = len(values), float(values.mean())
    if n < 2:
        return centre, np.nan, np.nan, n
    half = stats.t.ppf(0.5 + level / 2, n - 1) * float(values.std(ddof=1)) / np.sqrt(n)
    return centre, centre - half, centre + half, n


def _per_sequence(rows: pd.DataFrame, column: str, cluster: str | None) -> pd.Series:
    """Average ``column`` within each target sequence (all pairs: one target without one)."""
    if cluster:
        return rows.groupby(cluster)[column].mean()
    return pd.Series([rows[column].mean()])


def _one_point(rows: pd.DataFrame, cluster: str | None, level: float) -> dict:
    """Return the ratio of ΔL (and the gain in token accuracy) with t intervals at one point."""
    rows = rows.assign(log_ratio=np.log(rows["memft"] / rows["sft"]))
    centre, low, high, n = _t_interval(_per_sequence(rows, "log_ratio", cluster), level)
    out = {
        "pairs": len(rows),
        "sequences": n,
        "ratio": float(np.exp(centre)),
        "low": float(np.exp(low)),
        "high": float(np.exp(high)),
        "ratios": ", ".join(f"{v:.3f}" for v in np.exp(rows["log_ratio"])),
    }
    if "acc_memft" in rows:
        rows = rows.assign(acc_gain=rows["acc_memft"] - rows["acc_sft"])
        gain, low, high, _ = _t_interval(_per_sequence(rows, "acc_gain", cluster), level)
        out |= {"accuracy_gain": gain, "accuracy_gain_low": low, "accuracy_gain_high": high}
    if "rec_memft" in rows:
        rows = rows.assign(rec_gain=rows["rec_memft"] - rows["rec_sft"])
        gain, low, high, _ = _t_interval(_per_sequence(rows, "rec_gain", cluster), level)
        pairs = zip(rows["rec_memft"], rows["rec_sft"], strict=True)
        out |= {
            "recalled": ", ".join(f"{m:.0f}/{s:.0f}" for m, s in pairs),
            "recalled_gain": gain,
            "recalled_gain_low": low,
            "recalled_gain_high": high,
        }
    return out


def paired_ratios(ds, memfts, *, exclude="memorized", confidence_level: float = 0.95):
    """Compare MemFT's measured cells with SFT's on the same targets, per rank and length.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting with an ``objective`` dim holding ``"sft"`` and the MemFT methods.
    memfts : sequence of str
        The MemFT objectives.
    exclude : {"memorized"}, float or None
        Pairs where either cell is memorized by this rule are left out (ΔL saturates
        there, and a ratio near 1 would say nothing about MemFT).
    confidence_level : float
        Level of the t interval over target sequences.

    Returns
    -------
    pandas.DataFrame
        :data:`PAIRED_COLUMNS`: per (objective, rank, length) the number of pairs and of
        target sequences, the geometric-mean ratio ΔL_MemFT / ΔL_SFT, its interval (NaN
        with one sequence) and the pairs' own ratios; with ``token_accuracy`` in the data,
        ``accuracy_gain``: MemFT's token accuracy minus SFT's (mean over sequences, t
        interval); with per-token greedy flags, ``recalled``: each pair's tokens recalled
        by greedy decoding before the first error (MemFT/SFT; summed over entries), and
        ``recalled_gain``: MemFT's minus SFT's, in tokens (mean over sequences, t interval).

    Raises
    ------
    LawfitError
        No ``objective`` dim holding ``"sft"`` and each of ``memfts``; a bad level or rule.
    """
    confidence_level = V.confidence_level(confidence_level)
    pairs = paired_cells(ds, memfts, exclude=exclude)
    return summarize_pairs(pairs, confidence_level=confidence_level)


def summarize_pairs(pairs: pd.DataFrame, *, confidence_level: float = 0.95) -> pd.DataFrame:
    """Summarize :func:`paired_cells`'s pairs per objective, rank and length.

    Parameters
    ----------
    pairs : pandas.DataFrame
        From :func:`paired_cells`; with a ``data_seed`` column the intervals are over
        target sequences, without one every pair is on the one target.
    confidence_level : float
        Level of the t intervals.

    Returns
    -------
    pandas.DataFrame
        :data:`PAIRED_COLUMNS`, as :func:`paired_ratios` returns them.
    """
    if not len(pairs):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    cluster = "data_seed" if "data_seed" in pairs else None
    rows = []
    for (m, rank, length), point in pairs.groupby(["objective", "rank", "length"], sort=False):
        one = _one_point(point, cluster, confidence_level)
        rows.append({"objective": m, "rank": rank, "length": length, **one})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def paired_cells(ds, memfts, *, exclude="memorized") -> pd.DataFrame:
    """Return every (MemFT, SFT) pair of cells on the same target, one row per pair.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting with an ``objective`` dim holding ``"sft"`` and the MemFT methods.
    memfts : sequence of str
        The MemFT objectives.
    exclude : {"memorized"}, float or None
        Pairs where either cell is memorized by this rule are left out.

    Returns
    -------
    pandas.DataFrame
        ``objective``, the cell's coordinates, ``memft`` and ``sft`` (the two ΔL) and,
        where the data have them, ``acc_memft``/``acc_sft`` (token accuracy) and
        ``rec_memft``/``rec_sft`` (tokens recalled greedily before the first error).
    """
    _check_objectives(ds, memfts)
    exclude = V.exclude_rule(exclude)
    frames = [_pairs(ds, m, exclude).assign(objective=m) for m in memfts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
