"""Capacity in information bits: what an adapter stored about its targets' content.

The ~2 (Allen-Zhu & Li) and ~3.6 (Morris et al. 2025) bits per parameter of the literature
count *information*. The loss reduction in bits is not information: on uniformly random
tokens a base model can be worse than uniform, and an adapter earns ΔL bits just by learning
that the tokens are uniform (DESIGN.md §1). Three quantities per cell, kept apart:

``bits_stored``
    Σₜ max(0, Hₜ − CE_after,ₜ / ln 2) = Σₜ max(0, Hₜ + log₂ p_after,ₜ), with Hₜ the entropy
    of target token t's content (``entropy_bits``): the code length the adapter saved below
    the content's own entropy, never below 0 per token.
``bits_recalled``
    Σ of Hₜ over the entries reproduced exactly under greedy decoding.
``bits_dl``
    Σₜ log₂ p_after,ₜ − log₂ p_before,ₜ: ΔL in bits, what was called "bits stored" before.

Hₜ comes from the dataset's ``entropy_bits`` (recorded by ``collect`` since it exists). For a
dataset written before that, it is derived from the task metadata: the sweep config in the
dataset's attributes gives the data seed and source, and ``collect`` rebuilds the targets
with the model's tokenizer (:func:`collect.tasks.target_entropy`). Where no entropy is known
(natural text), the information bits are NaN and flagged, and ΔL bits are what is left.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from lawfit._tokens import load, ok_mask
from lawfit.errors import LawfitError
from lawfit.protocol import Flag, ResultProtocol, SummaryText

__all__ = [
    "BIT_KINDS",
    "InformationBits",
    "bits_dl",
    "bits_recalled",
    "bits_stored",
    "information_bits",
    "target_entropy",
]

#: Which bits :func:`lawfit.bits_per_parameter` can count, and the column of each.
BIT_KINDS = {"stored": "bits_stored", "recalled": "bits_recalled", "dl": "bits_dl"}


# ------------------------------------------------------------------------ entropy H_t
@dataclass(frozen=True)
class TargetEntropyBits:
    """Per-token content entropy of a dataset, and where it came from.

    Attributes
    ----------
    bits : xarray.DataArray or None
        Entropy in bits per target token, broadcastable to ``p_after``; NaN where unknown.
        None when no entropy could be had at all.
    source : str
        ``"recorded"``, ``"given"``, ``"derived from the task metadata ..."`` or why it is
        unknown.
    """

    bits: xr.DataArray | None
    source: str


def target_entropy(ds, entropy=None) -> TargetEntropyBits:
    """Entropy of each target token's content, in bits.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``p_after`` over ``token``.
    entropy : float, array_like or xarray.DataArray, optional
        Override: bits per token (one number for every token, an array shaped like
        ``p_after``, or a DataArray broadcastable to it). Default: the dataset's
        ``entropy_bits``, else derived from its task metadata.

    Returns
    -------
    TargetEntropyBits
        The entropy and its source.
    """
    ds = load(ds)
    if entropy is not None:
        bits = entropy if isinstance(entropy, xr.DataArray) else _as_token_array(ds, entropy)
        if bits.size and np.any(np.asarray(bits) < 0):
            raise LawfitError(
                f"entropy must be bits per token, >= 0; got a minimum of {float(bits.min())}. "
                "Pass the content's entropy in bits (log2 of the number of equally likely values)."
            )
        return TargetEntropyBits(bits, "given")
    if "entropy_bits" in ds and _known_somewhere(ds):
        basis = ds.attrs.get("entropy_basis")
        return TargetEntropyBits(ds["entropy_bits"], "recorded" + (f": {basis}" if basis else ""))
    # a selection such as ds.sel(task="phonebook") leaves scalar coordinates: dims again
    scalar = [d for d in _COMBO_DIMS if d in ds.coords and ds[d].ndim == 0]
    got = _derive_from_metadata(ds.expand_dims(scalar) if scalar else ds)
    if scalar and got.bits is not None:
        return TargetEntropyBits(got.bits.squeeze(scalar), got.source)
    return got


def _as_token_array(ds: xr.Dataset, entropy) -> xr.DataArray:
    """Wrap a number, or an array shaped like ``p_after``, as a DataArray."""
    arr = np.asarray(entropy, dtype=float)
    if arr.ndim == 0:
        return xr.DataArray(arr)
    pa = _token_vars(ds)[1]
    if arr.shape != pa.shape:
        raise LawfitError(
            f"entropy must be one number or an array shaped like p_after {pa.shape} (dims "
            f"{pa.dims}); got shape {arr.shape}. Pass an xarray.DataArray to broadcast."
        )
    return pa.copy(data=arr)


def _known_somewhere(ds: xr.Dataset) -> bool:
    """Whether ``entropy_bits`` is finite at some token of some ok cell."""
    ent = ds["entropy_bits"]
    cell_dims = tuple(d for d in ent.dims if d != "token")
    coords = {d: ent[d] for d in cell_dims if d in ent.coords}
    ok = xr.DataArray(ok_mask(ds, cell_dims), dims=cell_dims, coords=coords)
    return bool(ent.where(ok).notnull().any())


def _derive_from_metadata(ds: xr.Dataset) -> TargetEntropyBits:
    """Rebuild the targets of an older ``collect`` dataset and compute their entropy."""
    config = ds.attrs.get("config")
    need = {"model", "task", "random_ratio", "length", "token"}
    if config is None or not need <= set(ds.dims):
        return TargetEntropyBits(
            None,
            "unknown: the dataset has no entropy_bits and no collect sweep config (attribute "
            f"'config' with dims {sorted(need)}) to derive it from; pass entropy=<bits per token>",
        )
    try:
        from collect.models import load_tokenizer
        from collect.tasks import build_task
        from collect.tasks import target_entropy as collect_entropy
    except ImportError as exc:
        return TargetEntropyBits(
            None, f"unknown: deriving it needs the collect extra ({exc}); pass entropy=<bits>"
        )
    cfg = json.loads(config)
    source = cfg.get("source")
    out = xr.full_like(
        ds["p_after"].isel({d: 0 for d in ds["p_after"].dims if d not in need}, drop=True),
        np.nan,
        dtype=float,
    ).transpose("model", "task", "random_ratio", "length", "token")
    bases = {}
    for model, task, ratio, length in _collected_combos(ds):
        try:
            tok = _tokenizer(model, load_tokenizer)
            kw = {
                "random_ratio": ratio,
                "data_seed": int(cfg.get("data_seed", 0)),
                "source": source.get(task) if isinstance(source, dict) else source,
            }
            ent = collect_entropy(task, tok, build_task(task, tok, length, **kw), **kw)
        except Exception as exc:  # noqa: BLE001 - any failure leaves this entropy unknown
            bases[f"{model} {task} random_ratio={ratio:g}"] = f"unknown ({exc})"
            continue
        at = {"model": model, "task": task, "random_ratio": ratio, "length": length}
        out.loc[at] = np.pad(
            ent.bits, (0, out.sizes["token"] - ent.bits.size), "constant", constant_values=np.nan
        )
        bases[f"{model} {task} random_ratio={ratio:g}"] = ent.basis
    text = "; ".join(f"{k}: {v}" for k, v in bases.items())
    return TargetEntropyBits(
        out,
        "derived from the task metadata (no entropy_bits recorded; targets rebuilt "
        f"with the model's tokenizer from the sweep config): {text}",
    )


@functools.cache
def _tokenizer(model: str, loader):
    """Load a model's tokenizer once per process (a report derives H_t once per group)."""
    return loader(model)


