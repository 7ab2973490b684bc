"""What an adapter holds: per-token loss, probability and argmax, and greedy recall.

:func:`token_stats` is read at every training step; :func:`greedy_decode` and
:func:`measure_after_training` measure the trained adapter into its :class:`CellResult`.
"""

from __future__ import annotations

import warnings

import numpy as np

from collect.probe.batch import Batch
from collect.probe.forward import Forward
from collect.probe.result import CellResult


def token_stats(logits, labels, argmax: bool | str = True):
    """Per-token loss (nats), probability of the correct token and argmax correctness.

    ``argmax`` says what of the argmax over the vocabulary a training step needs
    (:attr:`collect.probe.loop.CellLoop.argmax_wanted`): ``True``, each token's hit (a bool per
    token); ``"all"``, only whether every token is a hit (one bool, :func:`every_argmax_hit`:
    several times cheaper, and exact); ``False``, nothing (None in its place).
    """
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    lp = logp.gather(1, labels[:, None])[:, 0]
    if argmax == "all":
        hits = every_argmax_hit(logits, labels)
    else:
        hits = (logits.argmax(-1) == labels) if argmax else None
    return -lp, lp.exp(), hits


def every_argmax_hit(logits, labels):
    """Whether ``logits.argmax(-1) == labels`` at every row, as a 0-d bool tensor.

    The same answer as the argmax, ties included (the argmax takes the first of equal
    maxima), at a fraction of its cost on a CPU: a row whose label's logit is below the
    row's maximum is a miss, which ``amax`` and a gather find; only when every label's logit
    equals its row's maximum does the argmax itself run, to apply the tie rule.
    """
    at_max = logits.gather(1, labels[:, None]) == logits.amax(-1, keepdim=True)
    every = at_max.all()
    if not bool(every):
        return every
    return (logits.argmax(-1) == labels).all()


def greedy_decode(model, tokenizer, batch: Batch, device) -> np.ndarray:
    """Free-running greedy decoding from each key; returns per-target-token correctness.

    EOS is suppressed until the target's length is reached (``min_new_tokens``): a model that
    would stop early has already made an error at that position, which is what is recorded.
    """
    import torch

    out = np.zeros(len(batch.token_entry), dtype=bool)
    width = max(len(p) for p in batch.prompts)
    n_new = max(len(t) for t in batch.targets)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(batch.prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(batch.prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = (
            model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                temperature=None,
                top_p=None,
                top_k=None,
            )[:, width:]
            .cpu()
            .numpy()
        )
    start = 0
    for row, t in enumerate(batch.targets):
        out[start : start + len(t)] = gen[row, : len(t)] == np.asarray(t)
        start += len(t)
    return out


def measure_after_training(result: CellResult, fwd: Forward, model, tokenizer, batch, device):
    """Record what a trained adapter holds: loss, probabilities, greedy recall, exact match.

    Teacher-forced measurements come from ``fwd`` (the same lean forward training used,
    with the adapter's dropout off); greedy decoding runs the whole model from each key.
    """
    import torch

    with torch.no_grad():
        loss1, p1, correct1 = token_stats(fwd.logits(), batch.labels)
    result.loss_after = float(loss1.mean())
    result.p_after = p1.cpu().double().numpy()
    result.token_accuracy = float(correct1.float().mean())
    greedy = greedy_decode(model, tokenizer, batch, device)
    result.greedy_correct = greedy
    per_entry = [greedy[batch.token_entry == e].all() for e in range(len(batch.targets))]
    result.exact_match = float(np.mean(per_entry))
