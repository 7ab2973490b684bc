"""Attach a carrier: :func:`attach_carrier` checks the spec and hands it to its kind."""

from __future__ import annotations

from collect.adapters import ModulesSpec
from collect.carriers.adapter import CarrierAdapter
from collect.carriers.kv import _attach_kv_prefix
from collect.carriers.memtok import _attach_entering_memory_tokens
from collect.carriers.skv import _attach_sparse_kv
from collect.carriers.spec import CARRIER_SPECS, memory_size, parse_carrier
from collect.errors import CollectError


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
    if kind == "memtok":  # memtok:m is memtok:m@0
        return _attach_entering_memory_tokens(model, parsed, rank, seed)
    if kind == "kv":
        return _attach_kv_prefix(model, parsed, rank, tokenizer)
    return _attach_sparse_kv(model, parsed, rank)
