"""Two simulated models with a known relation, for :func:`lawfit.transfer_law`'s checks.

The source model's sweep and a second model's share the exponents and the offset of
:data:`TRANSFER_TRUTH`; the second has its own scale (and, to break the assumption the
transfer rests on, optionally a larger α). The calibration study
(``benchmarks/transfer_calibration.py``) and the tests draw both from here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from lawfit.testing.cells import synthetic_dataset

#: The exponents and offset both simulated models share.
TRANSFER_TRUTH = {"alpha": 0.8, "beta": 0.7, "b": 1.2}


def transfer_sweep(
    C: float,
    seed: int,
    *,
    noise: float = 0.04,
    sequences: int = 4,
    ranks=(1, 2, 4, 8),
    lengths=(64, 128, 256, 512, 1024),
    extra_alpha: float = 0.0,
) -> pd.DataFrame:
    """One simulated model's sweep as a tidy frame, its target sequences as ``data_seed``.

    ``noise_kind="run"``: each sequence shifts log C and tilts both exponents, as target
    content does; loss_before is far above ΔL, so no cell counts as memorized.

    Parameters
    ----------
    C : float
        The model's scale.
    seed : int
        Random seed of the draw.
    noise : float
        Multiplicative noise of a cell (and of a sequence's shift).
    sequences : int
        Number of target sequences (``data_seed`` 0, 1, ...).
    ranks, lengths : sequence of int
        The grid.
    extra_alpha : float
        Added to α (the law's ΔL − b is multiplied by rank**extra_alpha): a model whose
        exponent differs from the source's.

    Returns
    -------
    pandas.DataFrame
        Columns rank, length, data_seed, loss_reduction, loss_after.
    """
    ds = synthetic_dataset(
        C=C,
        **TRANSFER_TRUTH,
        ranks=tuple(ranks),
        lengths=tuple(lengths),
        seeds=sequences,
        noise=noise,
        noise_kind="run",
        loss_before=100.0,
        rng=seed,
    ).rename({"seed": "data_seed"})
    frame = ds[["loss_reduction", "loss_after"]].to_dataframe().reset_index()
    frame = frame[["rank", "length", "data_seed", "loss_reduction", "loss_after"]]
    if extra_alpha:
        b = TRANSFER_TRUTH["b"]
        frame["loss_reduction"] = (frame["loss_reduction"] - b) * frame["rank"] ** extra_alpha + b
    return frame


def transfer_replicate(
    rep: int,
    free=("C",),
    anchor_points=((1, 128),),
    in_cluster=0,
    extra_alpha: float = 0.0,
    *,
    noise: float = 0.04,
    at=(4, 256),
) -> tuple[bool, float]:
    """Carry one simulated law to a second model and check its interval on a new cell.

    Fits the law on a source sweep (scale 200, four sequences), carries it to a second
    model (scale 300, two sequences) from ``anchor_points`` on its sequence 0 and predicts
    its cell at ``at`` = (rank, length), on sequence 0 (``in_cluster=0``) or on sequence 1
    (``in_cluster=None``: a sequence the anchors do not share).

    Parameters
    ----------
    rep : int
        Replicate number (seeds both draws).
    free : tuple of str
        The parameters refitted on the anchors.
    anchor_points : sequence of (rank, length)
        The second model's anchor cells (on its sequence 0).
    in_cluster : 0 or None
        The new cell's sequence, as :meth:`lawfit.TransferredLaw.predict` takes it.
    extra_alpha : float
        How much larger the second model's α is (0: the assumption holds).
    noise : float
        Noise of both sweeps.
    at : (int, int)
        The predicted cell's rank and length.

    Returns
    -------
    (bool, float)
        Whether the 95 % interval covers the measured cell, and the interval's log width.
    """
    from lawfit.fitting import fit
    from lawfit.transfer import transfer_law

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = fit(transfer_sweep(200.0, rep, noise=noise), profile=False)
    new = transfer_sweep(300.0, 10_000 + rep, noise=noise, sequences=2, extra_alpha=extra_alpha)
    cells = pd.MultiIndex.from_frame(new[["rank", "length"]])
    anchors = new[cells.isin(list(anchor_points)) & (new["data_seed"] == 0)]
    rank, length = at
    row = transfer_law(source, anchors, free=tuple(free))
    row = row.predict(rank=rank, length=length, in_cluster=in_cluster).iloc[0]
    sequence = 0 if in_cluster == 0 else 1
    pick = (new["rank"] == rank) & (new["length"] == length) & (new["data_seed"] == sequence)
    (measured,) = new.loc[pick, "loss_reduction"]
    return bool(row["low"] <= measured <= row["high"]), float(np.log(row["high"] / row["low"]))
