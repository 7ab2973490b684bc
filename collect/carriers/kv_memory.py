"""The KV memory the KV carriers (and ``memtok:m@k``) are read through.

One attention function, registered with transformers' ``AttentionInterface`` under
:data:`KV_ATTENTION` and given only to the attention modules that read a memory
(:func:`_install_kv_memory`, through a copy of their config), prepends each module's memory
(:class:`_LayerMemory`) to the keys and values, lets every query read it and calls the model's
own ``sdpa`` or ``eager`` attention (:data:`KV_INNER`). A decoder pre-hook
(:class:`_PositionShift`) moves the sequence's positions after the memory.
:func:`_read_keys_values` runs the frozen model on a text and captures each memory layer's
keys, values and the attention each position received (:func:`received_attention`).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

from collect.adapters import decoder_layers
from collect.errors import CollectError

#: Name under which the KV-memory attention function is registered with transformers.
KV_ATTENTION = "collect_kv_memory"

#: Attention implementations the KV carriers can wrap (flash kernels take no 4-D mask).
KV_INNER = ("sdpa", "eager")

#: Queries per block when the attention a memory text's positions receive is summed.
QUERY_CHUNK = 512


class _LayerMemory:
    """Keys and values one attention module reads before the sequence's own (a KV prefix).

    ``keys`` and ``values`` have shape (n_kv_heads, P, head_dim), already position-encoded.
    While ``active`` is False the module attends as usual; ``capture`` (when set) is called
    with every attention call's module, queries, keys, values and allowed-key matrix;
    ``refresh`` (when set) is called first, on every attention call, and may recompute the
    memory (memory tokens entering a layer compute theirs on each forward pass).
    """

    def __init__(self, keys, values, inner: Callable, inner_name: str) -> None:
        self.keys, self.values = keys, values
        self.inner, self.inner_name = inner, inner_name
        self.active = False
        self.capture: Callable | None = None
        self.refresh: Callable[[], None] | None = None


def allowed_keys(mask, q_len: int, k_len: int, device):
    """Boolean matrix (rows or 1, 1, Q, K) of the keys each query may read.

    ``mask`` is what a transformers attention function receives: None (plain causal, the
    queries being the last ``q_len`` of ``k_len`` positions), a boolean mask (True = read) or
    an additive float mask (0 = read, a large negative number = masked).
    """
    import torch

    if mask is None:
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
        return causal.tril(k_len - q_len)[None, None]
    mask = mask[..., :k_len]
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def received_attention(module, query, key, allowed):
    """Attention each key position receives, per KV head, summed over queries and group.

    Parameters
    ----------
    module : torch.nn.Module
        The attention module (its ``scaling`` is the softmax temperature).
    query : torch.Tensor
        (rows, n_heads, Q, head_dim), position-encoded.
    key : torch.Tensor
        (rows, n_kv_heads, K, head_dim), position-encoded.
    allowed : torch.Tensor
        Boolean (rows or 1, 1, Q, K): the keys each query may read (:func:`allowed_keys`).

    Returns
    -------
    torch.Tensor
        (rows, n_kv_heads, K), float32: Σ over the queries of a KV head's query group of
        their attention probabilities on each key.
    """
    rows, n_kv, k_len, _ = key.shape
    groups = query.shape[1] // n_kv
    keys = key.float().repeat_interleave(groups, dim=1)  # query head h reads KV head h // groups
    total = 0.0
    for start in range(0, query.shape[2], QUERY_CHUNK):  # bounded memory on long texts
        part = slice(start, start + QUERY_CHUNK)
        scores = query[:, :, part].float() @ keys.transpose(-1, -2) * module.scaling
        probs = scores.masked_fill(~allowed[..., part, :], float("-inf")).softmax(-1)
        total = total + probs.sum(2)
    return total.view(rows, n_kv, groups, k_len).sum(2)


def _kv_memory_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention with the module's memory (:class:`_LayerMemory`) read before the sequence."""
    import torch

    memory = module.kv_memory
    if memory.refresh is not None:
        memory.refresh()
    if memory.capture is not None or memory.active:
        allowed = allowed_keys(attention_mask, query.shape[2], key.shape[2], query.device)
    if memory.capture is not None:
        memory.capture(module, query, key, value, allowed)
    if not memory.active:
        return memory.inner(module, query, key, value, attention_mask, **kwargs)
    rows = key.shape[0]
    stored_k = memory.keys.to(key.dtype).unsqueeze(0).expand(rows, -1, -1, -1)
    stored_v = memory.values.to(value.dtype).unsqueeze(0).expand(rows, -1, -1, -1)
    key = torch.cat([stored_k, key], dim=2)
    value = torch.cat([stored_v, value], dim=2)
    readable = allowed.new_ones(*allowed.shape[:-1], memory.keys.shape[1])
    allowed = torch.cat([readable, allowed], dim=-1)
    if memory.inner_name == "sdpa":
        mask = allowed
    else:  # eager attention adds the mask to the scores
        zero = torch.zeros((), dtype=query.dtype, device=query.device)
        mask = torch.where(allowed, zero, torch.finfo(query.dtype).min)
    return memory.inner(module, query, key, value, mask, **kwargs)


