"""MemFT against SFT on the same targets: the measured ΔL ratio, with no law in between.

A MemFT cell and the SFT cell at its rank, length, initialisation seed and target sequence
form a pair; their ΔL ratio needs no fitted law and no assumption about exponents. Target
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
]


def _pairs(ds, objective: str, exclude) -> pd.DataFrame:
    """Return the ok, unmemorized (MemFT, SFT) cell pairs of one objective as a tidy frame."""
    memft, sft = ds.sel(objective=objective), ds.sel(objective="sft")
    dims = tuple(memft["loss_reduction"].dims)
    ok = ok_mask(memft, dims) & ok_mask(sft, dims)
    frame = pd.DataFrame(
        {
            "memft": memft["loss_reduction"].where(ok).to_series(),
            "sft": sft["loss_reduction"].transpose(*dims).where(ok).to_series(),
        }
    )
    thr = memorized_threshold(exclude)
    if thr is not None and "loss_after" in ds:
        for name, part in (("memft", memft), ("sft", sft)):
            frame[f"after_{name}"] = part["loss_after"].transpose(*dims).to_series()
        keep = (frame["after_memft"] > thr) & (frame["after_sft"] > thr)
        frame = frame[keep]
    frame = frame.dropna(subset=["memft", "sft"])
    frame = frame[(frame["memft"] > 0) & (frame["sft"] > 0)]
    return frame.reset_index()


def _one_point(rows: pd.DataFrame, cluster: str | None, level: float) -> dict:
    """Return the geometric-mean ratio and its t interval over targets at one (rank, length)."""
    rows = rows.assign(log_ratio=np.log(rows["memft"] / rows["sft"]))
    # without a data_seed dim every pair is on the one target: one sequence, no interval
    if cluster:
        by = rows.groupby(cluster)["log_ratio"].mean()
    else:
        by = pd.Series([rows["log_ratio"].mean()])
    n = len(by)
    centre = float(by.mean())
    low = high = np.nan
    if n >= 2:
        half = stats.t.ppf(0.5 + level / 2, n - 1) * float(by.std(ddof=1)) / np.sqrt(n)
        low, high = np.exp(centre - half), np.exp(centre + half)
    return {
        "pairs": len(rows),
        "sequences": n,
        "ratio": float(np.exp(centre)),
        "low": low,
        "high": high,
        "ratios": ", ".join(f"{v:.3f}" for v in np.exp(rows["log_ratio"])),
    }


def paired_ratios(ds, memfts, *, exclude="memorized", confidence_level: float = 0.95):
    """MemFT's measured ΔL over SFT's on the same cells, per objective, rank and length.

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
        with one sequence) and the pairs' own ratios.

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
