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

_CELL_DIMS = ("objective", "rank", "length", "seed")
_TOKEN_DIMS = _CELL_DIMS + ("token",)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _check_arguments(
    p_star: float,
    ranks: Sequence[int],
    lengths: Sequence[int],
    seeds: Sequence[int],
    methods: Sequence[str],
    entry_tokens: int | None,
) -> None:
    """Reject a threshold outside (0, 1), an empty grid or lengths that split entries.

    Parameters
    ----------
    p_star : float
        Planted recall threshold.
    ranks, lengths, seeds, methods : sequence
        The grid of the dataset.
    entry_tokens : int or None
        Tokens per entry, or ``None`` for one entry per target.

    Raises
    ------
    LawfitError
        On any of the three problems, saying what to pass instead.
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


def _draw_logits(
    gen: np.random.Generator,
    shape: tuple[int, ...],
    ranks: np.ndarray,
    lengths: np.ndarray,
    mboost: np.ndarray,
    *,
    before_mean: float,
    before_sd: float,
    difficulty_sd: float,
    gain: float,
    scale: float,
    beta: float,
    x0: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the token log-odds before training and after training.

    Parameters
    ----------
    gen : numpy.random.Generator
        Source of the draws (four normal draws, in a fixed order).
    shape : tuple of int
        ``(method, rank, length, seed, token)``.
    ranks, lengths : numpy.ndarray
        Grid coordinates.
    mboost : numpy.ndarray
        Extra logit shift per method.
    before_mean, before_sd, difficulty_sd, gain, scale, beta, x0 : float
        See :func:`synthetic_token_dataset`.

    Returns
    -------
    logit_before : numpy.ndarray
        Shape ``(length, token)``: targets are fixed per length (one target text
        scored by one base model), shared across rank, seed and method.
    logit_after : numpy.ndarray
        Shape ``shape``.
    """
    n_tok = shape[-1]
    lb = gen.normal(before_mean, before_sd, size=(len(lengths), n_tok))
    diff = gen.normal(0.0, difficulty_sd, size=(len(lengths), n_tok))  # log gain factor
    cap = np.log(ranks)[:, None] - beta * np.log(lengths)[None, :] - x0  # (rank, length)
    seed_jit = gen.normal(0.0, 0.2, size=shape[:4])  # replicate-to-replicate variation
    z = gain * cap[None, :, :, None] + mboost[:, None, None, None] + seed_jit
    shift = scale * np.logaddexp(0.0, z)  # softplus: a gain that is never negative
    tok_noise = gen.normal(0.0, 0.3, size=shape)
    la = (
        lb[None, None, :, None, :]
        + shift[..., None] * np.exp(diff)[None, None, :, None, :]
        + tok_noise
    )
    return lb, la


def _by_entry(values: np.ndarray, per: int, fill: bool | float) -> np.ndarray:
    """Pad the token axis to whole entries and split it into ``(entry, token in entry)``.

    Parameters
    ----------
    values : numpy.ndarray
        Token values, last axis ``token``.
    per : int
        Tokens per entry.
    fill : bool or float
        Value of the padding tokens.

    Returns
    -------
    numpy.ndarray
        Shape ``values.shape[:-1] + (n_entries, per)``.
    """
    n_tok = values.shape[-1]
    n_ent = int(np.ceil(n_tok / per))
    padded = np.full(values.shape[:-1] + (n_ent * per,), fill, dtype=values.dtype)
    padded[..., :n_tok] = values
    return padded.reshape(values.shape[:-1] + (n_ent, per))


