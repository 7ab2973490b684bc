"""Train several cells of one target side by side, in one batched forward and backward.

Cells that share a model, a task, a target (length, random_ratio, data seed) and the adapter
placement also share the frozen hidden states entering the adapted layer. This module trains
their adapters together: the batch is repeated once per cell, replica ``k`` runs through cell
``k``'s adapter, and one backward pass gives every cell its own gradient (the cells' parameters
are disjoint). Each cell keeps its own loss and objective, gradient clipping, AdamW state, stop
rule and measurements, exactly as :func:`collect.probe.run_cell` does them. Ranks may differ:
adapters are zero-padded to the largest rank inside the forward pass, which leaves each cell's
output and gradient unchanged. A cell that stops leaves the batch.

Scope: the paper's placement, one ``mlp_block`` adapter at a single layer, with the prefix
cache (the shared part); resuming, checkpoints and budget states are not supported here (use
:func:`collect.probe.run_cell` for those). The results equal separate runs up to
floating-point summation order (``tests/collect/test_batched.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collect.adapters import attach, decoder_layers, parse_modules, resolve_layers
from collect.errors import CollectError
from collect.objectives import LN2, make_objective
from collect.probe import (
    Batch,
    CellResult,
    Forward,
    TrainConfig,
    above_rising,
    lean_forward,
    make_batch,
    measure_after_training,
    plateaued,
    token_stats,
)
from collect.tasks import Entry


@dataclass(frozen=True)
class CellSpec:
    """What differs between cells trained together: objective, rank, initialisation seed."""

    method: str
    rank: int
    seed: int


def _stacked_block(mlp, params: list[tuple[Any, Any]]):
    """Return a module computing ``mlp(x) + B_k A_k x`` for replica ``k`` of the batch.

    ``params[k] = (A_k, B_k)`` with shapes ``(r_k, d)`` and ``(d, r_k)``; ``active`` lists the
    cells whose replicas the batch holds, in order. The delta is computed in the adapters'
    dtype, as :class:`collect.adapters.MLPBlockAdapter` does.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual name

    class _Stacked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = mlp
            self.params = params
            self.active = list(range(len(params)))

        def forward(self, x):
            rmax = max(self.params[k][0].shape[0] for k in self.active)
            a = torch.stack(
                [
                    F.pad(self.params[k][0], (0, 0, 0, rmax - self.params[k][0].shape[0]))
                    for k in self.active
                ]
            )  # (K, rmax, d)
            b = torch.stack(
                [
                    F.pad(self.params[k][1], (0, rmax - self.params[k][1].shape[1]))
                    for k in self.active
                ]
            )  # (K, d, rmax)
            xs = x.to(a.dtype).reshape(len(self.active), -1, x.shape[-1])
            delta = torch.bmm(torch.bmm(xs, a.transpose(1, 2)), b.transpose(1, 2))
            return self.inner(x) + delta.reshape(x.shape).to(x.dtype)

    return _Stacked()


def _initial_adapters(model, modules: str, cells: Sequence[CellSpec], train: TrainConfig):
    """Each cell's fresh adapter tensors, drawn exactly as :func:`collect.adapters.attach` does."""
    params = []
    for cell in cells:
        adapter = attach(model, modules, cell.rank, seed=cell.seed, lora_alpha=train.lora_alpha)
        a, b = (p.detach().clone().requires_grad_(True) for p in adapter.parameters)
        adapter.detach()
        params.append((a, b))
    return params


def _replicated(fwd: Forward, k: int) -> Forward:
    """Return a :class:`Forward` over ``k`` copies of ``fwd``'s batch, from the same layer."""
    import torch

    batch = fwd.batch
    rows, width = batch.input_ids.shape

    def rep(t):
        return None if t is None else t.repeat(k, *([1] * (t.dim() - 1)))

    offsets = [batch.pred_index + j * rows * width for j in range(k)]
    copies = Batch(
        rep(batch.input_ids),
        rep(batch.attention_mask),
        torch.cat(offsets),
        rep(batch.labels),
        batch.token_entry,
        batch.prompts,
        batch.targets,
        rep(batch.position_ids),
    )
    return Forward(fwd.model, copies, fwd.start_layer)


@dataclass
class _CellRun:
    """One cell's training loop state: the bookkeeping of :func:`collect.probe.run_cell`."""

    objective: Any
    train: TrainConfig
    result: CellResult
    history: list[float] = field(default_factory=list)
    curve_steps: list[int] = field(default_factory=list)
    loss_curve: list[float] = field(default_factory=list)
    frac_curve: list[float] = field(default_factory=list)
    done: bool = False

    def observe(self, step: int, losses, correct):
        """Log ``step``, apply the stop rules; return the weighted loss, or None if it stops."""
        train, detached = self.train, losses.detach()
        mean_loss = float(detached.mean())
        self.result.steps = step
        if not math.isfinite(mean_loss):
            self.result.status, self.result.stop_reason = "diverged", "non-finite loss"
            self.done = True
            return None
        self.history.append(mean_loss)
        if step % train.log_every == 0:
            self.curve_steps.append(step)
            self.loss_curve.append(mean_loss)
            self.frac_curve.append(float((detached < LN2).float().mean()))
        reason = self._stop_reason(step, detached)
        if reason:
            self.result.stop_reason, self.done = reason, True
            return None
        weights = self.objective.weights(detached, correct.detach(), step)
        return (weights * losses).sum() / weights.sum()

    def _stop_reason(self, step: int, losses) -> str:
        train = self.train
        if step == train.max_steps:
            return "budget"
        earliest = getattr(self.objective, "final_stage_start", 0)
        if step < earliest:
            return ""
        if train.stop_when_memorized and bool((losses < LN2).all()):
            return "memorized"
        if (
            self.objective.plateau_stop
            and plateaued(self.history[earliest:], train.patience, train.min_delta)
            and not above_rising(self.curve_steps, self.frac_curve, step, train.patience, earliest)
        ):
            return "plateau"
        return ""