#: The dims that fix a target: entropy is derived once per combination of them.
_COMBO_DIMS = ("model", "task", "random_ratio", "length")


def _collected_combos(ds: xr.Dataset) -> list[tuple[str, str, float, int]]:
    """(model, task, random_ratio, length) of every ok cell."""
    dims = _COMBO_DIMS
    st = ds["status"] if "status" in ds else xr.full_like(ds["p_after"].isel(token=0), "ok", str)
    ok = (st == "ok").any([d for d in st.dims if d not in dims]).transpose(*dims)
    idx = ok.to_series()
    return [tuple(k) for k, v in idx.items() if v]


# ------------------------------------------------------------------------ the three bits
def _token_vars(ds) -> tuple[xr.Dataset, xr.DataArray]:
    ds = load(ds)
    if "p_after" not in ds or "token" not in ds["p_after"].dims:
        raise LawfitError(
            "information bits need per-token probabilities: 'p_after' over 'token' (data "
            f"contract, DESIGN.md §3); the dataset has {sorted(ds.data_vars)}. Collect them."
        )
    pa = ds["p_after"]
    if "step" in pa.dims:
        pa = pa.isel(step=-1)
    return ds, pa


def _entropy_like(ds, pa, entropy) -> xr.DataArray:
    got = target_entropy(ds, entropy)
    if got.bits is None:
        return xr.full_like(pa, np.nan, dtype=float)
    return got.bits.broadcast_like(pa).transpose(*pa.dims)


