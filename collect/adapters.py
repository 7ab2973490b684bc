"""Place a trainable low-rank adapter on a frozen model, from a ``modules`` spec.

A spec reads ``PARTS@LAYERS``:

``PARTS``
    ``mlp`` (every linear map of the MLP), ``attn`` (every linear map of attention),
    ``attn+mlp``, explicit module names such as ``down_proj`` or ``q_proj+v_proj``, or
    ``mlp_block``: the paper's own placement, one rank-r adapter parallel to the whole MLP
    block (``y = MLP(x) + B A x``, exactly ``r * 2 * d`` parameters).
``LAYERS``
    a layer index (``20``; negative counts from the end), a comma list (``10,20``) or ``all``.

LoRA adapters come from peft; the block adapter is a small module defined here (peft has no
"parallel to a block" placement). Both start as an exact no-op (B = 0), so the base model's
token probabilities can be read with the adapter in place.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from collect.errors import CollectError

GROUPS = {"mlp": ("mlp", "feed_forward", "ffn"), "attn": ("attn", "attention")}
_SPEC = re.compile(r"^(?P<parts>[A-Za-z_][\w+]*)@(?P<layers>all|-?\d+(,-?\d+)*)$")
#: Kinds of carrier other than a weight delta (:mod:`collect.carriers`).
CARRIER_KINDS = ("memtok", "kv", "skv")


@dataclass(frozen=True)
class ModulesSpec:
    """A parsed ``modules`` spec: which parts, at which layers."""

    text: str
    parts: tuple[str, ...]
    layers: tuple[int, ...] | None  # None = all layers

    @property
    def is_block(self) -> bool:
        """Whether this is the paper's parallel MLP-block adapter."""
        return self.parts == ("mlp_block",)

    @property
    def is_trained(self) -> bool:
        """Whether the memory is written by training (all but the sparse KV memory, skv)."""
        return self.parts != ("skv",)

    @property
    def is_carrier(self) -> bool:
        """Whether this is a carrier other than a weight delta (:mod:`collect.carriers`)."""
        return len(self.parts) == 1 and self.parts[0] in CARRIER_KINDS


def parse_modules(text: str) -> ModulesSpec:
    """Parse a ``modules`` spec such as ``mlp@20``, ``attn+mlp@all`` or ``mlp_block@-10``.

    Raises
    ------
    CollectError
        If the text does not follow ``PARTS@LAYERS``.
    """
    from collect.carriers import parse_carrier

    carrier = parse_carrier(text)
    if carrier is not None:
        return carrier
    match = _SPEC.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise CollectError(
            f"modules spec {text!r} is not understood. Expected PARTS@LAYERS, e.g. 'mlp@20', "
            "'attn+mlp@all', 'q_proj+v_proj@10,20', the paper's block adapter 'mlp_block@20', "
            "or a carrier: memory tokens 'memtok:16' (entering layer 20: 'memtok:16@20'), a KV "
            "prefix 'kv:8@20', sparse KV memory 'skv:64@all'."
        )
    parts = tuple(match["parts"].split("+"))
    if "mlp_block" in parts and len(parts) > 1:
        raise CollectError(
            f"modules spec {text!r}: 'mlp_block' cannot be combined with other parts."
        )
    layers = None if match["layers"] == "all" else tuple(int(x) for x in match["layers"].split(","))
    return ModulesSpec(text=text.strip(), parts=parts, layers=layers)


def decoder_layers(model) -> tuple[str, Any]:
    """Find the decoder's list of transformer blocks: ``(qualified name, ModuleList)``."""
    import torch

    n_layers = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return name, module
    raise CollectError(
        f"could not find the decoder layers of {type(model).__name__} (a ModuleList of "
        f"config.num_hidden_layers={n_layers} blocks); this architecture is not supported."
    )


def _is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def resolve_layers(spec: ModulesSpec, n_layers: int) -> tuple[int, ...]:
    """Turn the spec's layer indices into sorted non-negative indices, checking the range."""
    if spec.layers is None:
        return tuple(range(n_layers))
    out = []
    for idx in spec.layers:
        real = idx + n_layers if idx < 0 else idx
        if not 0 <= real < n_layers:
            raise CollectError(
                f"modules spec {spec.text!r} names layer {idx}, but the model has {n_layers} "
                f"layers (valid: 0..{n_layers - 1} or -{n_layers}..-1)."
            )
        out.append(real)
    return tuple(sorted(set(out)))


def target_module_names(model, spec: ModulesSpec) -> list[str]:
    """Qualified names of the linear modules a LoRA spec adapts, validated against the model."""
    prefix, layers = decoder_layers(model)
    names: list[str] = []
    for i in resolve_layers(spec, len(layers)):
        block = layers[i]
        linears = [(n, m) for n, m in block.named_modules() if n and _is_linear(m)]
        for part in spec.parts:
            if part in GROUPS:
                hits = [n for n, _ in linears if any(g in n.split(".")[0] for g in GROUPS[part])]
            else:
                hits = [n for n, _ in linears if n.split(".")[-1] == part]
            if not hits:
                known = sorted({n.split(".")[-1] for n, _ in linears})
                raise CollectError(
                    f"modules spec {spec.text!r}: no module matches {part!r} in layer {i} of "
                    f"{type(model).__name__}. Use 'mlp', 'attn', 'mlp_block' or one of {known}."
                )
            names += [f"{prefix}.{i}.{n}" for n in hits]
    return sorted(set(names))


