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
from scipy import stats

from lawfit import _validate as V
from lawfit._tokens import ok_mask
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
]


def _series(part, var: str, dims: tuple[str, ...]) -> pd.Series:
    """Return ``part[var]`` over ``dims`` (in that order) as a series, one row per cell."""
    return part[var].transpose(*dims).to_series()


def _pairs(ds, objective: str, exclude) -> pd.DataFrame:
    """Return the ok, unmemorized (MemFT, SFT) cell pairs of one objective as a tidy frame.

    Columns ``memft`` and ``sft`` hold the two ΔL, ``acc_memft`` and ``acc_sft`` the
    token accuracies where the data have them.
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
        interval).

    Raises
    ------
    LawfitError
        No ``objective`` dim holding ``"sft"`` and each of ``memfts``; a bad level or rule.
    """
    exclude = V.exclude_rule(exclude)
    confidence_level = V.confidence_level(confidence_level)
    have = list(map(str, ds["objective"].values)) if "objective" in ds.dims else []
    missing = [m for m in ("sft", *memfts) if m not in have]
    if missing:
        raise LawfitError(
            f"paired_ratios compares MemFT objectives with 'sft' on the same cells; the "
            f"dataset's objectives are {have or 'none (no objective dim)'}, without "
            f"{missing}. Pass memfts among them, on a dataset that holds SFT cells."
        )
    cluster = "data_seed" if "data_seed" in ds["loss_reduction"].dims else None
    rows = []
    for m in memfts:
        pairs = _pairs(ds, m, exclude)
        for (rank, length), point in pairs.groupby(["rank", "length"]):
            one = _one_point(point, cluster, confidence_level)
            rows.append({"objective": m, "rank": rank, "length": length, **one})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