def bits_stored(ds, entropy=None) -> xr.DataArray:
    """Information stored per cell: Σₜ max(0, Hₜ + log₂ p_after,ₜ).

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``p_after`` over ``token``.
    entropy : float or xarray.DataArray, optional
        Hₜ in bits (see :func:`target_entropy`); default: recorded or derived.

    Returns
    -------
    xarray.DataArray
        Bits per cell; NaN where a target token's entropy is unknown or the cell is empty.
    """
    ds, pa = _token_vars(ds)
    return _floored_sum(_entropy_like(ds, pa, entropy), pa, pa.notnull())


def _floored_sum(h: xr.DataArray, p: xr.DataArray, valid: xr.DataArray) -> xr.DataArray:
    """Σₜ max(0, Hₜ + log₂ pₜ) over the valid tokens of each cell."""
    with np.errstate(divide="ignore"):
        per_token = np.maximum(0.0, h + np.log2(p.transpose(*h.dims)))
    return _sum_valid(per_token, valid)


def bits_dl(ds) -> xr.DataArray:
    """ΔL in bits per cell: Σₜ log₂ p_after,ₜ − log₂ p_before,ₜ (not information).

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``p_after`` and ``p_before`` over ``token``.

    Returns
    -------
    xarray.DataArray
        Bits per cell (NaN for a cell without tokens).
    """
    ds, pa = _token_vars(ds)
    if "p_before" not in ds:
        raise LawfitError(
            f"bits_dl needs 'p_before' over 'token'; the dataset has {sorted(ds.data_vars)}."
        )
    pb = ds["p_before"].broadcast_like(pa).transpose(*pa.dims)
    with np.errstate(divide="ignore"):
        return _sum_valid(np.log2(pa) - np.log2(pb), pa.notnull())


def bits_recalled(ds, entropy=None) -> xr.DataArray:
    """Entropy of the entries reproduced exactly under greedy decoding, per cell.

    An entry counts when every one of its target tokens is ``greedy_correct == 1``; it
    contributes the sum of its tokens' Hₜ.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``p_after``, ``greedy_correct`` and ``entry`` over ``token``
        (without ``entry``, the whole target is one entry).
    entropy : float or xarray.DataArray, optional
        Hₜ in bits (see :func:`target_entropy`).

    Returns
    -------
    xarray.DataArray
        Bits per cell; NaN where a recalled entry has a token of unknown entropy.
    """
    ds, pa = _token_vars(ds)
    if "greedy_correct" not in ds:
        raise LawfitError(
            "bits_recalled needs 'greedy_correct' over 'token'; the dataset has "
            f"{sorted(ds.data_vars)}. Collect greedy decoding results."
        )
    h = _entropy_like(ds, pa, entropy)
    greedy = ds["greedy_correct"].broadcast_like(pa).transpose(*pa.dims)
    entry = ds["entry"] if "entry" in ds else xr.zeros_like(pa, dtype=np.int64)
    entry = entry.broadcast_like(pa).transpose(*pa.dims).where(pa.notnull(), -1)
    return xr.apply_ufunc(
        _recalled_bits_one_cell,
        h,
        greedy,
        entry,
        input_core_dims=[["token"]] * 3,
        vectorize=True,
    )