def run_cells_batched(
    model,
    tokenizer,
    entries: list[Entry],
    *,
    task: str,
    modules: str,
    cells: Sequence[CellSpec],
    train: TrainConfig,
    device,
    pack: bool = True,
) -> list[CellResult]:
    """Train the adapters of ``cells`` on ``entries`` together and measure each.

    Parameters
    ----------
    model, tokenizer
        Frozen base model (left unchanged on return) and its tokenizer.
    entries : list of Entry
        The target every cell memorizes.
    task, modules : str
        Task name and the adapter placement: ``mlp_block@L`` at one layer.
    cells : sequence of CellSpec
        The cells: objective, rank and seed of each.
    train : TrainConfig
        Optimisation settings and stop rules (shared, as in a sweep).
    device : torch.device
        The model's device.
    pack : bool
        Pack entries around their shared prompt prefix where that reproduces the model.

    Returns
    -------
    list of CellResult
        One per cell, in order, as :func:`collect.probe.run_cell` would return it. Each
        ``wall_time`` is the batch's total time divided by the number of cells.
    """
    import torch

    spec = parse_modules(modules)
    _, layers = decoder_layers(model)
    chosen = resolve_layers(spec, len(layers)) if spec.is_block else ()
    if len(chosen) != 1 or not train.prefix_cache:
        raise CollectError(
            f"batched cells need one mlp_block adapter at a single layer and the prefix cache; "
            f"got modules={modules!r}, prefix_cache={train.prefix_cache}. Run these cells one "
            "by one (collect.probe.run_cell)."
        )
    if not cells:
        raise CollectError("no cells to train: give at least one CellSpec.")
    if train.schedule != "constant" or train.lora_dropout:
        raise CollectError(
            f"batched cells train with a constant learning rate and no dropout; got schedule="
            f"{train.schedule!r}, lora_dropout={train.lora_dropout}. Run these cells one by one "
            "(collect.probe.run_cell), which supports every protocol."
        )
    start = time.perf_counter()
    batch = make_batch(tokenizer, entries, device)
    params = _initial_adapters(model, modules, cells, train)
    fwd = lean_forward(model, batch, chosen[0], pack)
    if fwd.start_layer == 0:
        raise CollectError(
            "the prefix cache does not reproduce this model, so cells share nothing; "
            "run them one by one (collect.probe.run_cell)."
        )
    with torch.no_grad():
        loss0, p0, _ = token_stats(fwd.logits(), batch.labels)
    runs = []
    for cell, (a, b) in zip(cells, params, strict=True):
        result = CellResult(status="ok", token_entry=batch.token_entry)
        result.loss_before, result.p_before = float(loss0.mean()), p0.cpu().double().numpy()
        result.n_params = int(a.numel() + b.numel())
        result.prefix_cached, result.prompt_packed = True, fwd.batch is not batch
        objective = make_objective(
            cell.method,
            task=task,
            token_entry=batch.token_entry,
            max_steps=train.max_steps,
            seed=cell.seed,
        )
        runs.append(_CellRun(objective, train, result))
    optimizers = [
        torch.optim.AdamW([a, b], lr=train.lr, weight_decay=train.weight_decay) for a, b in params
    ]
    layer = layers[chosen[0]]
    original = layer.mlp
    stacked = _stacked_block(original, params)
    layer.mlp = stacked
    try:
        _train_together(runs, params, optimizers, stacked, fwd, batch, train)
        for k, run in enumerate(runs):
            stacked.active = [k]
            _measure(run, _replicated(fwd, 1), model, tokenizer, batch, device)
    finally:
        layer.mlp = original
    share = (time.perf_counter() - start) / len(runs)
    for run in runs:
        run.result.wall_time = share
    return [run.result for run in runs]


def _train_together(runs, params, optimizers, stacked, fwd, batch, train) -> None:
    """Run the shared loop: one forward and backward per step for every active cell."""
    import torch

    active, rep = None, None
    for step in range(train.max_steps + 1):
        now = [k for k, run in enumerate(runs) if not run.done]
        if not now:
            return
        if now != active:  # a cell stopped: the batch shrinks
            active, stacked.active = now, now
            rep = _replicated(fwd, len(now))
        logits = rep.logits().reshape(len(active), len(batch.labels), -1)
        total, stepping = None, []
        for j, k in enumerate(active):
            losses, _, correct = token_stats(logits[j], batch.labels)
            loss = runs[k].observe(step, losses, correct)
            if loss is not None:
                total = loss if total is None else total + loss
                stepping.append(k)
        if total is None:
            continue
        for k in stepping:
            optimizers[k].zero_grad(set_to_none=True)
        total.backward()
        for k in stepping:
            torch.nn.utils.clip_grad_norm_(params[k], train.grad_clip)
            optimizers[k].step()


def _measure(run: _CellRun, fwd: Forward, model, tokenizer, batch, device) -> None:
    """Record a cell's trajectory and its measurements after training (as run_cell does)."""
    result = run.result
    result.curve_steps = np.asarray(run.curve_steps)
    result.loss_curve = np.asarray(run.loss_curve)
    result.frac_above_curve = np.asarray(run.frac_curve)
    if result.status != "ok":
        return
    measure_after_training(result, fwd, model, tokenizer, batch, device)


__all__ = ["CellSpec", "run_cells_batched"]
