"""Memory carriers other than a low-rank weight delta (DESIGN.md §1, "Carriers").

``memtok:m``
    m trainable vectors read as extra input positions before the key (soft prompt / memory
    tokens, as in GradMem and "Cramming 1568 tokens into a single vector"): the model is
    frozen, the vectors are written by gradient descent. ``m × hidden`` trainable scalars.

A carrier is attached like an adapter (:func:`collect.adapters.attach` hands a carrier spec
here) and returns a :class:`CarrierAdapter`, so :func:`collect.probe.run_cell` trains and
measures it unchanged. The memory positions are inserted inside the decoder's forward pass
(a pre-hook prepends them, with their attention-mask entries and positions; a hook removes
them from the output), so every caller, the batch layout and greedy decoding with a KV cache
keep working on the target positions they already index. peft's prompt tuning does the same
for ``PeftModel`` only; doing it on the decoder keeps the probe's own forward paths.

Unlike a LoRA adapter (B = 0), memory tokens cannot start as an exact no-op: the vectors
start as the embeddings of m random tokens, and a cell's ``loss_before``/``p_before`` are
measured with them in place. ΔL is therefore relative to the untrained carrier, not to the
bare model; the information bits (:mod:`lawfit.information`) do not depend on it. The
prefix cache does not apply (the carrier changes what enters layer 0), and a packed batch
(4-D attention mask) is refused, so the probe falls back to the plain batch with a warning.

``memtok:m@k``
    m trainable vectors inserted as m extra positions entering layer k: they are the hidden
    states of m positions before the sequence at the input of layer k, and layers below k
    never see them. ``m × hidden`` trainable scalars. Being earlier positions, their hidden
    states never depend on the sequence, so the sequence reads, at each layer from k on, the
    keys and values they produce there: they are read through the KV-memory attention below,
    recomputed from the vectors on every forward pass (:class:`_EnteringMemoryTokens`), and
    the probe's prefix cache (hidden states entering layer k, computed once per cell) and
    packed prompts apply. They start as the hidden states entering layer k of the m random
    tokens ``memtok:m`` starts from; ``memtok:m@0`` is ``memtok:m`` read another way (same
    start, same cell up to rounding). Like ``memtok:m`` they cannot start as a no-op.

``kv:m@k``
    A trainable KV prefix (prefix tuning; Cartridges): m trainable key and value slots per KV
    head at every layer from k on, read by attention before the sequence's own keys, as a
    past key/value cache would be. ``2 × m × n_kv_heads × head_dim × (L − k)`` trainable
    scalars. The slots start as the keys and values of real text: the frozen model reads the
    last m tokens of the shipped public-domain text (:func:`collect.tasks.load_default_text`;
    ``long_context`` targets are its *first* tokens, so the two meet only when a target and
    the slots together exceed the text), and the sequence's positions continue after them.
    Layers below k never see the memory, so the probe's prefix cache (hidden states entering
    layer k, computed once per cell) and packed prompts apply.

``skv:k@LAYERS``
    Explicit sparse KV memory written without training (Memory³): the frozen model reads the
    cell's rows (each entry's prompt and target, concatenated in entry order), and at each
    chosen layer every KV head keeps the keys and values of the k positions that received the
    most attention (summed over the text's queries and the head's query group). Prompts are
    then read with this memory as their KV prefix, at positions after the memory text, so with
    k = all positions at every layer the model reads exactly as if the text were in its
    context. ``2 × k × n_kv_heads × head_dim × len(LAYERS)`` stored scalars. The memory is
    empty while ``loss_before`` is measured (the bare model) and is written in place of
    training (:attr:`CarrierAdapter.write`: the cell runs 0 steps, stop reason ``written``).

The KV carriers (and ``memtok:m@k``) enter the model through one attention function registered with
transformers' ``AttentionInterface`` and given only to the attention modules that read a
memory (through a copy of their config): it prepends the memory to the keys and values, lets
every query read it, and calls the model's own ``sdpa`` or ``eager`` attention. A pre-hook on
the decoder moves the positions after the memory. A KV cache (greedy decoding) holds the
sequence's own keys only, so cached and uncached decoding agree.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collect.adapters import CARRIER_KINDS, Adapter, ModulesSpec, decoder_layers, resolve_layers
from collect.errors import CollectError

__all__ = [
    "CARRIER_SPEC",
    "CARRIER_SPECS",
    "CarrierAdapter",
    "attach_carrier",
    "derived_n_bytes",
    "parse_carrier",
    "received_attention",
]

_LAYERS = r"(?P<layers>all|-?\d+(,-?\d+)*)"
#: The carrier specs, by kind: ``memtok:m`` and ``memtok:m@k`` (one layer k: the vectors
#: enter the residual stream at layer k), ``kv:m@k`` (one layer k: the memory is read from
#: layer k on) and ``skv:k@LAYERS`` (``all``, one layer or a comma list), with m, k >= 1.
CARRIER_SPECS = {
    "memtok": re.compile(r"^memtok:(?P<m>[1-9]\d*)(@(?P<layers>-?\d+))?$"),
    "kv": re.compile(r"^kv:(?P<m>[1-9]\d*)@(?P<layers>-?\d+)$"),
    "skv": re.compile(rf"^skv:(?P<m>[1-9]\d*)@{_LAYERS}$"),
}
assert tuple(CARRIER_SPECS) == CARRIER_KINDS
#: The memory-token spec (kept for callers that match it alone).
CARRIER_SPEC = CARRIER_SPECS["memtok"]
#: Name under which the KV-memory attention function is registered with transformers.
KV_ATTENTION = "collect_kv_memory"
#: Attention implementations the KV carriers can wrap (flash kernels take no 4-D mask).
KV_INNER = ("sdpa", "eager")
#: Queries per block when the attention a memory text's positions receive is summed.
QUERY_CHUNK = 512


#: what each carrier's size counts, for messages
CARRIER_KNOBS = {
    "memtok": "memory tokens",
    "kv": "key/value slots per layer",
    "skv": "positions kept per head",
}


def parse_carrier(text: str) -> ModulesSpec | None:
    """Parse a carrier spec (``memtok:m[@k]``, ``kv:m@k``, ``skv:k@LAYERS``); None if not one.

    Parameters
    ----------
    text : str
        A ``modules`` value of the sweep.

    Returns
    -------
    ModulesSpec or None
        ``parts`` is the kind, e.g. ``("kv",)``. ``layers`` is ``(0,)`` for memory tokens
        read before the key (they change what enters layer 0, so no prefix of the model can
        be cached), ``(k,)`` for memory tokens entering layer k and for a KV prefix, and the
        chosen layers (None = all) for sparse KV memory.
    """
    if not isinstance(text, str):
        return None
    count = re.match(r"^(memtok|kv|skv):(-?\d+)", text.strip())
    if count is not None and int(count[2]) < 1:
        raise CollectError(
            f"modules spec {text!r}: the {count[1]} carrier's size must be a whole number >= 1 "
            f"({CARRIER_KNOBS[count[1]]}); got {count[2]}."
        )
    for kind, pattern in CARRIER_SPECS.items():
        match = pattern.match(text.strip())
        if match is None:
            continue
        if match["layers"] is None:  # memtok:m
            layers = (0,)
        elif match["layers"] == "all":
            layers = None
        else:
            layers = tuple(int(x) for x in match["layers"].split(","))
        return ModulesSpec(text=text.strip(), parts=(kind,), layers=layers)
    return None


#: Bytes per element of the model dtypes a cell file records (its ``dtype`` attribute).
DTYPE_BYTES = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}


def derived_n_bytes(modules: str, n_params: int, dtype: str) -> int | None:
    """Bytes at storage precision of a cell written before ``n_bytes`` was recorded.

    Weight-delta adapters (LoRA, ``mlp_block``) are held in float32 whatever the model's
    dtype (:attr:`collect.adapters.Adapter.n_bytes`): 4 bytes per parameter. Carriers are held
    in the model's dtype, which cell files record as ``dtype`` (every carrier cell has it: the
    carriers came after it).

    Parameters
    ----------
    modules : str
        The cell's ``modules`` spec.
    n_params : int
        Its recorded ``n_params``.
    dtype : str
        Its recorded model dtype (``""`` where the cell has none).

    Returns
    -------
    int or None
        The bytes, or None for a carrier whose dtype is not recorded.
    """
    if parse_carrier(modules) is None:
        return 4 * int(n_params)
    size = DTYPE_BYTES.get(dtype)
    return None if size is None else size * int(n_params)


def memory_size(spec: ModulesSpec) -> int:
    """Return the size knob of a carrier spec: m vectors, m KV slots or k kept positions."""
    return int(CARRIER_SPECS[spec.parts[0]].match(spec.text)["m"])


@dataclass
class CarrierAdapter(Adapter):
    """An attached carrier: an :class:`~collect.adapters.Adapter` that may be written untrained.

    ``n_params`` counts its trainable (or, for ``skv``, stored) scalars and ``n_bytes`` their
    bytes in the model's dtype, the precision the carrier is held in.

    ``write`` is None for carriers written by training. For a memory written without
    training (``skv``) it is a callable taking the cell's :class:`collect.probe.Batch`: it
    fills the memory from the batch's rows, after ``loss_before`` was measured and in place
    of the training steps.
    """

    write: Callable[[Any], None] | None = None


class _MemoryTokens:
    """The hooks that read m trainable vectors as extra positions before every sequence."""

    def __init__(self, vectors) -> None:
        self.vectors = vectors  # (m, hidden) parameter
        self.m = vectors.shape[0]
        self.strip = False

    def before(self, decoder, args, kwargs):
        """Prepend the memory positions (first pass) or shift positions (cached steps)."""
        import torch

        if args:
            raise ValueError("memory tokens need the decoder called with keyword arguments")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = cache.get_seq_length() if cache is not None else 0
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            embeds = decoder.get_input_embeddings()(kwargs["input_ids"])
        rows, m = embeds.shape[0], self.m
        mask, pos = kwargs.get("attention_mask"), kwargs.get("position_ids")
        if mask is not None and mask.dim() != 2:
            raise ValueError("memory tokens need a 2-D attention mask (no packed batches)")
        self.strip = past == 0
        if self.strip:
            memory = self.vectors.to(embeds.dtype).unsqueeze(0).expand(rows, m, -1)
            embeds = torch.cat([memory, embeds], dim=1)
            if pos is not None:
                first = torch.arange(m, device=pos.device).expand(pos.shape[0], m)
                pos = torch.cat([first, pos + m], dim=1)
        elif pos is not None:  # a decoding step: the cache already holds the memory
            pos = pos + m
        if mask is not None:
            mask = torch.cat([mask.new_ones(mask.shape[0], m), mask], dim=1)
        kwargs.update(input_ids=None, inputs_embeds=embeds, attention_mask=mask, position_ids=pos)
        return args, kwargs

    def after(self, decoder, args, kwargs, output):
        """Drop the memory positions from the decoder's output (first pass only)."""
        if self.strip:
            output["last_hidden_state"] = output["last_hidden_state"][:, self.m :]
        return output