class MLPBlockAdapter:
    """Factory for the paper's adapter: a rank-r map parallel to a whole MLP block."""

    @staticmethod
    def wrap(mlp, hidden: int, rank: int, dropout: float = 0.0):
        """Return a module computing ``mlp(x) + B(A(drop(x)))`` with ``B`` initialised to zero.

        ``drop`` is dropout with probability ``dropout``, active only in training mode (the
        module starts in eval mode; :meth:`Adapter.dropout_active` switches it).
        """
        import torch

        class _Parallel(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = mlp
                ref = next(mlp.parameters())
                self.lora_A = torch.nn.Linear(hidden, rank, bias=False, device=ref.device)
                self.lora_B = torch.nn.Linear(rank, hidden, bias=False, device=ref.device)
                self.lora_dropout = torch.nn.Dropout(dropout)
                torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
                torch.nn.init.zeros_(self.lora_B.weight)
                self.eval()

            def forward(self, x):
                x_in = self.lora_dropout(x.to(self.lora_A.weight.dtype))
                delta = self.lora_B(self.lora_A(x_in))
                return self.inner(x) + delta.to(x.dtype)

        return _Parallel()


@dataclass
class Adapter:
    """An adapter attached to a model; :meth:`detach` restores the plain base model."""

    model: Any  # the base model object (adapter layers injected in place)
    spec: ModulesSpec
    rank: int
    first_layer: int
    parameters: list = field(default_factory=list)
    _undo: Any = None
    #: the adapter's dropout modules (eval mode except inside :meth:`dropout_active`)
    dropouts: list = field(default_factory=list)

    @property
    def n_params(self) -> int:
        """Exact number of trainable parameters."""
        return int(sum(p.numel() for p in self.parameters))

    @property
    def n_bytes(self) -> int:
        """Exact bytes of the trainable state at storage precision.

        Σ numel × element size over :attr:`parameters`, in the dtype they are held and trained
        in: float32 for LoRA and the block adapter whatever the model's dtype (peft keeps
        adapter weights in float32; the block adapter's own layers are float32), the model's
        dtype for carriers (:mod:`collect.carriers`; for sparse KV memory, the kept keys and
        values).
        """
        return int(sum(p.numel() * p.element_size() for p in self.parameters))

    def detach(self) -> Any:
        """Remove the adapter and return the unmodified base model."""
        return self._undo()

    @contextlib.contextmanager
    def dropout_active(self, active: bool = True) -> Iterator[None]:
        """Switch the adapter's dropout on inside the block (training steps only).

        The base model's own modules keep their mode: only the adapter's dropout changes.
        """
        for module in self.dropouts:
            module.train(active)
        try:
            yield
        finally:
            for module in self.dropouts:
                module.eval()


def attach(
    model,
    spec: ModulesSpec | str,
    rank: int,
    *,
    seed: int,
    lora_alpha: float | None = None,
    lora_dropout: float = 0.0,
    tokenizer=None,
):
    """Attach a fresh adapter of ``rank`` to ``model`` (initialised from ``seed``).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Frozen base causal LM.
    spec : ModulesSpec or str
        Where the adapter sits (see module docstring).
    rank : int
        LoRA rank r (> 0).
    seed : int
        Seed of the adapter's random initialisation.
    lora_alpha : float, optional
        LoRA scaling numerator; default ``rank`` (scaling 1), which keeps the effective learning
        rate independent of r.
    lora_dropout : float, default 0.0
        Dropout probability on the adapter's input during training steps (the paper: 0.1).
    tokenizer : transformers tokenizer, optional
        The model's tokenizer, read by carriers that start from real text (``kv:m@k``).

    Returns
    -------
    Adapter
    """
    import torch

    spec = parse_modules(spec) if isinstance(spec, str) else spec
    if spec.is_carrier:
        from collect.carriers import attach_carrier

        return attach_carrier(model, spec, rank, seed=seed, tokenizer=tokenizer)
    if not isinstance(rank, int) or rank <= 0:
        raise CollectError(f"rank must be a positive integer, got {rank!r}.")
    prefix, layers = decoder_layers(model)
    chosen = resolve_layers(spec, len(layers))
    torch.manual_seed(seed)
    if spec.is_block:
        hidden = model.config.hidden_size
        originals = {}
        for i in chosen:
            originals[i] = layers[i].mlp
            layers[i].mlp = MLPBlockAdapter.wrap(layers[i].mlp, hidden, rank, lora_dropout)
        params = [
            p for i in chosen for p in (layers[i].mlp.lora_A.weight, layers[i].mlp.lora_B.weight)
        ]
        dropouts = [layers[i].mlp.lora_dropout for i in chosen]

        def undo():
            for i, mlp in originals.items():
                layers[i].mlp = mlp
            return model

        return Adapter(model, spec, rank, chosen[0], params, undo, dropouts)

    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=float(rank if lora_alpha is None else lora_alpha),
        lora_dropout=float(lora_dropout),
        target_modules=target_module_names(model, spec),
        bias="none",
    )
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing`: a notice about their
        # versions, printed once per process (once per worker with --workers), not about the cell
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        peft_model = get_peft_model(model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    dropouts = [
        m
        for name, m in peft_model.named_modules()
        if "lora_dropout" in name and isinstance(m, torch.nn.Dropout)
    ]
    for module in dropouts:
        module.eval()

    def undo():
        base = peft_model.unload()
        for param in base.parameters():
            param.requires_grad_(False)
        return base

    return Adapter(model, spec, rank, chosen[0], params, undo, dropouts)
