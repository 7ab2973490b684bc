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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collect.adapters import Adapter, ModulesSpec
from collect.errors import CollectError

__all__ = ["CARRIER_SPEC", "CarrierAdapter", "attach_carrier", "parse_carrier"]

#: A carrier spec: ``memtok:m`` with m >= 1 memory vectors.
CARRIER_SPEC = re.compile(r"^memtok:(?P<m>[1-9]\d*)$")


def parse_carrier(text: str) -> ModulesSpec | None:
    """Parse a carrier spec (``memtok:m``); None when ``text`` is not one.

    Parameters
    ----------
    text : str
        A ``modules`` value of the sweep.

    Returns
    -------
    ModulesSpec or None
        ``parts == ("memtok",)`` and ``layers == (0,)`` (the carrier changes what enters
        layer 0, so no prefix of the model can be cached).
    """
    match = CARRIER_SPEC.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    return ModulesSpec(text=text.strip(), parts=("memtok",), layers=(0,))


def memory_size(spec: ModulesSpec) -> int:
    """Return the number of memory vectors m of a ``memtok:m`` spec."""
    return int(CARRIER_SPEC.match(spec.text)["m"])


@dataclass
class CarrierAdapter(Adapter):
    """An attached carrier: an :class:`~collect.adapters.Adapter` with its storage size."""

    @property
    def n_bytes(self) -> int:
        """Bytes of the trainable tensors at their storage precision (their dtype)."""
        return int(sum(p.numel() * p.element_size() for p in self.parameters))


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


def attach_carrier(model, spec: ModulesSpec | str, rank: int, *, seed: int) -> CarrierAdapter:
    """Attach a fresh carrier to a frozen model (initialised from ``seed``).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Frozen base causal LM.
    spec : ModulesSpec or str
        A carrier spec (``memtok:m``).
    rank : int
        Must be 1: a carrier's size is set by its spec (``m``), not by a rank.
    seed : int
        Seed of the initialisation: the vectors start as the input embeddings of m tokens
        drawn uniformly from the vocabulary, so they have the scale of real inputs.

    Returns
    -------
    CarrierAdapter
        ``parameters`` is ``[vectors]`` (m × hidden); :meth:`detach` removes the hooks.

    Raises
    ------
    CollectError
        For a spec that is not a carrier, or a rank other than 1.
    """
    import torch

    parsed = parse_carrier(spec) if isinstance(spec, str) else spec
    if parsed is None or parsed.parts != ("memtok",):
        raise CollectError(f"expected a carrier spec such as 'memtok:16'; got {spec!r}.")
    if rank != 1:
        raise CollectError(
            f"carrier {parsed.text!r} is sized by its spec (m = {memory_size(parsed)} vectors), "
            f"not by a rank; got rank={rank!r}. Use ranks = [1] for carrier cells."
        )
    embedding = model.get_input_embeddings()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(embedding.num_embeddings, (memory_size(parsed),), generator=generator)
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
        model=model, spec=parsed, rank=rank, first_layer=0, parameters=[vectors], _undo=undo
    )