def _greedy_walk(
    gen: np.random.Generator,
    la: np.ndarray,
    p_after: np.ndarray,
    per: int,
    *,
    p_star: float,
    slope: float,
    sufficient: bool,
    recover: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every entry greedily, with the cascade after the first error.

    Parameters
    ----------
    gen : numpy.random.Generator
        Source of the draws (two uniform draws, in a fixed order).
    la, p_after : numpy.ndarray
        Log-odds and probability of the correct token after training.
    per : int
        Tokens per entry.
    p_star, slope, sufficient, recover : float or bool
        See :func:`synthetic_token_dataset`.

    Returns
    -------
    ok_if_prefix : numpy.ndarray of bool
        Whether each token is recalled given an intact prefix (argmax under teacher
        forcing).
    greedy : numpy.ndarray of float
        Free-running greedy correctness (1.0 or 0.0), padding not yet masked.
    """
    logit_star = np.log(p_star / (1.0 - p_star))
    prob = _sigmoid(slope * (la - logit_star))
    if sufficient:
        prob = np.where(p_after > 0.5, 1.0, prob)
    ok_if_prefix = gen.random(la.shape) < prob
    chance = gen.random(la.shape) < recover
    okp = _by_entry(ok_if_prefix, per, True)
    prefix_intact = np.cumprod(okp, axis=-1).astype(bool)  # token ok and all earlier ok
    intact_before = np.concatenate(
        [np.ones(prefix_intact.shape[:-1] + (1,), dtype=bool), prefix_intact[..., :-1]], axis=-1
    ).reshape(la.shape[:-1] + (-1,))[..., : la.shape[-1]]
    greedy = np.where(intact_before, ok_if_prefix, chance).astype(float)
    return ok_if_prefix, greedy


def _exact_match(
    greedy: np.ndarray, valid: np.ndarray, lengths: np.ndarray, per: int
) -> np.ndarray:
    """Share of the entries of each cell with every token reproduced.

    Parameters
    ----------
    greedy : numpy.ndarray
        Greedy correctness per token, NaN on padding.
    valid : numpy.ndarray of bool
        Whether a token lies inside its target.
    lengths : numpy.ndarray
        Target lengths (tokens).
    per : int
        Tokens per entry.

    Returns
    -------
    numpy.ndarray
        Shape ``greedy.shape[:-1]``.
    """
    ent_ok = _by_entry(np.where(valid, greedy, 1.0), per, 1.0).min(axis=-1)
    n_entries = -(-lengths // per)  # ceil: one entry for a long-context target
    ent_valid = np.arange(ent_ok.shape[-1])[None, :] < n_entries[:, None]  # (length, n_ent)
    return (ent_ok * ent_valid[None, None, :, None, :]).sum(-1) / n_entries[None, None, :, None]


def _with_training_curves(
    ds: xr.Dataset, p_before: np.ndarray, p_after: np.ndarray, valid: np.ndarray, n_steps: int
) -> xr.Dataset:
    """Add loss and share of tokens above 0.5 along an exponential training schedule.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with cell dims ``objective, rank, length, seed``.
    p_before, p_after : numpy.ndarray
        Token probabilities before and after training, NaN on padding.
    valid : numpy.ndarray of bool
        Whether a token lies inside its target.
    n_steps : int
        Number of checkpoints asked for (repeated rounded steps are merged).

    Returns
    -------
    xarray.Dataset
        ``ds`` with ``loss_curve`` and ``frac_above_curve`` over a ``step`` dim.
    """
    lengths = ds["length"].values
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
        above.append(np.nansum(pt > 0.5, axis=-1) / lengths[None, None, :, None])
    ds["loss_curve"] = (_CELL_DIMS + ("step",), np.stack(curves, axis=-1))
    ds["frac_above_curve"] = (_CELL_DIMS + ("step",), np.stack(above, axis=-1))
    return ds.assign_coords(step=steps)


def _probabilities(lb: np.ndarray, la: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token probabilities before and after training, kept away from 0 and 1.

    Parameters
    ----------
    lb : numpy.ndarray
        Log-odds before training, shape ``(length, token)``.
    la : numpy.ndarray
        Log-odds after training, shape ``(method, rank, length, seed, token)``.

    Returns
    -------
    p_before, p_after : numpy.ndarray
        Both of the shape of ``la``.
    """
    p_before = np.broadcast_to(_sigmoid(lb)[None, None, :, None, :], la.shape).copy()
    p_after = np.clip(_sigmoid(la), 1e-12, 1 - 1e-12)
    return np.clip(p_before, 1e-12, 1 - 1e-12), p_after


def _cell_variables(
    p_before: np.ndarray,
    p_after: np.ndarray,
    ok_if_prefix: np.ndarray,
    greedy: np.ndarray,
    valid: np.ndarray,
    lengths: np.ndarray,
    per: int,
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Cell variables of the contract: losses, accuracies and status.

    Parameters
    ----------
    p_before, p_after : numpy.ndarray
        Token probabilities, NaN on padding.
    ok_if_prefix : numpy.ndarray of bool
        Token recalled given an intact prefix.
    greedy, valid, lengths, per
        As for :func:`_exact_match`.

    Returns
    -------
    dict
        ``name -> (dims, values)`` over ``objective, rank, length, seed``.
    """
    with np.errstate(invalid="ignore"):
        loss_before = np.nanmean(-np.log(p_before), axis=-1)
        loss_after = np.nanmean(-np.log(p_after), axis=-1)
        tok_acc = (
            np.nansum(np.where(valid, ok_if_prefix, 0), axis=-1) / lengths[None, None, :, None]
        )
    return {
        "loss_before": (_CELL_DIMS, loss_before),
        "loss_after": (_CELL_DIMS, loss_after),
        "loss_reduction": (_CELL_DIMS, loss_before - loss_after),
        "exact_match": (_CELL_DIMS, _exact_match(greedy, valid, lengths, per)),
        "token_accuracy": (_CELL_DIMS, tok_acc),
        "status": (_CELL_DIMS, np.full(loss_before.shape, "ok", dtype=object)),
    }


def _planted_truth(
    p_star: float,
    slope: float,
    sufficient: bool,
    recover: float,
    gain: float,
    scale: float,
    beta: float,
    x0: float,
) -> str:
    """Serialise the planted parameters as the JSON of ``attrs["planted"]``.

    Parameters
    ----------
    p_star, slope, sufficient, recover, gain, scale, beta, x0
        See :func:`synthetic_token_dataset`.

    Returns
    -------
    str
        JSON object.
    """
    return json.dumps(
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
    )


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
    _check_arguments(p_star, ranks, lengths, seeds, methods, entry_tokens)
    gen = np.random.default_rng(rng)
    boost = {"memft_ot": 1.5, "memft_sw": 1.5} if method_boost is None else dict(method_boost)
    ranks_a = np.asarray(ranks, dtype=np.int64)
    lengths_a = np.asarray(lengths, dtype=np.int64)
    seeds_a = np.asarray(seeds, dtype=np.int64)
    n_tok = int(lengths_a.max())
    shape = (len(methods), len(ranks_a), len(lengths_a), len(seeds_a), n_tok)

    # entry index per (length, token), -1 on padding
    pos = np.arange(n_tok)
    valid_lt = pos[None, :] < lengths_a[:, None]
    per = n_tok if entry_tokens is None else int(entry_tokens)
    entry = np.where(valid_lt, pos[None, :] // per, -1)

    lb, la = _draw_logits(
        gen,
        shape,
        ranks_a,
        lengths_a,
        np.array([boost.get(m, 0.0) for m in methods]),
        before_mean=before_mean,
        before_sd=before_sd,
        difficulty_sd=difficulty_sd,
        gain=gain,
        scale=scale,
        beta=beta,
        x0=x0,
    )
    p_before, p_after = _probabilities(lb, la)
    ok_if_prefix, greedy = _greedy_walk(
        gen, la, p_after, per, p_star=p_star, slope=slope, sufficient=sufficient, recover=recover
    )
    valid = np.broadcast_to(valid_lt[None, None, :, None, :], shape)
    greedy, p_after, p_before = (np.where(valid, a, np.nan) for a in (greedy, p_after, p_before))
    ds = xr.Dataset(
        {
            **_cell_variables(p_before, p_after, ok_if_prefix, greedy, valid, lengths_a, per),
            "p_before": (_TOKEN_DIMS, p_before),
            "p_after": (_TOKEN_DIMS, p_after),
            "greedy_correct": (_TOKEN_DIMS, greedy),
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
        ds = _with_training_curves(ds, p_before, p_after, valid, n_steps)
    ds = ds.expand_dims(task=[task])
    ds = ds.transpose("task", "objective", "rank", "length", "seed", ...)
    ds.attrs.update(
        schema_version="1",
        synthetic="true",
        config=json.dumps({"generator": "lawfit.testing.tokens.synthetic_token_dataset"}),
        planted=_planted_truth(p_star, slope, sufficient, recover, gain, scale, beta, x0),
    )
    return ds
