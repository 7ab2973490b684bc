"""Memory tokens: ``memtok:m`` (read before the key) and ``memtok:m@k`` (entering layer k).

``memtok:m`` prepends m trainable vectors to every sequence in a decoder pre-hook and drops
them from its output (:class:`_MemoryTokens`). ``memtok:m@k`` computes, on each first pass,
the keys and values the vectors produce at layers k..L-1 and reads them as a KV memory
(:class:`_EnteringMemoryTokens`, through :mod:`collect.carriers.kv_memory`).
"""

from __future__ import annotations

from collect.adapters import ModulesSpec, decoder_layers, resolve_layers
from collect.carriers.adapter import CarrierAdapter
from collect.carriers.kv_memory import _install_kv_memory, _PositionShift, _zero_memory
from collect.carriers.spec import memory_size


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
