"""Pack entries whose prompts share a prefix: the shared tokens are computed once per row.

With a chat template every PhoneBook prompt opens with the same tokens (SmolLM2's default
system prompt is 24 of an entry's ~45), and each training step runs them through the adapted
layers again for every entry. Packing puts several entries in one row behind a single copy of
the shared prefix::

    row:  [shared prefix][prompt₁ tail + target₁][prompt₂ tail + target₂] …

A 4-D attention mask lets each entry's tokens see the shared prefix and their own segment
only (causally), and each segment's position ids continue from the end of the prefix, so every
token sees exactly the keys, values and positions it has in its own unpacked sequence: the
logits are those of the plain batch up to floating-point rounding. The caller checks this
against the model itself before training (:func:`collect.probe.check_fast_path`) and falls back
to the plain batch where an architecture or attention kernel does not honour the mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

#: Entries per row are chosen so that the shared prefix adds at most 1/PREFIX_SHARE_DIVISOR of
#: a segment's length per entry: the prefix's share of the work stays small while rows (and the
#: dense per-row attention mask) stay short.
PREFIX_SHARE_DIVISOR = 8
#: Pack only when it removes at least this share of the batch's token positions.
MIN_SAVING = 0.2


def shared_prompt_length(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the prefix all prompts share, leaving every prompt at least one own token.

    The last prompt token predicts the first target token, so it has to stay in the entry's
    own segment.
    """
    if len(prompts) < 2:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def entries_per_row(shared: int, segment_lengths: Sequence[int]) -> int:
    """How many entries go in one packed row (see :data:`PREFIX_SHARE_DIVISOR`)."""
    mean_segment = float(np.mean(segment_lengths))
    per_row = math.ceil(PREFIX_SHARE_DIVISOR * shared / max(mean_segment, 1.0))
    return int(min(len(segment_lengths), max(1, per_row)))


def pack_batch(batch: Any, dtype: Any) -> Any | None:
    """Return ``batch`` packed around its shared prompt prefix, or None if that saves little.

    Parameters
    ----------
    batch : collect.probe.Batch
        The plain batch (one right-padded row per entry).
    dtype : torch.dtype
        The model's floating dtype; the additive attention mask is built in it.

    Returns
    -------
    collect.probe.Batch or None
        A batch with the same ``labels``, ``token_entry``, ``prompts`` and ``targets`` (target
        tokens in the same order), whose ``input_ids``, ``attention_mask`` (additive, shape
        ``(rows, 1, width, width)``), ``position_ids`` and ``pred_index`` describe the packed
        rows; None when the prompts share fewer than one token or packing would remove less
        than :data:`MIN_SAVING` of the token positions.
    """
    import torch

    shared = shared_prompt_length(batch.prompts)
    if shared == 0:
        return None
    segments = [
        list(p[shared:]) + list(t) for p, t in zip(batch.prompts, batch.targets, strict=True)
    ]
    per_row = entries_per_row(shared, [len(s) for s in segments])
    # as many rows as that needs, filled evenly (a last, short row would be padding)
    n_rows = math.ceil(len(segments) / per_row)
    bounds = np.linspace(0, len(segments), n_rows + 1).round().astype(int)
    rows = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    width = max(shared + sum(len(segments[e]) for e in row) for row in rows)
    if len(rows) * width > (1.0 - MIN_SAVING) * batch.input_ids.numel():
        return None

    prefix = list(batch.prompts[0][:shared])
    # padding repeats a prefix token: it is masked from every other position and never scored
    ids = torch.full((len(rows), width), prefix[0], dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    # segment id of each position: 0 = shared prefix, k = k-th entry of the row, -1 = padding
    segment_of = torch.full((len(rows), width), -1, dtype=torch.long)
    pred = [0] * len(batch.labels)
    first_token = np.concatenate([[0], np.cumsum([len(t) for t in batch.targets])])
    for r, row in enumerate(rows):
        ids[r, :shared] = torch.tensor(prefix)
        positions[r, :shared] = torch.arange(shared)
        segment_of[r, :shared] = 0
        start = shared
        for k, e in enumerate(row, start=1):
            seg = segments[e]
            stop = start + len(seg)
            ids[r, start:stop] = torch.tensor(seg)
            positions[r, start:stop] = torch.arange(shared, shared + len(seg))
            segment_of[r, start:stop] = k
            own_prompt = len(batch.prompts[e]) - shared
            for j in range(len(batch.targets[e])):
                pred[first_token[e] + j] = r * width + start + own_prompt - 1 + j
            start = stop
        # padding sits past the last segment; it sees only itself (its outputs are unused)
        positions[r, start:] = torch.arange(width - start)

    query, key = segment_of[:, :, None], segment_of[:, None, :]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    visible = causal & (((key == query) & (query >= 0)) | ((key == 0) & (query > 0)))
    visible |= torch.eye(width, dtype=torch.bool)  # padding queries: themselves only
    mask = torch.zeros(visible.shape, dtype=dtype)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    device = batch.input_ids.device
    return replace(
        batch,
        input_ids=ids.to(device),
        attention_mask=mask[:, None].to(device),
        position_ids=positions.to(device),
        pred_index=torch.tensor(pred, device=device),
    )


__all__ = ["pack_batch", "shared_prompt_length", "entries_per_row"]
