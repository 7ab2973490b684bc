"""Train one adapter on a task's targets and measure it: one cell (:func:`run_cell`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from collect.adapters import attach
from collect.malloc import keep_freed_memory
from collect.objectives import make_objective
from collect.probe.batch import make_batch
from collect.probe.forward import lean_forward
from collect.probe.loop import CellLoop
from collect.probe.measure import measure_after_training, token_stats
from collect.probe.result import CellResult
from collect.probe.settings import TrainConfig, training_precision
from collect.tasks import Entry


def run_cell(
    model,
    tokenizer,
    entries: list[Entry],
    *,
    task: str,
    method: str,
    modules: str,
    rank: int,
    seed: int,
    train: TrainConfig,
    device,
    keep_state: bool = False,
    resume: dict | None = None,
    pack: bool = True,
    checkpoint: Callable[[dict], None] | None = None,
    checkpoint_every: float = 600.0,
    progress: Callable[[int, float, float], None] | None = None,
    warm_start: list | None = None,
) -> tuple[CellResult, Any]:
    """Train one adapter on ``entries`` and measure it.

    Returns the result and the base model (adapter removed), ready for the next cell. A cell
    whose loss turns NaN is ``diverged``; one that runs out of memory is ``oom``; any other
    exception is ``failed`` with its message. Failed cells still return a result.

    Parameters
    ----------
    model, tokenizer
        Frozen base model (the adapter is attached here and removed again) and its tokenizer.
    entries : list of Entry
        The task's targets.
    task, method, modules : str
        Task name, objective (``sft``/``memft_ot``/``memft_sw``) and adapter placement.
    rank, seed : int
        Adapter rank and the seed of its initialisation (and of MemFT-SW's curriculum).
    train : TrainConfig
        Optimisation settings and stop rules.
    device : torch.device
        Where the batch lives (the model's device).
    keep_state : bool
        When the cell stops because of the budget, put its resumable training state into
        ``result.state`` (see :func:`training_state`).
    resume : dict, optional
        A state from ``result.state`` of the same cell (same entries, method, modules, rank,
        seed and settings) with a budget of at most ``train.max_steps``: training continues from
        it instead of from step 0. The measurements before training are taken as usual.
    pack : bool, default True
        Pack entries whose prompts share a prefix (:mod:`collect.packing`) when that saves
        work and reproduces the model; a speed setting that does not change the cell's result
        beyond floating-point rounding (``result.prompt_packed`` says whether it was used).
    checkpoint : callable, optional
        Called with a :func:`training_state` snapshot at the top of a step whenever
        ``checkpoint_every`` seconds of training have passed since the last one, so that a
        killed run can continue from it (``resume``) instead of from step 0. A run resumed
        from a checkpoint ends with the cell of an uninterrupted run.
    checkpoint_every : float
        Seconds between checkpoints.
    progress : callable, optional
        Called once per logged step (every ``train.log_every`` steps) with the step, the mean
        target loss and the share of target tokens with p > 0.5, e.g. to drive a progress bar.
    warm_start : list of torch.Tensor, optional
        A smaller adapter's tensors (rank r // 2, same placement) copied into the leading
        slices of this one's after ``loss_before`` is measured
        (:func:`collect.warmstart.load_warm_start`); training starts there at step 0.

    Notes
    -----
    On glibc the first call raises the process's malloc thresholds, so that the large tensors
    of each step reuse the memory the last step freed (:func:`collect.malloc.keep_freed_memory`;
    the environment variable ``COLLECT_MALLOC=system`` leaves glibc's defaults).
    """
    import torch

    keep_freed_memory()
    start = time.perf_counter()
    batch = make_batch(tokenizer, entries, device)
    result = CellResult(status="ok", token_entry=batch.token_entry)
    adapter = attach(
        model,
        modules,
        rank,
        seed=seed,
        lora_alpha=train.lora_alpha,
        lora_dropout=train.lora_dropout,
        tokenizer=tokenizer,
    )
    result.n_params, result.n_bytes = adapter.n_params, adapter.n_bytes
    try:
        options = _RunOptions(keep_state, resume, pack, checkpoint, checkpoint_every, progress)
        _train_and_measure(
            model,
            tokenizer,
            batch,
            adapter,
            result,
            train,
            device,
            options,
            cell=(task, method, seed),
            warm_start=warm_start,
        )
    except torch.cuda.OutOfMemoryError as err:
        result.status, result.error = "oom", str(err)
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded, never dropped
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"
    finally:
        model = adapter.detach()
    result.wall_time = time.perf_counter() - start
    return result, model


@dataclasses.dataclass(frozen=True)
class _RunOptions:
    """How one cell runs, beside what it trains (see :func:`run_cell` for each)."""

    keep_state: bool = False
    resume: dict | None = None
    pack: bool = True
    checkpoint: Callable[[dict], None] | None = None
    checkpoint_every: float = 600.0
    progress: Callable[[int, float, float], None] | None = None


def _train_and_measure(
    model,
    tokenizer,
    batch,
    adapter,
    result: CellResult,
    train: TrainConfig,
    device,
    options: _RunOptions,
    *,
    cell: tuple[str, str, int],
    warm_start: list | None,
) -> None:
    """Measure before, write or train the adapter, measure after: fills ``result`` in place.

    ``cell`` is the cell's (task, method, seed), from which its objective is made.
    """
    import torch

    fwd = lean_forward(model, batch, adapter.first_layer if train.prefix_cache else 0, options.pack)
    result.prefix_cached = fwd.start_layer > 0
    result.prompt_packed = fwd.batch is not batch
    with torch.no_grad():
        loss0, p0, _ = token_stats(fwd.logits(), batch.labels)
    result.loss_before = float(loss0.mean())
    result.p_before = p0.cpu().double().numpy()
    if warm_start is not None:  # after loss_before: ΔL stays measured against the base model
        from collect.warmstart import load_warm_start

        load_warm_start(adapter.parameters, warm_start)
    written = getattr(adapter, "write", None) is not None  # a memory written, not trained
    if written:
        adapter.write(batch)
        train = dataclasses.replace(train, max_steps=0)
    task, method, seed = cell
    objective = make_objective(
        method, task=task, token_entry=batch.token_entry, max_steps=train.max_steps, seed=seed
    )
    state = _train(fwd, batch, adapter, result, train, device, options, objective)
    if written and result.status == "ok":
        result.stop_reason = "written"
    if result.status != "ok":
        return
    measure_after_training(result, fwd, model, tokenizer, batch, device)
    if result.stop_reason == "budget":
        result.state = state


def _train(fwd, batch, adapter, result, train, device, options, objective) -> dict | None:
    """Run the training loop until a stop rule or the budget ends it.

    Returns the loop's state on entering the last step of the budget when
    ``options.keep_state`` asks for it (else None), from which a larger budget resumes.
    """
    import torch

    optimizer = torch.optim.AdamW(adapter.parameters, lr=train.lr, weight_decay=train.weight_decay)
    loop = CellLoop(objective, train, result, adapter.parameters, optimizer)
    if options.resume is not None:
        loop.resume(options.resume)
    state = None
    last_checkpoint = time.perf_counter()
    for step in range(loop.first, train.max_steps + 1):
        if options.keep_state and step == train.max_steps:
            # the loop's state on entering the last step: resuming here under a larger budget
            # replays this step exactly as a direct run would (its stop rules included)
            state = loop.snapshot(step)
        due = time.perf_counter() - last_checkpoint >= options.checkpoint_every
        if options.checkpoint is not None and step > loop.first and due:
            options.checkpoint(loop.snapshot(step))
            last_checkpoint = time.perf_counter()
        with adapter.dropout_active(train.lora_dropout > 0), training_precision(train, device):
            # the argmax as far as needed: its all-correct step is when greedy recall first
            # became exact
            losses, _, correct = token_stats(fwd.logits(), batch.labels, loop.argmax_wanted)
        loss = loop.observe(step, losses, correct, options.progress)
        if loss is None:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.update()
    loop.finish()
    return state