class _PositionShift:
    """Decoder pre-hook: the sequence's positions start after ``shift`` memory positions."""

    def __init__(self) -> None:
        self.shift = 0

    def before(self, decoder, args, kwargs):
        """Add ``shift`` to the position ids (built from the cache length when absent)."""
        import torch

        if self.shift == 0:
            return None
        if args:
            raise ValueError("a KV memory needs the decoder called with keyword arguments")
        pos = kwargs.get("position_ids")
        if pos is None:
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            past = cache.get_seq_length() if cache is not None else 0
            embeds = kwargs.get("inputs_embeds")
            first = embeds if embeds is not None else kwargs["input_ids"]
            pos = torch.arange(past, past + first.shape[1], device=first.device).unsqueeze(0)
        kwargs["position_ids"] = pos + self.shift
        return args, kwargs


def _attention_module(layer, index: int):
    """Return one decoder layer's self-attention, checked to be one a memory can wrap."""
    attn = getattr(layer, "self_attn", None)
    config = getattr(attn, "config", None)
    name = getattr(config, "_attn_implementation", None)
    if attn is None or not hasattr(attn, "scaling") or name not in KV_INNER:
        raise CollectError(
            f"a KV carrier reads its memory through the attention of layer {index}, which "
            f"must be a transformers `self_attn` module running one of {KV_INNER}; got "
            f"{type(attn).__name__} with attention implementation {name!r}. Load the model "
            "with attn_implementation='sdpa' (or 'eager')."
        )
    return attn


def _inner_attention(attn) -> tuple[Callable, str]:
    """Return the attention function the module runs now (``sdpa``, or its own ``eager``)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = attn.config._attn_implementation
    if name == "eager":
        return sys.modules[type(attn).__module__].eager_attention_forward, name
    return ALL_ATTENTION_FUNCTIONS[name], name


def _install_kv_memory(model, layer_keys: dict[int, tuple]) -> tuple[dict, _PositionShift, Any]:
    """Give each chosen layer's attention a memory; return memories, position hook and undo.

    ``layer_keys`` maps a layer index to its (keys, values) tensors.
    """
    from transformers import AttentionInterface

    AttentionInterface.register(KV_ATTENTION, _kv_memory_attention)
    _, layers = decoder_layers(model)
    memories, configs = {}, {}
    for index, (keys, values) in layer_keys.items():
        attn = _attention_module(layers[index], index)
        memories[index] = _LayerMemory(keys, values, *_inner_attention(attn))
        configs[index] = attn.config
        attn.config = copy.deepcopy(attn.config)
        attn.config._attn_implementation = KV_ATTENTION
        attn.kv_memory = memories[index]
    shift = _PositionShift()
    handle = model.get_decoder().register_forward_pre_hook(shift.before, with_kwargs=True)

    def undo():
        handle.remove()
        for index, config in configs.items():
            attn = layers[index].self_attn
            attn.config = config
            del attn.kv_memory
        return model

    return memories, shift, undo


def _kv_shape(model) -> tuple[int, int]:
    """(n_kv_heads, head_dim) of the model's attention."""
    config = model.config
    heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return int(n_kv), int(head_dim)


def _read_keys_values(model, ids: list[int], memories: dict[int, _LayerMemory]) -> dict:
    """Run the frozen model on ``ids`` (memory off) and capture each memory layer's KV.

    Returns
    -------
    dict
        Layer index -> (keys, values, received attention), each (n_kv_heads, N, ...), from
        one pass over ``ids`` at positions 0..N-1 (the memory reads nothing while it runs).
    """
    import torch

    captured = {}

    def capture_for(index):
        def capture(module, query, key, value, allowed):
            received = received_attention(module, query, key, allowed)
            captured[index] = (key[0].detach(), value[0].detach(), received[0])

        return capture

    for index, memory in memories.items():
        memory.capture = capture_for(index)
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.get_decoder()(input_ids=torch.tensor([ids], device=device), use_cache=False)
    finally:
        for memory in memories.values():
            memory.capture = None
    return captured


def _zero_memory(model, layers, size: int) -> dict[int, tuple]:
    """Zero keys and values, (n_kv_heads, size, head_dim) each, for each of ``layers``."""
    import torch

    n_kv, head_dim = _kv_shape(model)
    ref = next(p for p in model.parameters() if p.is_floating_point())
    shape = (n_kv, size, head_dim)
    return {
        i: tuple(torch.zeros(shape, dtype=ref.dtype, device=ref.device) for _ in "kv")
        for i in layers
    }
