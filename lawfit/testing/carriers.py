"""Synthetic carrier sweeps with a planted law and planted bits per parameter per carrier."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from lawfit.errors import LawfitError

__all__ = ["synthetic_carrier_dataset"]

_KIND = re.compile(r"^(?P<kind>memtok|kv|skv)(@(?P<at>.+))?$")


def _spec(label: str, knob: int) -> tuple[str, int]:
    """``modules`` value and rank of one size of a carrier (LoRA: the label at that rank)."""
    match = _KIND.match(label)
    if match is None:
        return label, int(knob)
    at = f"@{match['at']}" if match["at"] else ""
    return f"{match['kind']}:{int(knob)}{at}", 1


def synthetic_carrier_dataset(
    carriers: Mapping[str, Mapping],
    *,
    lengths: Sequence[int] = (64, 128, 256, 512),
    seeds: int = 2,
    noise: float = 0.05,
    bits_noise: float = 0.05,
    loss_before: float = 4.0,
    entropy_bits: float = 15.0,
    tokens: bool = False,
    dtype: str = "float32",
    rng: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Simulate one setting of a carrier sweep in the contract's shape, with known truth.

    Parameters
    ----------
    carriers : mapping
        Carrier label (a LoRA placement such as ``"mlp_block@20"``, or ``"memtok"``,
        ``"kv@20"``, ``"skv@all"``) → its truth: ``sizes`` (ranks, m or k),
        ``params_per_knob`` (n_params per unit of size), the law ``C``, ``alpha``, ``beta``,
        ``b`` (ΔL = C·N^α·ℓ^(−β) + b with N = n_params) and optionally ``bits_per_param``.
    lengths : sequence of int
        Target lengths.
    seeds : int
        Replicates (``seed`` dim).
    noise : float
        sd of log ΔL.
    bits_noise : float
        sd of the log of the bits stored (mean-one log-normal factor).
    loss_before : float
        Base loss per token, nats.
    entropy_bits : float
        Content entropy per token (bits), recorded as ``entropy_bits``.
    tokens : bool
        Add per-token ``p_before``, ``p_after``, ``greedy_correct``, ``entropy_bits`` and
        ``entry`` such that a cell at length ℓ stores κ·N·ℓ/ℓ_max information bits
        (κ = ``bits_per_param``; the longest length holds κ·N, which must not exceed
        ℓ_max·H).
    dtype : str
        Per-cell storage ``dtype`` text (``n_bytes`` is not recorded: lawfit derives it).
    rng : int or numpy.random.Generator, optional
        Seed.

    Returns
    -------
    xarray.Dataset
        Dims ``modules``, ``rank``, ``length``, ``seed`` (and ``token``); cells that do not
        exist (a carrier spec at rank > 1, a LoRA rank not simulated) are ``not_run``. The
        truth is in ``attrs["truth"]`` (JSON).
    """
    import json

    gen = np.random.default_rng(rng)
    cells = {}  # (modules, rank) -> (label, n_params)
    for label, t in carriers.items():
        for k in t["sizes"]:
            cells[_spec(label, k)] = (label, int(k) * int(t["params_per_knob"]))
    modules = sorted({m for m, _ in cells})
    ranks = sorted({r for _, r in cells})
    lengths = np.asarray(lengths, np.int64)
    shape = (len(modules), len(ranks), lengths.size, int(seeds))
    npar = np.full(shape[:2], -1, np.int64)
    mean, kappa = np.full(shape[:3], np.nan), np.full(shape[:2], np.nan)
    for (m, r), (label, n) in cells.items():
        i, j, t = modules.index(m), ranks.index(r), carriers[label]
        npar[i, j] = n
        mean[i, j] = t["C"] * n ** t["alpha"] * lengths.astype(float) ** -t["beta"] + t["b"]
        kappa[i, j] = t.get("bits_per_param", np.nan)
    dl = mean[..., None] * np.exp(noise * gen.standard_normal(shape))
    if np.nanmax(dl) >= loss_before:
        raise LawfitError(
            f"the planted ΔL reaches {np.nanmax(dl):.3g} >= loss_before "
            f"{loss_before}; lower C or raise loss_before."
        )
    ok = np.isfinite(dl)
    dims = ("modules", "rank", "length", "seed")
    ds = xr.Dataset(
        {
            "loss_before": (dims, np.where(ok, loss_before, np.nan)),
            "loss_after": (dims, loss_before - dl),
            "loss_reduction": (dims, dl),
            "status": (dims, np.where(ok, "ok", "not_run").astype("<U8")),
            "dtype": (dims, np.where(ok, dtype, "").astype("<U12")),
            "n_params": (("modules", "rank"), npar),
        },
        coords={
            "modules": modules,
            "rank": np.asarray(ranks, np.int64),
            "length": lengths,
            "seed": np.arange(int(seeds), dtype=np.int64),
        },
        attrs={
            "synthetic": "true",
            "truth": json.dumps(
                {k: {q: v for q, v in t.items() if q != "sizes"} for k, t in carriers.items()}
            ),
        },
    )
    if tokens:
        ds = _with_tokens(ds, kappa, bits_noise, entropy_bits, gen)
    return ds


def _with_tokens(ds, kappa, bits_noise, h, gen) -> xr.Dataset:
    """Per-token data such that a cell stores κ·N·ℓ/ℓ_max bits of information."""
    lengths = ds["length"].values.astype(float)
    n_tok = int(lengths.max())
    npar = ds["n_params"].values.astype(float)
    total = (kappa * npar)[:, :, None] * lengths / lengths.max()  # (modules, rank, length)
    if np.nanmax(total / lengths) > h:
        raise LawfitError(
            f"the planted bits exceed the content ({h} bits/token); lower "
            "bits_per_param or the sizes."
        )
    shape = ds["loss_reduction"].shape
    total = total[..., None] * np.exp(bits_noise * gen.standard_normal(shape) - bits_noise**2 / 2)
    per_token = np.minimum(total / lengths[None, None, :, None], h)
    tok = np.arange(n_tok)
    valid = tok[None, :] < lengths[:, None]  # (length, token)
    p_after = np.where(valid[None, None, :, None, :], 2.0 ** (per_token[..., None] - h), np.nan)
    ok = (ds["status"].values == "ok")[..., None]
    p_after = np.where(ok, p_after, np.nan)
    p_before = np.where(np.isfinite(p_after), 2.0 ** (-h - 1.0), np.nan)
    tdims = ("modules", "rank", "length", "seed", "token")
    return ds.assign(
        p_after=(tdims, p_after),
        p_before=(tdims, p_before),
        greedy_correct=(tdims, np.where(np.isfinite(p_after), (p_after > 0.5) * 1.0, np.nan)),
        entropy_bits=(tdims, np.where(np.isfinite(p_after), h, np.nan)),
        entry=(("length", "token"), np.where(valid, 0, -1).astype(np.int64)),
    ).assign_coords(token=tok)
