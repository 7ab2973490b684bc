"""Synthetic token-level datasets with a planted recall threshold.

The generator produces datasets in the shape of the data contract (DESIGN.md §3,
docs/CONVENTIONS.md) with per-token probabilities, free-running greedy correctness
and optional training trajectories, so that :func:`lawfit.phase_transition` and
:func:`lawfit.memft_savings` can be tested against a known truth.

The planted mechanism
---------------------
For every run (cell) the log-odds of the correct token after training are

    logit p_after[t] = logit p_before[t] + shift(cell) * exp(d[t]) + noise

with ``logit p_before ~ N(before_mean, before_sd)``, a per-token log gain factor
``d ~ N(0, difficulty_sd)`` and ``shift = scale * softplus(gain * (log r - beta log l
- x0) + method_boost[method])``, so that more capacity moves every token up.

Greedy decoding walks each entry left to right: while the prefix of the entry is intact,
token ``t`` is reproduced with probability

    P(recall | prefix intact) = sigmoid(slope * (logit p_after[t] - logit p_star))

raised to 1 when ``p_after[t] > 0.5`` and ``sufficient=True`` (p > 0.5 makes the
correct token the argmax, so greedy decoding must pick it). After the first error
the decoder has left the teacher-forced path and later tokens of the entry are
correct only by chance (probability ``recover``): the cascade.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from lawfit.errors import LawfitError

__all__ = ["synthetic_token_dataset"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def synthetic_token_dataset(
    *,
    ranks: Sequence[int] = (1, 2, 4, 8, 16, 32),
    lengths: Sequence[int] = (64, 128, 256),
    seeds: Sequence[int] = (0, 1),
    methods: Sequence[str] = ("sft",),
    task: str = "long_context",
    entry_tokens: int | None = None,
    p_star: float = 0.5,
    slope: float = 4.0,
    sufficient: bool = True,
    recover: float = 0.02,
    before_mean: float = -3.0,
    before_sd: float = 2.0,
    difficulty_sd: float = 0.8,
    gain: float = 2.5,
    scale: float = 2.0,
    beta: float = 0.5,
    x0: float = -1.0,
    method_boost: Mapping[str, float] | None = None,
    n_steps: int = 0,
    rng: int | np.random.Generator | None = 0,
) -> xr.Dataset:
    """Generate a token-level dataset with a planted greedy-recall threshold.

    Parameters
    ----------
    ranks, lengths, seeds, methods : sequence
        Grid of LoRA ranks, target lengths (tokens), replicates and methods
        (``"sft"``, ``"memft_ot"``, ``"memft_sw"``).
    task : str
        Value of the size-1 ``task`` dimension.
    entry_tokens : int or None
        Tokens per entry (PhoneBook-like; every length must be a multiple). ``None``
        makes the whole target one entry (long-context).
    p_star : float
        Planted threshold: probability ``p_after`` at which a token with an intact
        prefix is recalled half the time. Must lie in (0, 1).
    slope : float
        Steepness of the recall logistic in ``logit(p_after)``.
    sufficient : bool
        If true, a token with ``p_after > 0.5`` and an intact prefix is always
        recalled (the physical truth). With ``p_star < 0.5`` and a steep slope this
        barely changes the logistic; set false for an exactly logistic truth.
    recover : float
        Probability that a token after the first error of its entry is reproduced.
    before_mean, before_sd : float
        Distribution of ``logit(p_before)``.
    difficulty_sd : float
        Spread of the per-token log gain factor (how unequal tokens are).
    gain, scale, beta, x0 : float
        Capacity effect on the logit shift:
        ``scale * softplus(gain * (log r - beta log l - x0))``.
    method_boost : mapping, optional
        Extra logit shift per method; default ``{"memft_ot": 1.5, "memft_sw": 1.5}``.
    n_steps : int
        If positive, add ``loss_curve`` and ``frac_above_curve`` over a ``step``
        dimension with that many checkpoints (tokens move from ``p_before`` to
        ``p_after`` along an exponential schedule).
    rng : int, Generator or None
        Seed or generator.

    Returns
    -------
    xarray.Dataset
        Dims ``task, objective, rank, length, seed, token`` (and ``step``) with cell
        variables ``loss_before, loss_after, loss_reduction, exact_match,
        token_accuracy, status, n_params`` and token variables ``p_before, p_after,
        greedy_correct`` and ``entry``. ``attrs["planted"]`` holds the truth (JSON).

    Raises
    ------
    LawfitError
        If ``p_star`` is outside (0, 1), a length is not a multiple of
        ``entry_tokens``, or a grid is empty.
    """
    if not 0.0 < float(p_star) < 1.0:
        raise LawfitError(
            f"p_star must be a probability strictly between 0 and 1; got {p_star!r}. "
            "Pass e.g. p_star=0.5."
        )
    if min(len(ranks), len(lengths), len(seeds), len(methods)) == 0:
        raise LawfitError(
            "ranks, lengths, seeds and methods must each hold at least one value; got "
            f"{len(ranks)}, {len(lengths)}, {len(seeds)}, {len(methods)} values."
        )
    if entry_tokens is not None:
        bad = [n for n in lengths if n % entry_tokens]
        if bad:
            raise LawfitError(
                f"every length must be a multiple of entry_tokens={entry_tokens}; got "
                f"lengths {bad}. Choose lengths that are multiples, or entry_tokens=None."
            )
    gen = np.random.default_rng(rng)
    boost = {"memft_ot": 1.5, "memft_sw": 1.5} if method_boost is None else dict(method_boost)
    ranks_a = np.asarray(ranks, dtype=np.int64)
    lengths_a = np.asarray(lengths, dtype=np.int64)
    seeds_a = np.asarray(seeds, dtype=np.int64)
    n_tok = int(lengths_a.max())
    shape = (len(methods), len(ranks_a), len(lengths_a), len(seeds_a), n_tok)
    logit_star = np.log(p_star / (1.0 - p_star))

    # entry index per (length, token), -1 on padding
    pos = np.arange(n_tok)
    valid_lt = pos[None, :] < lengths_a[:, None]
    per = n_tok if entry_tokens is None else int(entry_tokens)
    entry = np.where(valid_lt, pos[None, :] // per, -1)

    # targets are fixed per length (data seed): p_before and difficulty share across
    # rank/seed/method, as they would for one target text scored by one base model
    lb = gen.normal(before_mean, before_sd, size=(len(lengths_a), n_tok))
    diff = gen.normal(0.0, difficulty_sd, size=(len(lengths_a), n_tok))  # log gain factor
    cap = np.log(ranks_a)[:, None] - beta * np.log(lengths_a)[None, :] - x0  # (rank, length)
    mboost = np.array([boost.get(m, 0.0) for m in methods])
    seed_jit = gen.normal(0.0, 0.2, size=shape[:4])  # replicate-to-replicate variation
    z = gain * cap[None, :, :, None] + mboost[:, None, None, None] + seed_jit
    shift = scale * np.logaddexp(0.0, z)  # softplus: a gain that is never negative
    tok_noise = gen.normal(0.0, 0.3, size=shape)
    la = (
        lb[None, None, :, None, :]
        + shift[..., None] * np.exp(diff)[None, None, :, None, :]
        + tok_noise
    )
    p_before = np.broadcast_to(_sigmoid(lb)[None, None, :, None, :], shape).copy()
    p_after = _sigmoid(la)
    p_after = np.clip(p_after, 1e-12, 1 - 1e-12)
    p_before = np.clip(p_before, 1e-12, 1 - 1e-12)

    # recall given an intact prefix (= argmax under teacher forcing)
    prob = _sigmoid(slope * (la - logit_star))
    if sufficient:
        prob = np.where(p_after > 0.5, 1.0, prob)
    ok_if_prefix = gen.random(shape) < prob
    chance = gen.random(shape) < recover
    # first failure per entry: cumulative product within entries
    valid = np.broadcast_to(valid_lt[None, None, :, None, :], shape)
    greedy = np.zeros(shape, dtype=float)
    n_ent = int(np.ceil(n_tok / per))
    pad_tok = n_ent * per
    okp = np.ones(shape[:4] + (pad_tok,), dtype=bool)
    okp[..., :n_tok] = ok_if_prefix
    okp = okp.reshape(shape[:4] + (n_ent, per))
    prefix_intact = np.cumprod(okp, axis=-1).astype(bool)  # token ok and all earlier ok
    intact_before = np.concatenate(
        [np.ones(prefix_intact.shape[:-1] + (1,), dtype=bool), prefix_intact[..., :-1]], axis=-1
    ).reshape(shape[:4] + (pad_tok,))[..., :n_tok]
    greedy = np.where(intact_before, ok_if_prefix, chance).astype(float)
    greedy = np.where(valid, greedy, np.nan)
    p_after = np.where(valid, p_after, np.nan)
    p_before = np.where(valid, p_before, np.nan)

    with np.errstate(invalid="ignore"):
        loss_before = np.nanmean(-np.log(p_before), axis=-1)
        loss_after = np.nanmean(-np.log(p_after), axis=-1)
        tok_acc = np.nansum(np.where(valid, ok_if_prefix, 0), axis=-1) / lengths_a[
            None, None, :, None
        ]
    # exact match: share of entries with every token reproduced
    g = np.where(valid, greedy, 1.0)
    gpad = np.ones(shape[:4] + (pad_tok,))
    gpad[..., :n_tok] = g
    ent_ok = gpad.reshape(shape[:4] + (n_ent, per)).min(axis=-1)
    n_entries = -(-lengths_a // per)  # ceil: one entry for a long-context target
    ent_valid = np.arange(n_ent)[None, :] < n_entries[:, None]  # (length, n_ent)
    exact = (ent_ok * ent_valid[None, None, :, None, :]).sum(-1) / n_entries[None, None, :, None]

    dims_cell = ("objective", "rank", "length", "seed")
    dims_tok = dims_cell + ("token",)
    ds = xr.Dataset(
        {
            "loss_before": (dims_cell, loss_before),
            "loss_after": (dims_cell, loss_after),
            "loss_reduction": (dims_cell, loss_before - loss_after),
            "exact_match": (dims_cell, exact),
            "token_accuracy": (dims_cell, tok_acc),
            "status": (dims_cell, np.full(shape[:4], "ok", dtype=object)),
            "p_before": (dims_tok, p_before),
            "p_after": (dims_tok, p_after),
            "greedy_correct": (dims_tok, greedy),
            "entry": (("length", "token"), entry),
            "n_params": (("rank",), ranks_a * 2 * 576 * 2),
        },
        coords={
            "objective": list(methods),
            "rank": ranks_a,
            "length": lengths_a,
            "seed": seeds_a,
            "token": pos,
        },
    )
    if n_steps > 0:
        steps = np.unique(np.round(np.geomspace(1, 200, n_steps)).astype(int))
        tau = 40.0
        frac = (1 - np.exp(-steps / tau)) / (1 - np.exp(-steps[-1] / tau))
        lb_full = np.where(valid, np.log(p_before / (1 - p_before)), np.nan)
        la_full = np.where(valid, np.log(p_after / (1 - p_after)), np.nan)
        curves, above = [], []
        for f in frac:
            lt = lb_full + f * (la_full - lb_full)
            pt = _sigmoid(lt)
            curves.append(np.nanmean(-np.log(pt), axis=-1))
            above.append(np.nansum(pt > 0.5, axis=-1) / lengths_a[None, None, :, None])
        ds["loss_curve"] = (dims_cell + ("step",), np.stack(curves, axis=-1))
        ds["frac_above_curve"] = (dims_cell + ("step",), np.stack(above, axis=-1))
        ds = ds.assign_coords(step=steps)
    ds = ds.expand_dims(task=[task])
    ds = ds.transpose("task", "objective", "rank", "length", "seed", ...)
    ds.attrs.update(
        schema_version="1",
        synthetic="true",
        config=json.dumps({"generator": "lawfit.testing.tokens.synthetic_token_dataset"}),
        planted=json.dumps(
            {
                "p_star": float(p_star),
                "slope": float(slope),
                "sufficient": bool(sufficient),
                "recover": float(recover),
                "gain": float(gain),
                "scale": float(scale),
                "beta": float(beta),
                "x0": float(x0),
            }
        ),
    )
    return ds