def _attach_memory_tokens(model, spec: ModulesSpec, rank: int, seed: int) -> CarrierAdapter:
    """Attach ``memtok:m``: vectors initialised as the embeddings of m random tokens."""
    import torch

    embedding = model.get_input_embeddings()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(embedding.num_embeddings, (memory_size(spec),), generator=generator)
    with torch.no_grad():
        start = embedding(ids.to(embedding.weight.device)).detach().clone()
    vectors = torch.nn.Parameter(start, requires_grad=True)
    hooks = _MemoryTokens(vectors)
    decoder = model.get_decoder()
    handles = [
        decoder.register_forward_pre_hook(hooks.before, with_kwargs=True),
        decoder.register_forward_hook(hooks.after, with_kwargs=True),
    ]

    def undo():
        for handle in handles:
            handle.remove()
        return model

    return CarrierAdapter(
        model=model, spec=spec, rank=rank, first_layer=0, parameters=[vectors], _undo=undo
    )


# --------------------------------------------------------------------------- KV memory


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


class _EnteringMemoryTokens:
    """Memory tokens entering layer k, read as a KV prefix at layers >= k.

    m positions that enter the residual stream at layer k come before the sequence, so by
    causality their hidden states never depend on it: at every layer j >= k the sequence reads
    exactly the keys and values those m positions have there, and layers below k never see
    them. So on each first pass through the decoder (no cache yet: every training step and
    measurement), when layer k's attention is reached, the m trainable vectors run alone
    through layers k..L-1 at positions 0..m-1, and the keys and values each layer computes for
    them (with gradients to the vectors) become that layer's memory (:class:`_LayerMemory`).
    A pass that stops before layer k (the probe's prefix cache) never computes them. The
    sequence's positions start at m (:class:`_PositionShift`) at every layer, as with m extra
    positions in the sequence. Decoding steps with a cache reuse their first pass's memory.
    """

    def __init__(self, model, vectors, first: int, memories: dict, shift: _PositionShift):
        name, self.layers = decoder_layers(model)
        self.owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        self.attr = name.rsplit(".", 1)[-1]
        self.vectors, self.first = vectors, first
        self.memories, self.shift = memories, shift
        self.decoder = model.get_decoder()
        self.busy = False  # the memory's own pass through the decoder
        self.stale = True  # the vectors may have changed since the memory was computed
        memories[first].refresh = self.refresh

    def before(self, decoder, args, kwargs):
        """Mark the memory stale on a first pass through the decoder (no cached positions)."""
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if not self.busy and (cache is None or cache.get_seq_length() == 0):
            self.stale = True

    def refresh(self) -> None:
        """Compute the memory if this pass has not yet (called by layer k's attention)."""
        if self.stale and not self.busy:
            self.stale = False
            self.write_memory(self.decoder)

    def write_memory(self, decoder) -> None:
        """Run the vectors through layers k..L-1; store each layer's keys and values."""
        import torch

        captured = {}

        def capture_for(index):
            def capture(module, query, key, value, allowed):
                captured[index] = (key[0], value[0])

            return capture

        for index, memory in self.memories.items():
            memory.active, memory.capture = False, capture_for(index)
        outer, shift = getattr(self.owner, self.attr), self.shift.shift
        setattr(self.owner, self.attr, torch.nn.ModuleList(list(self.layers)[self.first :]))
        self.busy, self.shift.shift = True, 0
        m = self.vectors.shape[0]
        try:
            decoder(
                inputs_embeds=self.vectors.unsqueeze(0),
                position_ids=torch.arange(m, device=self.vectors.device).unsqueeze(0),
                use_cache=False,
            )
        finally:
            setattr(self.owner, self.attr, outer)
            self.busy, self.shift.shift = False, shift
            for memory in self.memories.values():
                memory.capture = None
        for index, memory in self.memories.items():
            memory.keys, memory.values = captured[index]
            memory.active = True


