"""A cell's training settings (:class:`TrainConfig`) and what they may be set to.

Also which settings enter a sweep's fingerprint (:func:`train_settings`), the precision of a
training step's forward (:func:`training_precision`) and the ``first_exact_step`` values that
are not a step (:data:`NEVER_EXACT`, :data:`UNKNOWN_EXACT`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every cell of a sweep (same budget everywhere)."""

    lr: float = 1e-2
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_steps: int = 300
    log_every: int = 10
    patience: int = 50
    min_delta: float = 1e-3
    stop_when_memorized: bool = True
    prefix_cache: bool = True
    lora_alpha: float | None = None
    #: learning-rate schedule: ``constant``; ``linear`` (decay to 0 over ``max_steps``, no
    #: warm-up: the paper's); ``plateau_decay`` (constant until the plateau rule fires, then
    #: multiply the lr by ``decay_factor`` and continue, ``max_decays`` times, then stop);
    #: ``cooldown`` (constant, then linear decay to 0 over the last ``cooldown_steps``: the
    #: stable-then-decay schedule, whose constant phase is the constant run step for step)
    schedule: str = "constant"
    decay_factor: float = 0.1
    max_decays: int = 1
    cooldown_steps: int = 0
    #: dropout on the adapter's input during training steps (the paper: 0.1); never during
    #: the measurements (loss before/after, probabilities, greedy decoding)
    lora_dropout: float = 0.0
    #: where a rank-r cell starts: ``none`` (its fresh initialisation) or ``half_rank`` (the
    #: converged rank-r // 2 adapter of the same target, padded: :mod:`collect.warmstart`)
    warm_start: str = "none"
    #: the training steps' precision: ``none`` (the model's dtype throughout) or ``bfloat16``
    #: (the forward and backward of each training step under :func:`torch.autocast`: matrix
    #: products in bf16, while the residual stream, norms, softmax, the adapter, its gradient
    #: and the optimizer stay in the model's float32); measurements never run under it
    autocast: str = "none"
    #: the convergence stop (0: off): from this step on, a cell stops ("converged") once its
    #: best ΔL grew by at most ``converge_tol`` (relative) over its last ``converge_window``
    #: share of steps; ``max_steps`` is then the cap for cells that never get there
    converge_from: int = 0
    converge_tol: float = 0.01
    converge_window: float = 0.1

    def lr_at(self, step: int, decays: int = 0) -> float:
        """Learning rate of training step ``step`` after ``decays`` plateau decays."""
        if self.schedule == "linear":
            return self.lr * max(0.0, 1.0 - step / self.max_steps)
        if self.schedule == "plateau_decay":
            return self.lr * self.decay_factor**decays
        if self.schedule == "cooldown":
            return self.lr * min(1.0, (self.max_steps - step) / self.cooldown_steps)
        return self.lr


#: training settings added after cells were first collected, with the value every earlier cell
#: was trained with; a setting at that value is left out of a sweep's fingerprint, so the
#: fingerprints (and the cells) of earlier sweeps stay valid
LATER_TRAIN_SETTINGS = {
    "schedule": "constant",
    "decay_factor": 0.1,
    "max_decays": 1,
    "lora_dropout": 0.0,
    "warm_start": "none",
    "autocast": "none",
    "cooldown_steps": 0,
    "converge_from": 0,
    "converge_tol": 0.01,
    "converge_window": 0.1,
}
SCHEDULES = ("constant", "linear", "plateau_decay", "cooldown")
WARM_STARTS = ("none", "half_rank")
AUTOCASTS = ("none", "bfloat16")
#: ``first_exact_step`` values that are not a step: never reached; resumed from a snapshot
#: written before it was recorded, so not known (both NaN in a cell file)
NEVER_EXACT, UNKNOWN_EXACT = -1, -2


def training_precision(train: TrainConfig, device):
    """Context of one training step's forward: :func:`torch.autocast` per ``train.autocast``.

    Only the forward runs inside it; autograd replays the same precisions in the backward.
    """
    import torch

    if train.autocast == "none":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, train.autocast))


def train_settings(train: TrainConfig) -> dict[str, Any]:
    """Return the settings of ``train`` that define a cell's protocol (fingerprinted).

    Settings of :data:`LATER_TRAIN_SETTINGS` are left out at their earlier value, the
    decay settings unless the schedule is ``plateau_decay``, ``cooldown_steps`` unless
    it is ``cooldown``, and the convergence stop's tolerance and window while it is off.
    """
    out = dataclasses.asdict(train)
    if train.schedule != "plateau_decay":
        out.update({k: LATER_TRAIN_SETTINGS[k] for k in ("decay_factor", "max_decays")})
    if train.schedule != "cooldown":
        out["cooldown_steps"] = LATER_TRAIN_SETTINGS["cooldown_steps"]
    if not train.converge_from:
        out.update({k: LATER_TRAIN_SETTINGS[k] for k in ("converge_tol", "converge_window")})
    return {k: v for k, v in out.items() if LATER_TRAIN_SETTINGS.get(k, object()) != v}
