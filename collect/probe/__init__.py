"""Train one adapter to memorize a task's targets and measure what it stored (one cell).

The lean path (DESIGN.md §5): with every adapted module at layer ``k`` or deeper, the hidden
states entering layer ``k`` never change during training (frozen base, fixed inputs), so they
are computed once per cell and each step runs only layers ``k..L-1``; the language-model head
is applied only at positions that predict a target token; entries whose prompts share a prefix
(a chat template's system prompt) are packed so that the prefix is computed once per row
(:mod:`collect.packing`). Each shortcut is verified against the full model once per cell
(:func:`check_fast_path`, :func:`lean_forward`), with a fall back to the slower path where an
architecture does not reproduce it.

A cell stopped by the step budget can hand back a resumable training state (adapter tensors,
AdamW moments, step, loss history, curves, objective state, RNG), and :func:`run_cell` can
continue from it: running to ``N`` steps, saving, and resuming to ``M`` steps gives the cell of
a direct run to ``M`` steps (DESIGN.md §5; ``collect run --extend-from``).

The package is laid out by responsibility; every name below is importable from
``collect.probe`` itself:

- ``settings``: :class:`TrainConfig`, the values its settings may take (:data:`SCHEDULES`,
  :data:`WARM_STARTS`, :data:`AUTOCASTS`), which enter a sweep's fingerprint
  (:data:`LATER_TRAIN_SETTINGS`, :func:`train_settings`), a training step's precision
  (:func:`training_precision`) and :data:`NEVER_EXACT` / :data:`UNKNOWN_EXACT`.
- ``batch``: the cell's :class:`Batch` (:func:`make_batch`, :func:`prompt_ids`).
- ``forward``: target-token logits, full or from a cached prefix (:class:`Forward`), its check
  against the model (:func:`check_fast_path`), the cheapest that passes
  (:func:`lean_forward`) and :func:`model_dtype`.
- ``measure``: per-token loss, probability and argmax (:func:`token_stats`), greedy decoding
  (:func:`greedy_decode`) and the measurements after training
  (:func:`measure_after_training`).
- ``result``: :class:`CellResult`, everything measured for one cell.
- ``stop_rules``: the stop rules' tests (:func:`plateaued`, :func:`converged`,
  :func:`above_rising`).
- ``state``: the resumable snapshot (:func:`training_state`, :func:`restore_state`).
- ``loop``: the training loop less its forward pass (:class:`CellLoop`).
- ``cell``: the driver, :func:`run_cell`.
"""

from collect.probe.batch import Batch, make_batch, prompt_ids
from collect.probe.cell import run_cell
from collect.probe.forward import Forward, check_fast_path, lean_forward, model_dtype
from collect.probe.loop import CellLoop
from collect.probe.measure import greedy_decode, measure_after_training, token_stats
from collect.probe.result import CellResult
from collect.probe.settings import (
    AUTOCASTS,
    LATER_TRAIN_SETTINGS,
    NEVER_EXACT,
    SCHEDULES,
    UNKNOWN_EXACT,
    WARM_STARTS,
    TrainConfig,
    train_settings,
    training_precision,
)
from collect.probe.state import restore_state, training_state
from collect.probe.stop_rules import above_rising, converged, plateaued

__all__ = [
    "AUTOCASTS",
    "LATER_TRAIN_SETTINGS",
    "NEVER_EXACT",
    "SCHEDULES",
    "UNKNOWN_EXACT",
    "WARM_STARTS",
    "Batch",
    "CellLoop",
    "CellResult",
    "Forward",
    "TrainConfig",
    "above_rising",
    "check_fast_path",
    "converged",
    "greedy_decode",
    "lean_forward",
    "make_batch",
    "measure_after_training",
    "model_dtype",
    "plateaued",
    "prompt_ids",
    "restore_state",
    "run_cell",
    "token_stats",
    "train_settings",
    "training_precision",
    "training_state",
]