def _attach_entering_memory_tokens(model, spec: ModulesSpec, rank: int, seed: int):
    """Attach ``memtok:m@k``: m vectors entering layer k, started from m random tokens there.

    The vectors start as the hidden states entering layer k of the m random tokens
    ``memtok:m`` starts from (the same draw for the same seed), read by the frozen model at
    positions 0..m-1: real inputs of that layer, at its scale. With k = 0 these are the tokens'
    embeddings, ``memtok:m``'s start.
    """
    import torch

    _, layers = decoder_layers(model)
    first = resolve_layers(spec, len(layers))[0]
    m = memory_size(spec)
    embedding = model.get_input_embeddings()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(embedding.num_embeddings, (m,), generator=generator)
    memories, shift, undo_kv = _install_kv_memory(
        model, _zero_memory(model, range(first, len(layers)), m)
    )
    ids = ids.to(embedding.weight.device)[None]
    with torch.no_grad():  # memory off and unshifted: the frozen model reads the m tokens
        if embedding.weight.device.type == "meta":  # a skeleton (shapes only) reads nothing
            start = embedding(ids)
        else:
            out = model.get_decoder()(input_ids=ids, output_hidden_states=True, use_cache=False)
            start = out.hidden_states[first]
    vectors = torch.nn.Parameter(start[0].detach().clone(), requires_grad=True)
    hook = _EnteringMemoryTokens(model, vectors, first, memories, shift)
    handle = model.get_decoder().register_forward_pre_hook(hook.before, with_kwargs=True)
    shift.shift = m

    def undo():
        handle.remove()
        return undo_kv()

    return CarrierAdapter(
        model=model, spec=spec, rank=rank, first_layer=first, parameters=[vectors], _undo=undo
    )


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