def _recalled_bits_one_cell(h: np.ndarray, greedy: np.ndarray, entry: np.ndarray) -> float:
    valid = (entry >= 0) & np.isfinite(greedy)
    if not valid.any():
        return math.nan
    ent = entry[valid].astype(np.int64)
    n = int(ent.max()) + 1
    missed = np.bincount(ent, weights=(greedy[valid] != 1).astype(float), minlength=n) > 0
    bits = np.bincount(ent, weights=h[valid], minlength=n)  # NaN propagates per entry
    return float(bits[~missed].sum())


def _sum_valid(per_token: xr.DataArray, valid: xr.DataArray) -> xr.DataArray:
    """Sum over tokens where ``valid`` (NaN elsewhere is padding); NaN for an empty cell."""
    total = per_token.where(valid, 0.0).sum("token", skipna=False)
    return total.where(valid.any("token"))


# ------------------------------------------------------------------------ per-cell table
@dataclass(frozen=True)
class InformationBits(ResultProtocol):
    """The three kinds of bits of every ok cell.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per ok cell: its coordinates, ``bits_stored``, ``bits_recalled``,
        ``bits_dl``, ``bits_content`` (Σₜ Hₜ, the most that can be stored),
        ``bits_saved`` (Σₜ Hₜ + log₂ p_after,ₜ without the per-token floor at 0: the net
        code length saved below the content's entropy, which a noisy prediction does not
        inflate; ≤ ``bits_stored``), ``bits_stored_base`` (the same measure on the model
        before training, Σₜ max(0, Hₜ + log₂ p_before,ₜ): the floor a carrier that learned
        nothing still shows, because the base model gives some tokens more than 2^−Hₜ by
        chance) and ``entropy_known`` (every token's Hₜ is known).
    entropy_source : str
        Where Hₜ came from (recorded, given, derived from the metadata, or unknown).
    notes : tuple of str
        Flags: cells of unknown entropy, derived entropy.
    """

    cells: pd.DataFrame
    entropy_source: str
    notes: tuple[str, ...]
    flags: tuple[Flag, ...] = ()

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        SummaryText
            The per-cell table, the flags and the notes.
        """
        out = ["Information bits per cell", "=" * 25, f"entropy: {self.entropy_source}"]
        with pd.option_context("display.width", 160, "display.max_columns", 30):
            out.append(self.cells.to_string(index=False))
        out += [f"flag: {f}" for f in self.flags] + [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def information_bits(ds, entropy=None) -> InformationBits:
    """Bits stored, bits recalled and ΔL bits of every ok cell (see the module docstring).

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset with ``p_after``, ``p_before``, ``greedy_correct`` (and ``entry``)
        over ``token``.
    entropy : float or xarray.DataArray, optional
        Hₜ in bits per token; default: the recorded ``entropy_bits``, else derived from the
        task metadata.

    Returns
    -------
    InformationBits
        Per-cell table, the entropy's source and flags.

    Raises
    ------
    LawfitError
        Without per-token probabilities, greedy results or ``p_before``.
    """
    ds, pa = _token_vars(ds)
    got = target_entropy(ds, entropy)
    h = xr.full_like(pa, np.nan, dtype=float) if got.bits is None else got.bits
    h = h.broadcast_like(pa).transpose(*pa.dims)
    valid = pa.notnull()
    table = xr.Dataset(
        {
            "bits_stored": bits_stored(ds, h),
            "bits_recalled": bits_recalled(ds, h),
            "bits_dl": bits_dl(ds),
            "bits_content": _sum_valid(h, valid),
            "bits_saved": _sum_valid(h + np.log2(pa), valid),
            "bits_stored_base": _floored_sum(h, ds["p_before"].broadcast_like(pa), valid),
            "entropy_known": (h.notnull() | ~valid).all("token"),
        }
    )
    dims = tuple(d for d in pa.dims if d != "token")
    df = table.to_dataframe(dim_order=list(dims)).reset_index()
    keep = ok_mask(ds, dims).reshape(-1) & np.isfinite(df["bits_dl"].to_numpy(float))
    df = df[keep].reset_index(drop=True)
    notes = []
    if got.source.startswith("derived"):
        notes.append(
            "entropy_bits not recorded in this dataset: H_t derived from its task metadata"
        )
    unknown = df.loc[~df["entropy_known"]]
    if len(unknown):
        groups = (
            sorted({f"{r.task} random_ratio={r.random_ratio:g}" for r in unknown.itertuples()})
            if {"task", "random_ratio"} <= set(df)
            else []
        )
        flags = (
            Flag(
                "entropy_unknown",
                f"{len(unknown)} cells have target tokens of unknown entropy "
                f"({', '.join(groups) or 'see entropy_known'}): bits_stored/bits_recalled are NaN "
                "there and only ΔL bits (bits_dl) are reported, which are not information",
            ),
        )
    else:
        flags = ()
    return InformationBits(cells=df, entropy_source=got.source, notes=tuple(notes), flags=flags)


# ------------------------------------------------------------------------ bits_per_parameter
def with_information_bits(
    cells: pd.DataFrame, ds: xr.Dataset, kind: str, entropy, notes: list[str], flags: list
) -> pd.DataFrame:
    """Add the three kinds of bits to :func:`lawfit.bits_per_parameter`'s cell table.

    ``cells`` has one row per ok cell with its coordinates and ``bits`` (ΔL bits). Adds
    ``bits_stored``, ``bits_recalled``, ``bits_dl`` and ``bits_kind``, and sets ``bits`` and
    ``bits_max`` to the ``kind`` asked for (ΔL bits where the content's entropy is
    unknown). Appends what was assumed to ``notes`` and what is missing to ``flags``.
    """
    out = cells.copy()
    have_tokens = all(v in ds for v in ("p_after", "p_before", "greedy_correct"))
    if not have_tokens or "token" not in ds["p_after"].dims:
        out["bits_dl"], out["bits_kind"] = out["bits"], "dl"
        if kind != "dl":
            flags.append(
                Flag(
                    "information_bits_unavailable",
                    "no per-token p_after/p_before/greedy_correct: information bits cannot be "
                    "computed; bits are ΔL bits, which are not information",
                )
            )
        return out
    info = information_bits(ds, entropy)
    keys = [c for c in info.cells.columns if c in out.columns and not c.startswith("bits")]
    extra = ["bits_stored", "bits_recalled", "bits_saved", "bits_content", "entropy_known"]
    extra.append("bits_stored_base")
    out = out.merge(info.cells[[*keys, *extra]], on=keys, how="left")
    if kind == "stored":
        flags.extend(_at_the_floor(out))
    out["bits_dl"] = out["bits"]
    if kind != "dl":
        known = out["entropy_known"].fillna(False).astype(bool).to_numpy()
        out["bits"] = np.where(known, out[BIT_KINDS[kind]], out["bits_dl"])
        out["bits_max"] = np.where(known, out["bits_content"], out["bits_max"])
        out["bits_kind"] = np.where(known, kind, "dl (entropy unknown)")
    else:
        out["bits_kind"] = "dl"
    notes.append(f"bits counted: {kind} ({BIT_KINDS[kind]}); entropy: {info.entropy_source}")
    notes.extend(info.notes)
    flags.extend(info.flags)
    return out.drop(columns=["bits_content", "entropy_known"])


#: A gain over the untrained model's floor below this share of the content is chance.
FLOOR_RESOLUTION = 0.01


def _at_the_floor(cells: pd.DataFrame) -> tuple[Flag, ...]:
    """Flag cells whose bits stored do not exceed the untrained model's floor."""
    gain = cells["bits_stored"] - cells["bits_stored_base"]
    at_floor = (gain <= FLOOR_RESOLUTION * cells["bits_content"]).fillna(False).to_numpy(bool)
    if not at_floor.any():
        return ()
    return (
        Flag(
            "at_base_floor",
            f"{int(at_floor.sum())} of {len(cells)} cells store no more than the untrained "
            "model's floor (bits_stored - bits_stored_base below 1 % of the content's "
            "entropy): their bits are the base model's chance gains, not memory",
        ),
    )
