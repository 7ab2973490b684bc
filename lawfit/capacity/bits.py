"""Bits stored per adapter parameter, against the literature's capacity anchors.

:func:`bits_per_parameter` measures how many bits the adapters stored (a
:class:`BitsResult`), by default as information (:mod:`lawfit.information`), and bits per
trainable parameter. :data:`ANCHORS_BITS_PER_PARAM` holds the ~2 (Allen-Zhu & Li) and ~3.6
(Morris et al. 2025) anchors; :func:`implied_bits_per_param` gives the bits per parameter a
predicted cell implies and :func:`beyond_known_capacity` flags more than the largest anchor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lawfit._tokens import CELL_DIMS, load, ok_mask
from lawfit.data import LN2
from lawfit.errors import LawfitError
from lawfit.information import BIT_KINDS, with_information_bits
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

#: Literature anchors of memorization capacity, bits per trainable parameter.
ANCHORS_BITS_PER_PARAM = {
    "Allen-Zhu & Li 2024 (Physics of LMs 3.3)": 2.0,
    "Morris et al. 2025 (How much do LMs memorize?)": 3.6,
}
#: Largest information capacity the literature reports (Morris et al. 2025), bits per
#: trainable parameter: a prediction implying more is beyond known capacity.
KNOWN_CAPACITY_BITS_PER_PARAM = max(ANCHORS_BITS_PER_PARAM.values())
_KIND_WORDS = {
    "stored": "information bits stored",
    "recalled": "information bits recalled",
    "dl": "ΔL bits (not information: they overstate it on random tokens)",
    "information lower bound": "information bits (a lower bound)",
}


def beyond_known_capacity(bits_per_param, kind: str = "stored") -> Flag | None:
    """Flag a prediction implying more than ~3.6 bits per parameter (None when it does not).

    Parameters
    ----------
    bits_per_param : float or array_like
        Bits per trainable parameter that the prediction implies (NaN ignored).
    kind : str
        What the bits count: ``"stored"``, ``"recalled"``, ``"information lower bound"``
        (all information: the flag is a ``"warning"``) or ``"dl"`` (ΔL bits, which
        overstate information in expectation: the flag is ``"info"``, a hint to pass the
        content's entropy).

    Returns
    -------
    Flag or None
        Code ``beyond_known_capacity`` when the largest value exceeds
        :data:`KNOWN_CAPACITY_BITS_PER_PARAM`.
    """
    v = np.asarray(bits_per_param, float)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.max() <= KNOWN_CAPACITY_BITS_PER_PARAM:
        return None
    hint = (
        " (pass entropy_bits=<the content's entropy per token> to check it in information)"
        if kind == "dl"
        else ""
    )
    return Flag(
        "beyond_known_capacity",
        f"a prediction implies up to {v.max():.3g} bits per parameter "
        f"({_KIND_WORDS.get(kind, kind)}), more than the ~{KNOWN_CAPACITY_BITS_PER_PARAM:g} "
        "bits/param of Morris et al. 2025 (and the ~2 of Allen-Zhu & Li): beyond known "
        f"capacity, an extrapolation the law cannot support{hint}",
        "info" if kind == "dl" else "warning",
    )


def implied_bits_per_param(
    n_params, length, *, loss_reduction, loss_after=None, entropy_bits=None
) -> tuple[np.ndarray, str]:
    """Bits per parameter that a predicted cell implies, and what they count.

    With the content's entropy H (bits per token) and the predicted ``loss_after`` L₁, the
    information stored is at least ℓ·max(0, H − L₁/ln 2) (the bits saved below the content's
    entropy, which the per-token floor of ``bits_stored`` only raises). Otherwise the ΔL bits
    ℓ·ΔL/ln 2, which overstate information in expectation (a base model's cross-entropy is at
    least the content's entropy).

    Parameters
    ----------
    n_params, length, loss_reduction : array_like
        Trainable parameters, target length and predicted ΔL (nats/token).
    loss_after : array_like, optional
        Predicted loss after training (nats/token).
    entropy_bits : float, optional
        Content entropy per target token, bits.

    Returns
    -------
    bits_per_param : numpy.ndarray
    kind : {"information lower bound", "dl"}
    """
    n, ell = np.asarray(n_params, float), np.asarray(length, float)
    with np.errstate(all="ignore"):
        if entropy_bits is not None and loss_after is not None:
            bits = ell * np.maximum(0.0, float(entropy_bits) - np.asarray(loss_after) / LN2)
            return bits / n, "information lower bound"
        return ell * np.asarray(loss_reduction, float) / LN2 / n, "dl"


@dataclass(frozen=True)
class BitsResult(ResultProtocol):
    """Bits stored by each adapter and bits per trainable parameter.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per ok cell: coordinates, ``bits`` (the kind asked for, see
        :func:`bits_per_parameter`), ``bits_kind`` (what ``bits`` holds in that row),
        ``bits_stored``, ``bits_recalled``, ``bits_dl`` (:mod:`lawfit.information`),
        ``bits_max`` (all a target can take: its content's entropy Σₜ Hₜ for information
        bits, Σₜ −log₂ p_before for ΔL bits), ``n_params`` and ``bits_per_param``;
        ``source`` says whether tokens or cell losses were used.
    by_rank : pandas.DataFrame
        Per capacity group (grouping dims + rank): the largest bits stored over lengths
        and its bits per parameter (the adapter's demonstrated capacity), with the
        length at which it was reached, whether that cell was saturated (mean
        loss_after <= ln 2, the paper's memorized rule) and whether that length is the
        longest collected for the group (``at_longest``): either way the capacity is
        only a lower bound.
    anchors : dict
        The literature anchors (bits per parameter).
    notes : tuple of str
        What was missing or assumed.
    flags : tuple of Flag
        Warnings (none set yet; the field completes the common result interface).
    """

    cells: pd.DataFrame
    by_rank: pd.DataFrame
    anchors: dict
    notes: tuple[str, ...]
    flags: tuple[Flag, ...] = ()

    @property
    def max_bits_per_param(self) -> float:
        """Largest bits per parameter demonstrated by any cell (NaN without n_params)."""
        v = self.cells.get("bits_per_param")
        return float(np.nanmax(v)) if v is not None and np.isfinite(v).any() else math.nan

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        str
            Multi-line text.
        """
        out = ["Bits stored per adapter parameter", "=" * 33]
        if "bits_per_param" in self.by_rank:
            varying = [  # the groups' other dims, named where they tell rows apart
                c
                for c in self.by_rank.columns
                if c in CELL_DIMS and c not in ("rank", "length") and self.by_rank[c].nunique() > 1
            ]
            for _, r in self.by_rank.iterrows():
                where = ", ".join(f"{c} {r[c]}" for c in varying)
                out.append(
                    f"rank {int(r['rank'])}{f' ({where})' if where else ''}: "
                    f"up to {r['bits']:.0f} bits "
                    f"({r['bits_per_param']:.3g} bits/param at length {int(r['length'])}"
                    + (", saturated: lower bound" if r["saturated"] else "")
                    + (
                        ", the longest length collected: lower bound"
                        if r.get("at_longest", False) and not r["saturated"]
                        else ""
                    )
                    + ")"
                )
        out += [f"anchor {k}: {v} bits/param" for k, v in self.anchors.items()]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def largest_bits(mean: pd.DataFrame, group: Sequence[str]) -> pd.DataFrame:
    """Return, per group, the row of the length with the most bits, and if it is the longest.

    Parameters
    ----------
    mean : pandas.DataFrame
        One row per group and ``length`` with a ``bits`` column (mean over replicates).
    group : sequence of str
        The columns naming a capacity group (e.g. the grouping dims and rank, or a carrier
        and its size).

    Returns
    -------
    pandas.DataFrame
        One row per group, with ``at_longest``: the most bits sit at the longest length
        collected for the group, so longer targets may hold more and the group's capacity
        is only a lower bound.
    """
    group = list(group)
    best = mean.loc[mean.groupby(group)["bits"].idxmax()].reset_index(drop=True)
    longest = mean.groupby(group, as_index=False)["length"].max()
    longest = best[group].merge(longest, on=group, how="left")["length"].to_numpy()
    return best.assign(at_longest=best["length"].to_numpy() == longest)


def bits_per_parameter(
    ds, *, recall_loss: float = LN2, kind: str = "stored", entropy=None
) -> BitsResult:
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
    kind : {"stored", "recalled", "dl"}
        What ``bits`` counts: information stored (default; Σₜ max(0, Hₜ − CE_after,ₜ/ln 2)),
        the entropy of the entries recalled exactly, or ΔL bits (not information). Cells
        whose content entropy is unknown (natural text) fall back to ΔL bits, flagged. All
        three are columns of ``cells`` whatever ``kind`` is.
    entropy : float or xarray.DataArray, optional
        Hₜ in bits per target token (:func:`lawfit.information.target_entropy`); default:
        the dataset's ``entropy_bits``, else derived from its task metadata.

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
    if kind not in BIT_KINDS:
        raise LawfitError(f"kind must be one of {sorted(BIT_KINDS)}; got {kind!r}.")
    notes: list[str] = []
    flags: list[Flag] = []
    bits, bmax, src = _summed_bits(ds, notes)
    df = _cell_bits_table(ds, bits, bmax, src)
    df = with_information_bits(df, ds, kind, entropy, notes, flags)
    df = _with_saturation_and_size(df, ds, bits, recall_loss, notes)
    return BitsResult(
        cells=df,
        by_rank=_largest_by_rank(df, notes),
        anchors=dict(ANCHORS_BITS_PER_PARAM),
        notes=tuple(notes),
        flags=tuple(flags),
    )


def _summed_bits(ds, notes: list[str]):
    """ΔL bits per cell summed over its tokens, their ceiling, and where they come from.

    Returns ``(bits, bmax, source)``: Σₜ log₂ p_after − log₂ p_before and Σₜ −log₂ p_before
    from the token probabilities (at the last step of a trajectory), else the same from the
    cell means (``bmax`` None without ``loss_before``), with a note.
    """
    if "p_after" in ds and "p_before" in ds and "token" in ds["p_after"].dims:
        pa, pb = ds["p_after"], ds["p_before"].broadcast_like(ds["p_after"])
        bits = (np.log2(pa) - np.log2(pb)).sum("token", skipna=True)
        bmax = (-np.log2(pb)).sum("token", skipna=True)
        if "step" in bits.dims:
            bits, bmax = bits.isel(step=-1), bmax.isel(step=-1)
        return bits, bmax, "tokens"
    if "loss_reduction" in ds and "length" in ds.dims:
        bits = ds["loss_reduction"] * ds["length"] / LN2
        bmax = ds["loss_before"] * ds["length"] / LN2 if "loss_before" in ds else None
        notes.append("no token probabilities: bits = loss_reduction × length / ln 2")
        return bits, bmax, "cell losses"
    raise LawfitError(
        "bits_per_parameter needs p_after and p_before over 'token', or loss_reduction "
        f"over 'length'; the dataset has {sorted(ds.data_vars)} with dims "
        f"{dict(ds.sizes)}. Collect one of them."
    )


def _cell_bits_table(ds, bits, bmax, source: str) -> pd.DataFrame:
    """One row per finished cell: its coordinates, ``bits``, ``bits_max`` and ``source``."""
    dims = tuple(bits.dims)
    df = bits.to_dataframe(name="bits").reset_index()[[*dims, "bits"]]
    df["bits_max"] = (
        bmax.broadcast_like(bits).transpose(*dims).values.reshape(-1)
        if bmax is not None
        else np.nan
    )
    # the token sum of a never-collected cell is 0, not NaN: drop those via status
    okm = ok_mask(ds, dims).reshape(-1)
    df = df[okm & np.isfinite(df["bits"].to_numpy())].reset_index(drop=True)
    df["source"] = source
    return df


def _with_saturation_and_size(df, ds, bits, recall_loss: float, notes: list[str]):
    """Add ``saturated``, and with ``n_params`` in ``ds`` ``bits_per_param``, to the cells.

    A cell is saturated (memorized) where its ``loss_after`` is at or below ``recall_loss``.
    """
    dims = list(bits.dims)
    if "loss_after" in ds:
        la = ds["loss_after"].broadcast_like(bits).to_dataframe(name="la").reset_index()
        df = df.merge(la[[*dims, "la"]], on=dims, how="left")
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
    return df


def _largest_by_rank(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Each rank's largest mean bits over lengths (its shown capacity), with lower-bound notes.

    Empty without a ``rank`` column or cells.
    """
    group = [d for d in CELL_DIMS if d in df.columns and d not in ("length", "seed")]
    if "rank" not in group or not len(df):
        return pd.DataFrame()
    mean = df.groupby([*group, "length"], as_index=False).agg(
        bits=("bits", "mean"),
        **{c: (c, "mean") for c in BIT_KINDS.values() if c in df},
        saturated=("saturated", "all"),
        **({"n_params": ("n_params", "first")} if "n_params" in df else {}),
    )
    by_rank = largest_bits(mean, group)
    if "n_params" in by_rank:
        by_rank["bits_per_param"] = by_rank["bits"] / by_rank["n_params"]
    if by_rank["saturated"].any():
        notes.append(
            "some ranks reached their largest bits on a memorized target (mean "
            "loss_after <= ln 2): their capacity is a lower bound; collect longer targets"
        )
    if (by_rank["at_longest"] & ~by_rank["saturated"]).any():
        notes.append(
            "some ranks stored their most bits at the longest target collected for them "
            "(at_longest): longer targets may hold more, so their capacity is a lower "
            "bound; collect longer targets to see where bits stored stop growing"
        )
    return by_rank
