"""One cell's training loop less its forward pass (:class:`CellLoop`).

Logging, the stop rules, the learning rate and snapshots, shared by the single-cell loop
(:func:`collect.probe.run_cell`) and the batched one (:mod:`collect.batched`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collect.objectives import LN2
from collect.probe.result import CellResult
from collect.probe.settings import NEVER_EXACT, UNKNOWN_EXACT, TrainConfig
from collect.probe.state import restore_state, training_state
from collect.probe.stop_rules import above_rising, converged, plateaued


@dataclass
class CellLoop:
    """One cell's training loop, less its forward pass: logging, stop rules, lr, snapshots.

    The single-cell loop (:func:`run_cell`) and the batched one
    (:func:`collect.batched.run_cells_batched`) both drive a cell through this class, so a
    cell's bookkeeping is the same wherever it trains. Per step: :meth:`observe` the per-token
    losses (log them, apply the stop rules and the plateau decay); unless it says stop, the
    caller back-propagates the loss it returns and calls :meth:`update`.

    Parameters
    ----------
    objective : object
        The cell's objective (:func:`collect.objectives.make_objective`).
    train : TrainConfig
        Optimisation settings and stop rules.
    result : CellResult
        Receives the stop reason, status and, at :meth:`finish`, the trajectory.
    params : list of torch.Tensor
        The adapter's trainable tensors.
    optimizer : torch.optim.Optimizer
        Their AdamW optimizer.
    """

    objective: Any
    train: TrainConfig
    result: CellResult
    params: list
    optimizer: Any
    history: list[float] = field(default_factory=list)
    curve_steps: list[int] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    frac_curve: list[float] = field(default_factory=list)
    first: int = 0
    step: int = 0
    #: first step whose teacher-forced argmax was correct at every target token
    #: (``NEVER_EXACT``: not yet; ``UNKNOWN_EXACT``: resumed from a snapshot without it)
    first_exact_step: int = -1
    decays: int = 0
    plateau_from: int = 0
    done: bool = False

    def __post_init__(self) -> None:
        self.plateau_from = getattr(self.objective, "final_stage_start", 0)

    def resume(self, state: dict) -> None:
        """Continue from a :meth:`snapshot` (the adapter tensors and optimizer are loaded)."""
        self.first = self.step = restore_state(
            state, self.params, self.optimizer, self.objective, self.train.max_steps
        )
        self.history = list(state["history"])
        self.curve_steps = list(state["curve_steps"])
        self.loss_curve = list(state["loss_curve"])
        self.frac_curve = list(state["frac_curve"])
        self.decays = int(state.get("decays", 0))
        # a snapshot written before it was recorded: the step may have passed unseen, so a
        # step seen from here would only be an upper bound; it stays unknown (NaN when stored)
        self.first_exact_step = int(state.get("first_exact_step", UNKNOWN_EXACT))
        self.plateau_from = int(state.get("plateau_from", self.plateau_from))

    def snapshot(self, step: int) -> dict:
        """Return the resumable state on entering ``step`` (see :func:`training_state`)."""
        curves = (self.curve_steps, self.loss_curve, self.frac_curve)
        state = training_state(
            step, self.params, self.optimizer, self.objective, self.history, curves
        )
        state.update(
            decays=self.decays,
            plateau_from=self.plateau_from,
            first_exact_step=self.first_exact_step,
        )
        return state

    @property
    def argmax_wanted(self) -> bool | str:
        """What the next step needs of the argmax (``token_stats``'s ``argmax``).

        Each token's hit where the objective reads them (``uses_argmax``); else only whether
        every token is a hit, until :attr:`first_exact_step` is found; after that, nothing.
        """
        if getattr(self.objective, "uses_argmax", True):
            return True
        return "all" if self.first_exact_step == NEVER_EXACT else False

    def observe(self, step: int, losses, correct, progress=None):
        """Log step ``step``'s per-token losses and apply the stop rules.

        ``correct`` is the teacher-forced argmax's hits, one per token, or one bool for all
        of them, or None, as :attr:`argmax_wanted` asks. They set :attr:`first_exact_step`
        (all hits: greedy decoding reproduces the target) and reach the objective only where
        it reads them (``objective.uses_argmax``).

        Returns
        -------
        torch.Tensor or None
            The objective's weighted loss to back-propagate, or None when the cell stops
            here (``result.stop_reason`` or ``result.status`` says why).
        """
        train, detached = self.train, losses.detach()
        self.step = step
        mean_loss = float(detached.mean())
        if not math.isfinite(mean_loss):
            self.result.status, self.result.stop_reason = "diverged", "non-finite loss"
            return self._stop()
        self.history.append(mean_loss)
        correct = None if correct is None else correct.detach()
        if correct is not None and self.first_exact_step == NEVER_EXACT and bool(correct.all()):
            self.first_exact_step = step
        if step % train.log_every == 0:
            self.curve_steps.append(step)
            self.loss_curve.append(mean_loss)
            self.frac_curve.append(float((detached < LN2).float().mean()))
            if progress is not None:
                progress(step, mean_loss, self.frac_curve[-1])
        reason = self._stop_reason(step, detached)
        if reason:
            self.result.stop_reason = reason
            return self._stop()
        for group in self.optimizer.param_groups:
            group["lr"] = train.lr_at(step, self.decays)
        if not getattr(self.objective, "uses_argmax", True):
            correct = None
        weights = self.objective.weights(detached, correct, step)
        return (weights * losses).sum() / weights.sum()

    def _stop(self) -> None:
        self.done = True
        return None

    def _stop_reason(self, step: int, losses) -> str:
        """Why the cell stops at ``step`` ("" to go on); a plateau may decay the lr instead."""
        train = self.train
        if step == train.max_steps:
            return "budget"
        if step < getattr(self.objective, "final_stage_start", 0):
            return ""
        if train.stop_when_memorized and bool((losses < LN2).all()):
            return "memorized"
        if (
            train.converge_from
            and step >= train.converge_from
            and converged(
                self.history, self.result.loss_before, train.converge_window, train.converge_tol
            )
        ):
            return "converged"
        if (
            self.objective.plateau_stop
            and plateaued(self.history[self.plateau_from :], train.patience, train.min_delta)
            and not above_rising(
                self.curve_steps, self.frac_curve, step, train.patience, self.plateau_from
            )
        ):
            if train.schedule != "plateau_decay" or self.decays >= train.max_decays:
                return "plateau"
            self.decays, self.plateau_from = self.decays + 1, step
        return ""

    def update(self) -> None:
        """Clip the adapter's gradient and take the optimizer step (after the backward pass)."""
        import torch

        torch.nn.utils.clip_grad_norm_(self.params, self.train.grad_clip)
        self.optimizer.step()

    def finish(self) -> None:
        """Record the trajectory in the result (after the last step)."""
        result = self.result
        result.steps = self.step
        result.lr_decays = self.decays
        result.first_exact_step = self.first_exact_step
        result.curve_steps = np.asarray(self.curve_steps)
        result.loss_curve = np.asarray(self.loss_curve)
        result.frac_above_curve = np.asarray(self.frac_curve)
