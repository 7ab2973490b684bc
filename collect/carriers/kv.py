"""The trainable KV prefix ``kv:m@k``: key/value slots at layers >= k, started from real text.

:func:`init_text_ids` gives the starting text (the last m tokens of the shipped public-domain
text); the slots start as the keys and values the frozen model computes for it.
"""

from __future__ import annotations

from collect.adapters import ModulesSpec, decoder_layers, resolve_layers
from collect.carriers.adapter import CarrierAdapter
from collect.carriers.kv_memory import _install_kv_memory, _read_keys_values, _zero_memory
from collect.carriers.spec import memory_size
from collect.errors import CollectError


def init_text_ids(tokenizer, m: int) -> list[int]:
    """Return the last ``m`` token ids of the shipped public-domain text (a KV prefix's start)."""
    from collect.tasks import load_default_text

    if tokenizer is None:
        raise CollectError(
            "a trainable KV prefix starts from the keys and values of real text, which needs "
            "the model's tokenizer; call attach(..., tokenizer=tokenizer)."
        )
    ids = [int(i) for i in tokenizer(load_default_text(), add_special_tokens=False)["input_ids"]]
    if len(ids) < m:
        raise CollectError(
            f"kv:{m}@k starts its {m} slots from {m} tokens of the shipped text, which has "
            f"only {len(ids)} tokens under this tokenizer; use at most kv:{len(ids)}@k."
        )
    return ids[len(ids) - m :]


def _attach_kv_prefix(model, spec: ModulesSpec, rank: int, tokenizer) -> CarrierAdapter:
    """Attach ``kv:m@k``: trainable key/value slots at layers >= k, started from real text."""
    import torch

    _, layers = decoder_layers(model)
    first = resolve_layers(spec, len(layers))[0]
    m = memory_size(spec)
    ids = init_text_ids(tokenizer, m)
    start = _zero_memory(model, range(first, len(layers)), m)
    memories, shift, undo = _install_kv_memory(model, start)
    if start[first][0].device.type != "meta":  # a skeleton (shapes only) reads no text
        captured = _read_keys_values(model, ids, memories)
        start = {index: captured[index][:2] for index in memories}
    params = []
    for index, memory in memories.items():
        keys, values = start[index]
        memory.keys = torch.nn.Parameter(keys.clone(), requires_grad=True)
        memory.values = torch.nn.Parameter(values.clone(), requires_grad=True)
        memory.active = True
        params += [memory.keys, memory.values]
    shift.shift = m
    return CarrierAdapter(
        model=model, spec=spec, rank=rank, first_layer=first, parameters=params, _undo=undo
    )
