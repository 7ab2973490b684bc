"""Synthetic sweeps that follow any registered form (for model-selection studies).

:func:`synthetic_form_dataset` simulates a contract-shaped cell dataset whose
``loss_reduction`` follows a chosen form (including forms with a ``loss_before``
input, and ``n_params`` laws pooled over several ``modules``), with multiplicative
log-normal noise. ``TRUTHS`` holds the parameter values used by
benchmarks/model_selection_confusion.py and the tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

import lawfit.forms_extra  # noqa: F401  (registers the alternative forms)
from lawfit.errors import LawfitError
from lawfit.forms import get_form

__all__ = ["TRUTHS", "synthetic_form_dataset", "synthetic_memft_dataset"]

LN2 = float(np.log(2.0))

#: Plausible true parameters for each built-in candidate (ΔL within ~0.05-3 nats on
#: ranks 1-128 and lengths 64-4096, loss_before 4 nats).
TRUTHS: dict[str, dict[str, float]] = {
    "power_law": {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.1},
    "power_law_no_offset": {"C": 1.0, "alpha": 0.6, "beta": 0.5},
    "ratio": {"C": 1.0, "alpha": 0.55, "b": 0.1},
    "ratio_no_offset": {"C": 2.0, "gamma": 0.55},
    "saturating": {"c": -0.5, "alpha": 0.6, "beta": 0.5, "b": 0.05},
    "additive": {"E": 0.0, "A": 0.3, "a": 0.4, "B": 2.0, "bl": 0.5},
    "power_law_nparams": {"C": 0.02, "alpha": 0.6, "beta": 0.5, "b": 0.1},
    "broken_power_law": {
        "C": 1.0,
        "alpha1": 0.9,
        "alpha2": 0.3,
        "log_rb": 2.08,
        "beta": 0.5,
        "b": 0.05,
    },
}


def synthetic_form_dataset(
    form: str,
    params: Mapping[str, float] | None = None,
    *,
    ranks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    lengths: Sequence[int] = (64, 128, 256, 512, 1024, 2048, 4096),
    seeds: int = 2,
    noise: float = 0.05,
    loss_before: float = 4.0,
    modules: Mapping[str, int] | None = None,
    rng: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Simulate a sweep whose ΔL follows ``form``.

    Parameters
    ----------
    form : str
        Registered form with inputs among ``rank``, ``n_params``, ``length``,
        ``loss_before``.
    params : mapping, optional
        True parameters (default ``TRUTHS[form]``).
    ranks, lengths : sequence of int
        Grid.
    seeds : int
        Replicates.
    noise : float
        sd of log ΔL (multiplicative noise).
    loss_before : float
        Mean base-model loss (nats/token); each cell jitters it by 2 % (log scale).
    modules : mapping, optional
        ``modules`` value → trainable parameters per rank; default
        ``{"mlp@20": 2304}`` for rank forms and ``{"mlp@20": 2304, "attn+mlp@20": 6912}``
        for ``power_law_nparams`` (so that N is not proportional to r).
    rng : int, Generator or None
        Seed.

    Returns
    -------
    xarray.Dataset
        Dims ``modules, rank, length, seed``; variables ``loss_before, loss_after,
        loss_reduction, status, n_params`` (dims ``modules, rank``); attrs ``form`` and
        ``truth`` (JSON).
    """
    f = get_form(form)
    truth = dict(TRUTHS.get(f.name, {}) if params is None else params)
    missing = [p for p in f.params if p not in truth]
    if missing:
        raise LawfitError(
            f"params lacks {missing} for form {f.name!r} (parameters {f.params}); pass them, "
            "e.g. params={...}."
        )
    gen = np.random.default_rng(rng)
    if modules is None:
        modules = (
            {"mlp@20": 2304, "attn+mlp@20": 6912} if "n_params" in f.inputs else {"mlp@20": 2304}
        )
    mods = list(modules)
    r = np.asarray(ranks, float)
    ll = np.asarray(lengths, float)
    shape = (len(mods), r.size, ll.size, int(seeds))
    R = np.broadcast_to(r[None, :, None, None], shape)
    L = np.broadcast_to(ll[None, None, :, None], shape)
    N = R * np.array([modules[m] for m in mods], float)[:, None, None, None]
    L0 = loss_before * np.exp(0.02 * gen.standard_normal(shape))
    grid = {"rank": R, "length": L, "n_params": N, "loss_before": L0}
    try:
        args = [grid[i].ravel() for i in f.inputs]
    except KeyError as exc:
        raise LawfitError(
            f"synthetic_form_dataset simulates inputs rank, n_params, length, loss_before; form "
            f"{f.name!r} has inputs {f.inputs}."
        ) from exc
    mean = np.asarray(f.func(*args, **truth), float).reshape(shape)
    dl = mean * np.exp(noise * gen.standard_normal(shape))
    dims = ("modules", "rank", "length", "seed")
    if "loss_before" not in f.inputs:  # raise the base loss where ΔL exceeds it (after >= 0)
        L0 = np.maximum(L0, dl + 0.01)
    ds = xr.Dataset(
        {
            "loss_before": (dims, L0),
            "loss_after": (dims, L0 - dl),
            "loss_reduction": (dims, dl),
            "status": (dims, np.full(shape, "ok")),
            "n_params": (("modules", "rank"), N[:, :, 0, 0].astype(np.int64)),
        },
        coords={
            "modules": mods,
            "rank": np.asarray(ranks, np.int64),
            "length": np.asarray(lengths, np.int64),
            "seed": np.arange(int(seeds)),
        },
        attrs={
            "schema_version": "1",
            "synthetic": "true",
            "form": f.name,
            "truth": json.dumps(truth),
            "noise": float(noise),
        },
    )
    return ds


