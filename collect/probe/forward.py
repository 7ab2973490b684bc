"""A cell's forward pass: target-token logits, from the whole model or from a cached prefix.

:func:`lean_forward` picks the cheapest :class:`Forward` (packed prompts, prefix cache, or
the whole model) that reproduces the model on the batch (:func:`check_fast_path`).
"""

from __future__ import annotations

import contextlib
import warnings

from collect.adapters import decoder_layers
from collect.packing import pack_batch
from collect.probe.batch import Batch


class Forward:
    """Target-token logits of a model with its adapter, full or from a cached prefix."""

    def __init__(self, model, batch: Batch, start_layer: int = 0, prefix=None) -> None:
        self.model, self.batch = model, batch
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.start_layer = start_layer
        #: hidden states entering ``start_layer``: given (already computed), or computed here
        self._prefix = prefix
        if start_layer > 0 and prefix is None:
            self._prefix = self._hidden_entering(start_layer)

    def _hidden_entering(self, layer: int):
        """Hidden states entering ``layer`` (frozen: computed once, without gradients)."""
        import torch

        _, layers = decoder_layers(self.model)
        captured = {}

        class _Stop(Exception):
            pass

        def grab(module, args, kwargs):
            captured["h"] = args[0] if args else kwargs["hidden_states"]
            raise _Stop

        handle = layers[layer].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with torch.no_grad():
                self.decoder(
                    input_ids=self.batch.input_ids,
                    attention_mask=self.batch.attention_mask,
                    position_ids=self.batch.position_ids,
                    use_cache=False,
                )
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured["h"].detach()

    @contextlib.contextmanager
    def _suffix_layers(self):
        import torch

        name, layers = decoder_layers(self.model)
        owner = self.model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else self.model
        attr = name.rsplit(".", 1)[-1]
        setattr(owner, attr, torch.nn.ModuleList(list(layers)[self.start_layer :]))
        try:
            yield
        finally:
            setattr(owner, attr, layers)

    def hidden(self):
        """Return the final hidden states (after the last norm) of the whole batch."""
        if self._prefix is None:
            out = self.decoder(
                input_ids=self.batch.input_ids,
                attention_mask=self.batch.attention_mask,
                position_ids=self.batch.position_ids,
                use_cache=False,
            )
            return out.last_hidden_state
        with self._suffix_layers():
            out = self.decoder(
                inputs_embeds=self._prefix,
                attention_mask=self.batch.attention_mask,
                position_ids=self.batch.position_ids,
                use_cache=False,
            )
        return out.last_hidden_state

    def logits(self):
        """Float32 logits at the positions predicting target tokens, shape (N, vocab)."""
        h = self.hidden()
        h = h.reshape(-1, h.shape[-1])[self.batch.pred_index]
        return self.head(h).float()


def model_dtype(model):
    """Return the floating dtype of the model's weights."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def check_fast_path(model, reference: Batch, fast: Forward) -> bool:
    """Whether ``fast`` reproduces the model's own logits on the plain batch ``reference``.

    ``fast`` may run a cached prefix, a packed batch (:mod:`collect.packing`) or both; its
    target tokens are in the same order as ``reference``'s.
    """
    import torch

    with torch.no_grad():
        full = model(
            input_ids=reference.input_ids, attention_mask=reference.attention_mask, use_cache=False
        ).logits
        ref = full.reshape(-1, full.shape[-1])[reference.pred_index].float()
        del full  # every position's logits: the largest tensor of the check, freed first
        got = fast.logits()
        # both logits are float32 here; the model's own precision sets how closely two
        # summation orders can agree (bf16 keeps 8 bits of mantissa). In place: no copies of
        # the (targets x vocabulary) logits beyond these two (the check is, after a training
        # step, a cell's largest phase: benchmarks/memory_phases.py)
        tol = 1e-3 if model_dtype(model) == torch.float32 else 5e-2
        scale = torch.maximum(ref.max(), -ref.min()).clamp_min(1.0)
        return bool((got.sub_(ref).abs_().max() / scale) < tol)


def lean_forward(model, batch: Batch, start_layer: int, pack: bool = True) -> Forward:
    """Return the cheapest :class:`Forward` that reproduces the model on ``batch``.

    Candidates, cheapest first: the batch packed around its shared prompt prefix
    (:func:`collect.packing.pack_batch`, when ``pack`` and it saves work) with the prefix cache
    from ``start_layer``; the plain batch with the cache; the plain batch through the whole
    model. Each shortcut is checked against the full model (:func:`check_fast_path`) and the
    next candidate is used, with a warning, where it does not reproduce it.
    """
    import torch

    candidates = []
    if pack:
        packed = pack_batch(batch, model_dtype(model))
        if packed is not None:
            candidates.append((packed, start_layer, "packed prompts"))
    if start_layer:
        candidates.append((batch, start_layer, "prefix cache"))
    for candidate, start, what in candidates:
        try:
            fwd = Forward(model, candidate, start)
            if check_fast_path(model, batch, fwd):
                return fwd
            why = "does not reproduce the full model here"
        except torch.cuda.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, TypeError) as err:  # e.g. a kernel without 4-D masks
            why = f"fails here ({type(err).__name__}: {err})"
        warnings.warn(f"{what} {why}; trying the next slower path", stacklevel=2)
        fwd = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return Forward(model, batch, 0)
