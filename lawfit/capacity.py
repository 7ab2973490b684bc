"""Capacity planning from a fitted law, and bits stored per adapter parameter.

:func:`predict_capacity` inverts a fitted law on every bootstrap draw: the rank (or
parameter count) needed to reach a target at a given length, and the longest target a
given capacity can hold. :func:`bits_per_parameter` measures how many bits the adapters
stored, Σₜ log₂ p_after − log₂ p_before over target tokens, and compares bits per
trainable parameter with the ~2 (Allen-Zhu & Li) and ~3.6 (Morris et al. 2025) anchors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit._tokens import CELL_DIMS, load, ok_mask
from lawfit.errors import LawfitError

__all__ = [
    "ANCHORS_BITS_PER_PARAM",
    "BitsResult",
    "CapacityPrediction",
    "bits_per_parameter",
    "predict_capacity",
]

LN2 = math.log(2.0)

#: Literature anchors of memorization capacity, bits per trainable parameter.
ANCHORS_BITS_PER_PARAM = {
    "Allen-Zhu & Li 2024 (Physics of LMs 3.3)": 2.0,
    "Morris et al. 2025 (How much do LMs memorize?)": 3.6,
}


# ------------------------------------------------------------------------ bits/param
@dataclass(frozen=True)
class BitsResult:
    """Bits stored by each adapter and bits per trainable parameter.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per ok cell: coordinates, ``bits`` (Σₜ log₂ p_after − log₂ p_before),
        ``bits_max`` (Σₜ −log₂ p_before: all a target can take), ``n_params`` and
        ``bits_per_param``; ``source`` says whether tokens or cell losses were used.
    by_rank : pandas.DataFrame
        Per capacity group (grouping dims + rank): the largest bits stored over lengths
        and its bits per parameter (the adapter's demonstrated capacity), with the
        length at which it was reached and whether that cell was saturated (the
        target fully memorized: then the capacity is only a lower bound).
    anchors : dict
        The literature anchors (bits per parameter).
    notes : tuple of str
        What was missing or assumed.
    """

    cells: pd.DataFrame
    by_rank: pd.DataFrame
    anchors: dict
    notes: tuple[str, ...]

    @property
    def max_bits_per_param(self) -> float:
        """Largest bits per parameter demonstrated by any cell (NaN without n_params)."""
        v = self.cells.get("bits_per_param")
        return float(np.nanmax(v)) if v is not None and np.isfinite(v).any() else math.nan

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy per-cell table (same as ``cells``).

        Returns
        -------
        pandas.DataFrame
            One row per cell.
        """
        return self.cells.copy()

    def summary(self) -> str:
        """Plain-text summary.

        Returns
        -------
        str
            Multi-line text.
        """
        out = ["Bits stored per adapter parameter", "=" * 33]
        if "bits_per_param" in self.by_rank:
            for _, r in self.by_rank.iterrows():
                out.append(
                    f"rank {int(r['rank'])}: up to {r['bits']:.0f} bits "
                    f"({r['bits_per_param']:.3g} bits/param at length {int(r['length'])}"
                    + (", saturated: lower bound" if r["saturated"] else "") + ")"
                )
        out += [f"anchor {k}: {v} bits/param" for k, v in self.anchors.items()]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def bits_per_parameter(ds, *, recall_loss: float = LN2) -> BitsResult:
    """Bits stored by each adapter, and bits per trainable parameter.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset. Uses ``p_after``/``p_before`` over ``token`` when present
        (Σₜ log₂ p_after − log₂ p_before), otherwise ``loss_reduction × length / ln 2``
        (the same quantity from the cell means). ``n_params`` gives bits per parameter.
    recall_loss : float
        A cell whose ``loss_after`` is at or below this (default ln 2) is saturated: the
        target was memorized, so its bits are a lower bound of the adapter's capacity.

    Returns
    -------
    BitsResult
        Per-cell and per-rank tables, with the anchors.

    Raises
    ------
    LawfitError
        If the dataset has neither token probabilities nor ``loss_reduction``.
    """
    ds = load(ds)
    notes = []
    if "p_after" in ds and "p_before" in ds and "token" in ds["p_after"].dims:
        pa, pb = ds["p_after"], ds["p_before"].broadcast_like(ds["p_after"])
        bits = (np.log2(pa) - np.log2(pb)).sum("token", skipna=True)
        bmax = (-np.log2(pb)).sum("token", skipna=True)
        src = "tokens"
        if "step" in bits.dims:
            bits, bmax = bits.isel(step=-1), bmax.isel(step=-1)
    elif "loss_reduction" in ds and "length" in ds.dims:
        bits = ds["loss_reduction"] * ds["length"] / LN2
        bmax = ds["loss_before"] * ds["length"] / LN2 if "loss_before" in ds else None
        src = "cell losses"
        notes.append("no token probabilities: bits = loss_reduction × length / ln 2")
    else:
        raise LawfitError(
            "bits_per_parameter needs p_after and p_before over 'token', or loss_reduction "
            f"over 'length'; the dataset has {sorted(ds.data_vars)} with dims "
            f"{dict(ds.sizes)}. Collect one of them."
        )
    dims = tuple(d for d in bits.dims)
    df = bits.to_dataframe(name="bits").reset_index()
    df = df[[*dims, "bits"]]
    df["bits_max"] = (bmax.broadcast_like(bits).transpose(*dims).values.reshape(-1)
                      if bmax is not None else np.nan)
    okm = ok_mask(ds, dims).reshape(-1)
    df = df[okm & np.isfinite(df["bits"].to_numpy())].reset_index(drop=True)
    # the token sum of a never-collected cell is 0, not NaN: drop those via status
    df["source"] = src
    if "loss_after" in ds:
        la = ds["loss_after"].broadcast_like(bits).to_dataframe(name="la").reset_index()
        df = df.merge(la[[*dims, "la"]], on=list(dims), how="left")
        df["saturated"] = df.pop("la") <= recall_loss
    else:
        df["saturated"] = False
    if "n_params" in ds:
        npar = ds["n_params"].to_dataframe(name="n_params").reset_index()
        keys = [c for c in npar.columns if c in df.columns and c != "n_params"]
        df = df.merge(npar[keys + ["n_params"]], on=keys, how="left")
        df["bits_per_param"] = df["bits"] / df["n_params"]
    else:
        notes.append(
            "no 'n_params' variable: bits per parameter not computed (add n_params, dims "
            "model, modules, rank: r times the summed in+out dims of the adapted matrices)"
        )
    group = [d for d in CELL_DIMS if d in df.columns and d not in ("length", "seed")]
    if "rank" in group and len(df):
        mean = df.groupby([*group, "length"], as_index=False).agg(
            bits=("bits", "mean"),
            saturated=("saturated", "all"),
            **({"n_params": ("n_params", "first")} if "n_params" in df else {}),
        )
        idx = mean.groupby(group)["bits"].idxmax()
        by_rank = mean.loc[idx].reset_index(drop=True)
        if "n_params" in by_rank:
            by_rank["bits_per_param"] = by_rank["bits"] / by_rank["n_params"]
        if by_rank["saturated"].any():
            notes.append(
                "some ranks reached their largest bits on a fully memorized target "
                "(loss_after <= ln 2): their capacity is a lower bound; collect longer targets"
            )
    else:
        by_rank = pd.DataFrame()
    return BitsResult(cells=df, by_rank=by_rank, anchors=dict(ANCHORS_BITS_PER_PARAM),
                      notes=tuple(notes))


# --------------------------------------------------------------- capacity prediction
@dataclass(frozen=True)
class CapacityPrediction:
    """Capacity needed for a target, from a fitted law inverted on every draw.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per query with ``estimate``, ``low``, ``high`` (bootstrap percentile
        over the draws where the target is reachable), ``n_draws``,
        ``n_unreachable`` (draws on which no capacity reaches the target),
        ``unreachable`` (the point estimate cannot reach it), ``extrapolated`` (the
        answer lies outside the fitted range of ranks or lengths) and ``target_dL``
        (the target in ΔL units).
    quantity : str
        ``"rank"`` (or ``"n_params"``) needed, or ``"length"`` that can be held.
    level : float
        Confidence level.
    notes : tuple of str
        Flags and assumptions.
    """

    table: pd.DataFrame
    quantity: str
    level: float
    notes: tuple[str, ...] = field(default=())

    def to_dataframe(self) -> pd.DataFrame:
        """Tidy table (a copy of ``table``).

        Returns
        -------
        pandas.DataFrame
            One row per query.
        """
        return self.table.copy()

    def summary(self) -> str:
        """Plain-text summary.

        Returns
        -------
        str
            Multi-line text.
        """
        out = [f"Capacity prediction: {self.quantity}", "=" * 30]
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            out.append(self.table.to_string(index=False))
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def predict_capacity(*args, **kwargs):  # placeholder replaced below once fit lands
    """Raise NotImplementedError (defined once lawfit.fit lands)."""
    raise NotImplementedError