def synthetic_memft_dataset(
    *,
    C_sft: float = 1.0,
    C_memft: float = 1.6,
    memft_ranks: Sequence[int] = (1, 2, 4, 8, 16),
    memft_min_length: int = 256,
    ranks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    lengths: Sequence[int] = (64, 128, 256, 512, 1024, 2048),
    seeds: int = 2,
    noise: float = 0.05,
    rng: int | None = 0,
) -> xr.Dataset:
    """Simulate SFT and MemFT-OT sweeps that follow power laws differing in C.

    MemFT cells exist only for ``memft_ranks`` and lengths ``>= memft_min_length``
    (``status="not_run"`` and NaN elsewhere, as the contract says). With the same
    exponents the true rank saving at any length is ``1 − (C_sft/C_memft)^(1/alpha)``
    (alpha = 0.6) when ``b`` is negligible.

    Parameters
    ----------
    C_sft, C_memft : float
        Prefactors of the two laws (alpha 0.6, beta 0.5, b 0.02).
    memft_ranks, memft_min_length
        The subset of the grid on which MemFT was "collected".
    ranks, lengths, seeds, noise, rng
        As in :func:`lawfit.testing.synthetic_dataset`.

    Returns
    -------
    xarray.Dataset
        Dims ``objective, rank, length, seed`` with ``objective = ["sft", "memft_ot"]``.
    """
    from lawfit.testing.cells import synthetic_dataset

    kw = dict(ranks=ranks, lengths=lengths, seeds=seeds, noise=noise)
    a = synthetic_dataset(C=C_sft, rng=rng, **kw)
    b = synthetic_dataset(C=C_memft, rng=None if rng is None else rng + 1, **kw)
    ds = xr.concat([a.drop_vars("n_params"), b.drop_vars("n_params")], dim="objective")
    ds = ds.assign_coords(objective=["sft", "memft_ot"])
    on = ds["rank"].isin(list(memft_ranks)) & (ds["length"] >= memft_min_length)
    keep = (ds["objective"] == "sft") | on
    for v in ("loss_before", "loss_after", "loss_reduction", "exact_match", "token_accuracy"):
        ds[v] = ds[v].where(keep)
    ds["status"] = xr.where(keep, ds["status"], "not_run")
    ds["n_params"] = a["n_params"]
    ds.attrs["truth_memft"] = json.dumps(
        {"C_sft": C_sft, "C_memft": C_memft, "alpha": 0.6, "beta": 0.5, "b": 0.02}
    )
    return ds