def attach_carrier(
    model, spec: ModulesSpec | str, rank: int, *, seed: int, tokenizer=None
) -> CarrierAdapter:
    """Attach a fresh carrier to a frozen model.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Frozen base causal LM.
    spec : ModulesSpec or str
        A carrier spec: ``memtok:m``, ``memtok:m@k``, ``kv:m@k`` or ``skv:k@LAYERS``.
    rank : int
        Must be 1: a carrier's size is set by its spec (m or k), not by a rank.
    seed : int
        Seed of the initialisation of memory tokens: the vectors start as the input
        embeddings of m tokens drawn uniformly from the vocabulary (``memtok:m@k``: those
        tokens' hidden states entering layer k), so they have the scale of real inputs. The KV
        carriers start deterministically (real text; an empty memory).
    tokenizer : transformers tokenizer, optional
        The model's tokenizer; needed by ``kv:m@k`` to read its starting text.

    Returns
    -------
    CarrierAdapter
        ``parameters`` holds the carrier's tensors: ``[vectors]`` (m × hidden) for memory
        tokens, the keys and values of each layer (n_kv_heads × m × head_dim each) for a KV
        prefix, and the stored keys and values for sparse KV memory (not trainable; filled
        by :attr:`CarrierAdapter.write`). :meth:`~collect.adapters.Adapter.detach` restores
        the model.

    Raises
    ------
    CollectError
        For a spec that is not a carrier, a rank other than 1, a layer out of range, an
        attention implementation a KV memory cannot wrap, or a missing tokenizer.
    """
    parsed = parse_carrier(spec) if isinstance(spec, str) else spec
    if parsed is None or parsed.parts[0] not in CARRIER_SPECS:
        raise CollectError(
            f"expected a carrier spec such as 'memtok:16', 'kv:8@20' or 'skv:64@all'; got {spec!r}."
        )
    if rank != 1:
        raise CollectError(
            f"carrier {parsed.text!r} is sized by its spec ({memory_size(parsed)}), not by a "
            f"rank; got rank={rank!r}. Use ranks = [1] for carrier cells."
        )
    kind = parsed.parts[0]
    if kind == "memtok" and "@" in parsed.text:  # memtok:m@k
        return _attach_entering_memory_tokens(model, parsed, rank, seed)
    if kind == "memtok":
        return _attach_memory_tokens(model, parsed, rank, seed)
    if kind == "kv":
        return _attach_kv_prefix(model, parsed, rank, tokenizer)
    return _attach_sparse_kv(model, parsed, rank)
