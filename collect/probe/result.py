"""Everything measured for one cell (:class:`CellResult`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CellResult:
    """Everything measured for one cell (see the data contract, DESIGN.md §3)."""

    status: str
    loss_before: float = math.nan
    loss_after: float = math.nan
    exact_match: float = math.nan
    token_accuracy: float = math.nan
    steps: int = 0
    wall_time: float = math.nan
    n_params: int = 0
    #: bytes of the trainable state at storage precision (:attr:`collect.adapters.Adapter.n_bytes`);
    #: -1 where a path did not record it (the cell file then has no ``n_bytes``: merge derives it)
    n_bytes: int = -1
    stop_reason: str = ""
    error: str = ""
    prefix_cached: bool = False
    prompt_packed: bool = False
    #: plateau decays of the learning rate (``plateau_decay`` schedule)
    lr_decays: int = 0
    #: first training step at which every target token's teacher-forced argmax was correct,
    #: which is exactly when greedy decoding reproduces the target; ``NEVER_EXACT`` (-1) if
    #: never, ``UNKNOWN_EXACT`` (-2) if resumed from a snapshot that did not record it
    first_exact_step: int = -1
    p_before: np.ndarray = field(default_factory=lambda: np.zeros(0))
    p_after: np.ndarray = field(default_factory=lambda: np.zeros(0))
    greedy_correct: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: entropy of each target token's content in bits (:func:`collect.tasks.target_entropy`)
    entropy_bits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    token_entry: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    curve_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    loss_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frac_above_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: resumable training state of a cell stopped by the budget (``keep_state=True`` only)
    state: dict | None = None

    @property
    def loss_reduction(self) -> float:
        """ΔL = loss_before − loss_after (nats per target token)."""
        return self.loss_before - self.loss_after
