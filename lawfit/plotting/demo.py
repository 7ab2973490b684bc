"""Synthetic data that exercises every figure (for tests, docs and ``--synthetic``)."""

from __future__ import annotations

__all__ = ["synthetic_figure_data"]


def synthetic_figure_data(*, small: bool = False, rng: int = 0) -> dict:
    """Build the two synthetic datasets that together feed every lawfit figure.

    Parameters
    ----------
    small : bool
        Smaller grids (fast tests).
    rng : int
        Seed.

    Returns
    -------
    dict
        ``"cells"``: a cell-level sweep following the law (C = 2, α = 0.6, β = 0.5,
        b = 0.02, loss_before ≈ 2.5 nats so that short targets get memorized at large
        ranks; :func:`lawfit.testing.synthetic_dataset`). ``"tokens"``: a token-level
        PhoneBook-like dataset (entries of 8 tokens) with SFT, MemFT-OT and MemFT-SW, a
        planted threshold at p* = 0.4 and training trajectories
        (:func:`lawfit.testing.synthetic_token_dataset`).
        Both carry ``attrs["synthetic"] = "true"``.
    """
    from lawfit.testing import synthetic_dataset, synthetic_token_dataset

    if small:
        cells = synthetic_dataset(
            C=2.0,
            loss_before=2.5,
            ranks=(1, 4, 16, 64, 256),
            lengths=(64, 256, 1024),
            seeds=2,
            noise=0.05,
            rng=rng,
        )
        tokens = synthetic_token_dataset(
            ranks=(1, 4, 16, 64),
            lengths=(64, 128),
            seeds=(0, 1),
            methods=("sft", "memft_ot", "memft_sw"),
            n_steps=12,
            entry_tokens=8,
            p_star=0.4,
            rng=rng,
        )
    else:
        cells = synthetic_dataset(
            C=2.0,
            loss_before=2.5,
            ranks=(1, 2, 4, 8, 16, 32, 64, 128),
            lengths=(64, 128, 256, 512, 1024, 2048),
            seeds=3,
            noise=0.05,
            rng=rng,
        )
        tokens = synthetic_token_dataset(
            ranks=(1, 2, 4, 8, 16, 32, 64),
            lengths=(64, 128, 256),
            seeds=(0, 1, 2),
            methods=("sft", "memft_ot", "memft_sw"),
            n_steps=30,
            entry_tokens=8,
            p_star=0.4,
            rng=rng,
        )
    return {"cells": cells, "tokens": tokens}
