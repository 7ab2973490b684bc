"""Memory tokens: ``memtok:m`` (read before the key) and ``memtok:m@k`` (entering layer k).

Both are m trainable vectors at positions 0..m-1, before the sequence: ``memtok:m`` enters
layer 0 (it is ``memtok:m@0``), ``memtok:m@k`` layer k. Being earlier positions, their hidden
states never depend on the sequence, so on each first pass the vectors run alone through
layers k..L-1 and the keys and values they produce there are read as a KV memory
(:class:`_EnteringMemoryTokens`, through :mod:`collect.carriers.kv_memory`). That is the same
computation as m extra input positions in every row (``tests/collect/test_carriers.py``
writes it out), with two savings: the m positions run once per pass instead of once per row,
and packed prompts (a 4-D attention mask) apply.
"""

from __future__ import annotations

from collect.adapters import ModulesSpec, decoder_layers, resolve_layers
from collect.carriers.adapter import CarrierAdapter
from collect.carriers.kv_memory import _install_kv_memory, _PositionShift, _zero_memory
from collect.carriers.spec import memory_size


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
    """Attach ``memtok:m@k`` (``memtok:m``: k = 0): m vectors entering layer k.

    The vectors start as the hidden states entering layer k of m tokens drawn uniformly from
    the vocabulary (the same draw for the same seed), read by the frozen model at positions
    0..m-1: real inputs of that layer, at its scale. With k = 0 they are the tokens' input
    embeddings.
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
        # k = 0: the input embeddings; a skeleton (shapes only) has nothing to read
        if first == 0 or embedding.weight.device.type == "meta":
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
