"""Paired MemFT and SFT cells with a known ratio, for :mod:`lawfit.memft.paired`'s checks."""

from __future__ import annotations

import numpy as np
import xarray as xr


def synthetic_paired_memft(
    ratio: float,
    sequences: int,
    rng: np.random.Generator,
    *,
    content: float = 0.05,
    scatter: float = 0.01,
    accuracy_gain: float = 0.1,
) -> xr.Dataset:
    """Simulate SFT and MemFT-OT at rank 1, ℓ = 128 on ``sequences`` targets.

    Each target shifts both methods' ΔL alike (log-normal, sd ``content``), as target
    content does; the MemFT cell scatters around ``ratio`` × its SFT cell (sd ``scatter``
    on the log scale). Token accuracy is ΔL / 30, plus ``accuracy_gain`` for MemFT.

    Parameters
    ----------
    ratio : float
        The true ΔL ratio MemFT / SFT.
    sequences : int
        Number of target sequences (``data_seed``).
    rng : numpy.random.Generator
        Source of the draws.
    content, scatter : float
        The two log-scale standard deviations.
    accuracy_gain : float
        MemFT's token accuracy above what its ΔL gives.

    Returns
    -------
    xarray.Dataset
        ``loss_reduction``, ``loss_after`` (16 − ΔL: none memorized), ``token_accuracy``
        and ``status`` over objective × rank × length × seed × data_seed.
    """
    sft = 9.0 * np.exp(rng.normal(0, content, sequences))
    memft = ratio * sft * np.exp(rng.normal(0, scatter, sequences))
    dl = np.stack([sft, memft])[:, None, None, None, :]
    accuracy = np.clip(dl / 30 + np.array([0.0, accuracy_gain])[:, None, None, None, None], 0, 1)
    coords = {
        "objective": ["sft", "memft_ot"],
        "rank": [1],
        "length": [128],
        "seed": [0],
        "data_seed": list(range(sequences)),
    }
    dims = tuple(coords)
    return xr.Dataset(
        {
            "loss_reduction": (dims, dl),
            "loss_after": (dims, 16.0 - dl),
            "token_accuracy": (dims, accuracy),
            "status": (dims, np.full(dl.shape, "ok")),
        },
        coords=coords,
    )
