"""Checks ``collect plan`` (and ``run``) make before anything trains, and a cost estimate.

A config that ``plan`` accepts must not fail validation at ``run``: for every model of
the sweep this loads the tokenizer and the model's *config* (its modules on the meta
device, no weights; :func:`collect.models.load_skeleton`) and runs the same checks
``run`` runs after loading the weights (:func:`collect.sweep.validate_for_model`:
module names, layer indices, source files, texts long enough for the length). It then
estimates each cell's memory and compute and refuses a sweep whose largest cell
exceeds a ceiling.

The estimates are rough upper bounds, stated as such:

- memory = weights + the trainable state + activations kept for the backward pass +
  logits. The trainable state is counted exactly, by attaching the cell's adapter or carrier
  to the skeleton: its stored bytes four times while it trains (value, gradient and AdamW's
  two moments), once for a carrier written without training (sparse KV memory). It is small
  for the adapters of the shipped sweeps (18 KiB for rank 1 at ``mlp_block@20`` on
  SmolLM2) and not for wide ones (rank 64 on every linear layer: 298 MiB). Activations:
  ``layers x (16 hidden + 4 intermediate)`` values per token of the batch (attention
  and MLP inputs/outputs, norms, the MLP's gate/up products); logits: 3 float32
  values per batch token and vocabulary entry (logits, log-softmax, its gradient).
  Checked against one measurement (the tiny test model, PhoneBook l = 20000, 3 steps):
  the process's peak resident memory (``VmHWM``) grew by 0.98 GiB over l = 20; this formula
  gives 1.2 GiB (the slow test ``test_memory_estimate_bounds_a_measured_run`` re-measures
  it). On SmolLM2-135M (``benchmarks/memory_estimate.py``, one CPU thread, 3 steps) the
  estimate grew from a short target to a long one by 1.9x what the peak grew for the
  layer-20 block adapter (l = 64 -> 1,024), 4.8x on PhoneBook (its prompts get no logits)
  and 1.1x for memory tokens read before the sequence (the whole model every step): an
  upper bound, closest where nothing is cached. It leaves out the process itself (the
  interpreter, torch and their buffers: the peak of a cell at l = 64 was 0.4-0.5 GiB above
  its estimate).
- compute = ``6 x parameters x batch tokens`` FLOP per step (forward 2, backward 4)
  times ``max_steps`` (a cell stops earlier when memorized or on a plateau).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

from collect.config import CellKey, SweepConfig
from collect.errors import CollectError

#: Lengths up to which the phonebook's batch tokens are counted exactly; longer ones
#: are extrapolated linearly from this many target tokens (entries have equal shape).
SAMPLE_LENGTH = 512
_ACT_PER_HIDDEN = 16
_ACT_PER_INTERMEDIATE = 4
_LOGIT_FLOATS = 3
_FLOP_PER_PARAM_TOKEN = 6


@dataclass(frozen=True)
class CellEstimate:
    """Rough memory and compute of one cell (upper bounds; see the module docstring)."""

    key: CellKey
    batch_tokens: int
    memory_bytes: float
    flop: float


def default_ceiling(device: str | None) -> float:
    """Bytes one cell may use: the GPU's memory for a CUDA device, else the machine's RAM."""
    if device is None or device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                index = int(device.split(":")[1]) if device and ":" in device else 0
                return float(torch.cuda.get_device_properties(index).total_memory)
        except (ImportError, RuntimeError, ValueError):
            pass
    return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def batch_tokens(loaded, key: CellKey, config: SweepConfig) -> int:
    """Tokens of one training batch of ``key``: prompts + targets, before packing.

    Long-context cells hold one prompt and ``key.length`` target tokens; a PhoneBook batch
    holds a prompt per entry, about 4.5 tokens per target token on SmolLM2 (counted on
    :data:`SAMPLE_LENGTH` target tokens, then scaled).
    """
    from collect.probe import prompt_ids
    from collect.tasks import build_task

    sample = min(key.length, SAMPLE_LENGTH)
    entries = build_task(
        key.task,
        loaded.tokenizer,
        sample,
        random_ratio=key.random_ratio if key.task == "long_context" else 0.0,
        data_seed=key.data_seed,
        source=config.source_for(key.task),
    )
    prompts = sum(len(prompt_ids(loaded.tokenizer, e.key)) for e in entries)
    if key.task == "long_context":  # one prompt, then the whole text
        return prompts + key.length
    return round((prompts + sample) * key.length / sample)


def _model_sizes(loaded) -> dict[str, int]:
    cfg = loaded.model.config
    hidden = int(cfg.hidden_size)
    return {
        "params": sum(p.numel() for p in loaded.model.parameters()),
        "layers": int(cfg.num_hidden_layers),
        "hidden": hidden,
        "intermediate": int(getattr(cfg, "intermediate_size", None) or 4 * hidden),
        "vocab": int(cfg.vocab_size),
    }


def trainable_state_bytes(loaded, modules: str, rank: int) -> int:
    """Bytes the cell's own adapter or carrier holds while it is written.

    Attaches it to ``loaded``'s skeleton (meta device: shapes, no memory) and reads its exact
    stored bytes (:attr:`collect.adapters.Adapter.n_bytes`), times four for a trained one
    (value, gradient, AdamW's two moments, each at the stored precision), once for one
    written without training. The skeleton is left as it was.
    """
    from collect.adapters import attach, parse_modules

    adapter = attach(loaded.model, modules, rank, seed=0, tokenizer=loaded.tokenizer)
    try:
        stored = adapter.n_bytes
    finally:
        loaded.model = adapter.detach()
    return stored * (4 if parse_modules(modules).is_trained else 1)


def estimate_cell(
    loaded, key: CellKey, config: SweepConfig, state_bytes: int | None = None
) -> CellEstimate:
    """Estimate one cell's peak memory and training compute on ``loaded``'s model.

    ``state_bytes`` is the cell's :func:`trainable_state_bytes` when the caller has it
    (cells that share a placement and rank share it); else it is measured here.
    """
    import torch

    if state_bytes is None:
        state_bytes = trainable_state_bytes(loaded, key.modules, key.rank)
    sizes = _model_sizes(loaded)
    width = torch.finfo(loaded.dtype).bits // 8
    tokens = batch_tokens(loaded, key, config)
    per_token = sizes["layers"] * (
        _ACT_PER_HIDDEN * sizes["hidden"] + _ACT_PER_INTERMEDIATE * sizes["intermediate"]
    )
    memory = (
        sizes["params"] * width
        + state_bytes
        + tokens * per_token * width
        + tokens * sizes["vocab"] * _LOGIT_FLOATS * 4
    )
    flop = _FLOP_PER_PARAM_TOKEN * sizes["params"] * tokens * config.train.max_steps
    return CellEstimate(key=key, batch_tokens=tokens, memory_bytes=float(memory), flop=float(flop))


def preflight(
    config: SweepConfig, cells: list[CellKey], *, ceiling: float | None = None
) -> list[CellEstimate]:
    """Validate every cell against its model's config and estimate its cost; refuse too big.

    Parameters
    ----------
    config : SweepConfig
        The sweep.
    cells : list of CellKey
        Cells to check (e.g. the pending ones).
    ceiling : float, optional
        Bytes one cell may use (default :func:`default_ceiling` of ``[data] device``).

    Returns
    -------
    list of CellEstimate
        One per cell, in order.

    Raises
    ------
    CollectError
        Unknown model, bad module part or layer, missing source, a text too short for
        the length (the checks ``run`` makes), or a cell estimated above ``ceiling``.
    """
    from collect.models import load_skeleton
    from collect.sweep import validate_for_model

    ceiling = default_ceiling(config.device) if ceiling is None else float(ceiling)
    out: list[CellEstimate] = []
    for model_name, keys in itertools.groupby(cells, key=lambda k: k.model):
        keys = list(keys)
        loaded = load_skeleton(model_name, dtype=config.dtype)
        validate_for_model(config, keys, loaded)
        states = {
            placement: trainable_state_bytes(loaded, *placement)
            for placement in sorted({(k.modules, k.rank) for k in keys})
        }
        out += [estimate_cell(loaded, k, config, states[k.modules, k.rank]) for k in keys]
    too_big = [e for e in out if e.memory_bytes > ceiling]
    if too_big:
        worst = max(too_big, key=lambda e: e.memory_bytes)
        raise CollectError(
            f"{len(too_big)} cell(s) are estimated above the memory ceiling of "
            f"{ceiling / 2**30:.1f} GiB, the largest {worst.key.slug()} at "
            f"{worst.memory_bytes / 2**30:.1f} GiB ({worst.batch_tokens:,} batch tokens; a "
            "rough upper bound, measured against real cells in docs/collect.md). Lower the "
            "lengths, or raise the ceiling with --max-cell-memory GIB if the machine really "
            "has it."
        )
    return out


def summary(estimates: list[CellEstimate]) -> str:
    """One line: the cost and memory estimate of a list of cells."""
    if not estimates:
        return "estimate: nothing to run"
    peak = max(estimates, key=lambda e: e.memory_bytes)
    total = sum(e.flop for e in estimates)
    return (
        f"estimate (rough upper bound): {total:.3g} FLOP for {len(estimates)} cell(s) at "
        f"max_steps; largest cell {peak.memory_bytes / 2**30:.2f} GiB ({peak.key.slug()})"
    )


def check_args(value: Any) -> float | None:
    """``--max-cell-memory`` in GiB as bytes (None: the default ceiling)."""
    if value is None:
        return None
    if value <= 0:
        raise CollectError(f"--max-cell-memory must be a number of GiB > 0; got {value!r}.")
    return float(value) * 2**30
