"""One cell's batch: every entry's prompt and target tokens, right-padded (:func:`make_batch`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from collect.tasks import Entry


@dataclass
class Batch:
    """Right-padded prompts+targets of all entries, and where the target tokens sit."""

    input_ids: Any  # (B, T) long
    attention_mask: Any  # (B, T) long
    pred_index: Any  # (N,) flat index into B*T of the position predicting each target token
    labels: Any  # (N,) target token ids, in concatenated order
    token_entry: np.ndarray  # (N,) entry of each target token
    prompts: list[list[int]]  # prompt ids per entry (for greedy decoding)
    targets: list[list[int]]  # target ids per entry
    #: (B, T) position ids where they are not 0..T-1 in every row (packed entries), else None
    position_ids: Any = None


def prompt_ids(tokenizer, key: str) -> list[int]:
    """Token ids of an entry's prompt: the chat template when the model has one, else ``key``."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": key}], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    return list(tokenizer(key, add_special_tokens=False)["input_ids"])


def make_batch(tokenizer, entries: list[Entry], device) -> Batch:
    """Tokenize prompts, append target ids and right-pad into one batch."""
    import torch

    prompts = [prompt_ids(tokenizer, e.key) for e in entries]
    targets = [list(e.target_ids) for e in entries]
    width = max(len(p) + len(t) for p, t in zip(prompts, targets, strict=True))
    pad = tokenizer.pad_token_id
    ids = torch.full((len(entries), width), pad, dtype=torch.long)
    mask = torch.zeros((len(entries), width), dtype=torch.long)
    pred, labels, owner = [], [], []
    for row, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        seq = p + t
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        pred += [row * width + len(p) - 1 + j for j in range(len(t))]
        labels += t
        owner += [row] * len(t)
    return Batch(
        ids.to(device),
        mask.to(device),
        torch.tensor(pred, device=device),
        torch.tensor(labels, device=device),
        np.asarray(owner),
        prompts,
        targets,
    )
