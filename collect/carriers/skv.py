"""Sparse KV memory ``skv:k@LAYERS``, written without training (Memory³).

The memory is empty when attached; :attr:`CarrierAdapter.write` fills it from the cell's
rows: at each chosen layer every KV head keeps the keys and values of the k positions that
received the most attention.
"""

from __future__ import annotations

from collect.adapters import ModulesSpec, decoder_layers, resolve_layers
from collect.carriers.adapter import CarrierAdapter
from collect.carriers.kv_memory import _install_kv_memory, _read_keys_values, _zero_memory
from collect.carriers.spec import memory_size
from collect.errors import CollectError


def _attach_sparse_kv(model, spec: ModulesSpec, rank: int) -> CarrierAdapter:
    """Attach ``skv:k@LAYERS``: an empty memory of k positions per KV head, written later."""
    _, layers = decoder_layers(model)
    chosen = resolve_layers(spec, len(layers))
    k = memory_size(spec)
    memories, shift, undo = _install_kv_memory(model, _zero_memory(model, chosen, k))

    def write(batch) -> None:
        rows = zip(batch.prompts, batch.targets, strict=True)
        text = [int(t) for prompt, target in rows for t in (*prompt, *target)]
        if k > len(text):
            raise CollectError(
                f"{spec.text!r} keeps k={k} positions per head, but the memory text (the "
                f"cell's prompts and targets) has only {len(text)} tokens; use k <= {len(text)}."
            )
        shift.shift = 0  # the text is read at positions 0..N-1, with the memory off
        for memory in memories.values():
            memory.active = False
        captured = _read_keys_values(model, text, memories)
        for index, memory in memories.items():
            keys, values, received = captured[index]
            kept = received.topk(k, dim=-1).indices.sort(dim=-1).values  # (n_kv, k)
            index_ = kept[..., None].expand(-1, -1, keys.shape[-1])
            memory.keys.copy_(keys.gather(1, index_))
            memory.values.copy_(values.gather(1, index_))
            memory.active = True
        shift.shift = len(text)

    params = [t for i in chosen for t in (memories[i].keys, memories[i].values)]
    return CarrierAdapter(
        model=model,
        spec=spec,
        rank=rank,
        first_layer=0,
        parameters=params,
        _undo=undo,
        write=write,
    )
