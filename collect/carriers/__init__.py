"""Memory carriers other than a low-rank weight delta (DESIGN.md §1, "Carriers").

``memtok:m``
    m trainable vectors read as extra input positions before the key (soft prompt / memory
    tokens, as in GradMem and "Cramming 1568 tokens into a single vector"): the model is
    frozen, the vectors are written by gradient descent. ``m × hidden`` trainable scalars.

A carrier is attached like an adapter (:func:`collect.adapters.attach` hands a carrier spec
here) and returns a :class:`CarrierAdapter`, so :func:`collect.probe.run_cell` trains and
measures it unchanged. ``memtok:m`` is ``memtok:m@0`` below: the vectors are read as the keys
and values they produce at every layer, the same computation as m extra input positions in
every row (one pass of the m positions instead of one per row), so every caller, the batch
layout, packed prompts and greedy decoding with a KV cache keep working on the target
positions they already index. peft's prompt tuning prepends the positions for ``PeftModel``
only; reading them as a memory keeps the probe's own forward paths.

Unlike a LoRA adapter (B = 0), memory tokens cannot start as an exact no-op: the vectors
start as the embeddings of m random tokens, and a cell's ``loss_before``/``p_before`` are
measured with them in place. ΔL is therefore relative to the untrained carrier, not to the
bare model; the information bits (:mod:`lawfit.information`) do not depend on it. The
prefix cache does not apply (the carrier changes what enters layer 0).

``memtok:m@k``
    m trainable vectors inserted as m extra positions entering layer k: they are the hidden
    states of m positions before the sequence at the input of layer k, and layers below k
    never see them. ``m × hidden`` trainable scalars. Being earlier positions, their hidden
    states never depend on the sequence, so the sequence reads, at each layer from k on, the
    keys and values they produce there: they are read through the KV-memory attention below,
    recomputed from the vectors on every forward pass (:class:`_EnteringMemoryTokens`), and
    the probe's prefix cache (hidden states entering layer k, computed once per cell) and
    packed prompts apply. They start as the hidden states entering layer k of the m random
    tokens ``memtok:m`` starts from (``memtok:m@0`` and ``memtok:m`` are one carrier). Like
    ``memtok:m`` they cannot start as a no-op.

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

The KV carriers (and memory tokens) enter the model through one attention function registered with
transformers' ``AttentionInterface`` and given only to the attention modules that read a
memory (through a copy of their config): it prepends the memory to the keys and values, lets
every query read it, and calls the model's own ``sdpa`` or ``eager`` attention. A pre-hook on
the decoder moves the positions after the memory. A KV cache (greedy decoding) holds the
sequence's own keys only, so cached and uncached decoding agree.

The package is laid out by responsibility; every name below is importable from
``collect.carriers`` itself:

- ``spec``: the carrier specs (:data:`CARRIER_SPECS`, :data:`CARRIER_SPEC`),
  :func:`parse_carrier`, a spec's size knob (:func:`memory_size`) and the bytes of a cell
  written before ``n_bytes`` was recorded (:func:`derived_n_bytes`).
- ``adapter``: :class:`CarrierAdapter`, what attaching a carrier returns.
- ``memtok``: memory tokens, ``memtok:m`` and ``memtok:m@k``.
- ``kv_memory``: the KV-memory attention every KV carrier (and memory tokens) is read
  through, the attention each position receives (:func:`received_attention`,
  :func:`allowed_keys`) and the frozen model's keys and values of a text
  (:func:`_read_keys_values`). Its ``QUERY_CHUNK`` (queries per block when the received
  attention is summed) is read there: set it on ``collect.carriers.kv_memory``.
- ``kv``: the trainable KV prefix ``kv:m@k`` and its starting text (:func:`init_text_ids`).
- ``skv``: sparse KV memory ``skv:k@LAYERS``, written without training.
- ``attach``: :func:`attach_carrier`, which checks a spec and attaches its kind.
"""

from __future__ import annotations

# the names marked noqa are re-exported: other modules and the tests import them from
# collect.carriers, as when it was one module
from collect.carriers.adapter import CarrierAdapter
from collect.carriers.attach import attach_carrier
from collect.carriers.kv import init_text_ids  # noqa: F401
from collect.carriers.kv_memory import (  # noqa: F401
    KV_ATTENTION,
    KV_INNER,
    _read_keys_values,
    allowed_keys,
    received_attention,
)
from collect.carriers.spec import (  # noqa: F401
    CARRIER_KNOBS,
    CARRIER_SPEC,
    CARRIER_SPECS,
    DTYPE_BYTES,
    derived_n_bytes,
    memory_size,
    parse_carrier,
)

__all__ = [
    "CARRIER_SPEC",
    "CARRIER_SPECS",
    "CarrierAdapter",
    "attach_carrier",
    "derived_n_bytes",
    "parse_carrier",
    "received_attention",
]
