"""The worker machinery of one sweep run: claim a cell, train it (alone or batched), write it.

:func:`_run_cells` loads each model once, builds each target once and trains the claimed cells
with :func:`collect.probe.run_cell` or :func:`collect.batched.run_cells_batched`.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collect.adapters import parse_modules
from collect.batched import CellSpec, run_cells_batched
from collect.config import CellKey, SweepConfig
from collect.errors import CollectError
from collect.models import load_model
from collect.objectives import budget_dependent
from collect.preflight import batch_tokens
from collect.probe import run_cell
from collect.progress import SweepProgress
from collect.sharing import (
    SharedDirs,
    adopt_checkpoint,
    claim_shared,
    copy_finished,
    finished_elsewhere,
    release_shared,
)
from collect.store import (
    cell_path,
    cell_provenance,
    claim_cell,
    now_utc,
    release_cell,
    state_path,
    write_cell,
    write_state,
)
from collect.sweep.batching import Batching, _group, batch_units, cells_per_batch
from collect.sweep.checkpoints import _checkpointer, _partial_state, _state_writer
from collect.sweep.extension import ExtensionSource, _resume_state
from collect.sweep.preparation import check_precision, validate_for_model
from collect.tasks import build_task, target_entropy
from collect.timelimit import Deadline, TimeLimitReached
from collect.warmstart import WarmSource, find_source


@dataclass
class _Job:
    """A claimed cell about to train: how it resumes, where it checkpoints, its attributes."""

    key: CellKey
    resume: dict | None
    attrs: dict
    prior: float  # compute spent on the cell by earlier runs (seconds)
    extended: int | None
    save: Callable | None
    every: float
    first: int
    warm: WarmSource | None = None  # the adapter it starts from ([train] warm_start)


@dataclass
class _Context:
    """What every cell of one sweep run shares while it trains and is written."""

    config: SweepConfig
    out_dir: Path
    redo: set
    plan: dict
    source: ExtensionSource | None
    bar: SweepProgress
    deadline: Deadline | None
    batching: Batching
    shared: SharedDirs
    #: where rank-r // 2 sources are looked up (``[train] warm_start = "half_rank"``), or ()
    warm_dirs: tuple[Path, ...] = ()


@dataclass
class _Target:
    """A built target: the loaded model's entries and their entropy, with provenance."""

    loaded: Any
    task: str
    entries: list
    entropy: Any
    where: dict


def _copied_from_shared(ctx: _Context, key: CellKey, count: bool = True) -> bool:
    """Copy ``key`` if a shared directory finished it (claimed here meanwhile); say if done.

    ``count``: count the copy on the progress bar (False for a cell it already counted).
    """
    if not ctx.shared or key in ctx.redo or cell_path(ctx.out_dir, key).exists():
        return False
    source = finished_elsewhere(ctx.shared, key)  # read-only: claim only what is there
    if source is None or not claim_cell(ctx.out_dir, key):
        return False
    try:
        copy_finished(ctx.shared, source, ctx.out_dir, key)
    finally:
        release_cell(ctx.out_dir, key)
    if count:
        ctx.bar.skipped(f"copied from {source}")
    return True


def _release(ctx: _Context, key: CellKey) -> None:
    """Drop this process's claims on ``key``, here and in the shared directories."""
    release_cell(ctx.out_dir, key)
    release_shared(ctx.shared, key)


def _claim(ctx: _Context, key: CellKey) -> _Job | None:
    """Claim ``key`` and say how it runs; None (counted as skipped) if another worker has it."""
    config, out_dir = ctx.config, ctx.out_dir
    if _copied_from_shared(ctx, key):  # a shared directory's worker finished it meanwhile
        return None
    # another worker on this directory may have finished or taken it meanwhile
    done_elsewhere = key not in ctx.redo and cell_path(out_dir, key).exists()
    if done_elsewhere or not claim_cell(out_dir, key):
        ctx.bar.skipped("taken by another worker")
        return None
    if not claim_shared(ctx.shared, key):
        release_cell(out_dir, key)
        ctx.bar.skipped("running in a shared directory")
        return None
    try:
        if (source := adopt_checkpoint(ctx.shared, out_dir, key)) is not None:
            ctx.bar.say(f"{key.slug()}: resuming the checkpoint {source} holds")
        resume = _partial_state(config, out_dir, key)  # a killed run's checkpoint
        extended = resume["meta"].get("extended_from") if resume else None
        attrs = {"resumed_from_step": int(resume["state"]["step"])} if resume else {}
        if resume is None and ctx.plan.get(key) == "resume":
            resume = _resume_state(ctx.source, config, key)
            extended = ctx.source.max_steps if resume is not None else None
        # wall_time counts all the compute spent on the cell, over every run
        prior = float(resume["meta"].get("wall_time", 0.0)) if resume else 0.0
        save = _checkpointer(config, out_dir, key, prior, extended)
        every = 60.0 * (config.checkpoint_minutes or 0.0)
        if ctx.deadline is not None:  # the callback also stops the cell at the limit
            writer = _state_writer(config, out_dir, key, prior, extended)
            poll = ctx.deadline.poll_seconds  # the clock is read at least this often
            save, every = ctx.deadline.guard(writer, every), min(poll, every) if every else poll
    except BaseException:
        _release(ctx, key)
        raise
    first = int(resume["state"]["step"]) if resume else 0
    warm = None
    if ctx.warm_dirs:
        warm = find_source(key, ctx.warm_dirs)
        if warm is None and key.rank >= 2:  # its source failed, or another worker trains it
            _release(ctx, key)
            ctx.bar.skipped(f"no rank-{key.rank // 2} adapter to start from yet; run again later")
            return None
        attrs["warm_started_from"] = warm.provenance(ctx.out_dir) if warm else "none (rank 1)"
    return _Job(key, resume, attrs, prior, extended, save, every, first, warm)


def _record(ctx: _Context, target: _Target, job: _Job, result) -> None:
    """Write a trained cell (and its state file for a later budget extension); release it."""
    config, out_dir, key = ctx.config, ctx.out_dir, job.key
    result.wall_time += job.prior
    result.entropy_bits = target.entropy.bits
    attrs = dict(job.attrs)
    attrs.update(target.where, collected=now_utc(), entropy_basis=target.entropy.basis)
    attrs.update(protocol=json.dumps(config.settings()["train"]), lr_decays=result.lr_decays)
    if job.extended is not None:
        attrs.update(extended_from=job.extended, extension="resumed")
    if result.state is not None:
        meta = {
            "fingerprint_without_budget": config.fingerprint_without_budget(),
            "max_steps": config.train.max_steps,
            "wall_time": result.wall_time,
        }
        write_state(out_dir, key, result.state, meta)
    else:
        state_path(out_dir, key).unlink(missing_ok=True)
    write_cell(out_dir, key, result, config.fingerprint(), attrs)
    state_path(out_dir, key, "partial").unlink(missing_ok=True)
    _release(ctx, key)
    ctx.bar.end_cell(key, result)


def _keep_state(key: CellKey) -> bool:
    """Whether a cell stopped by its budget saves its state (for a later extension)."""
    return not budget_dependent(key.method, key.task)


def _bar_steps(ctx: _Context, key: CellKey) -> int:
    """Return the steps of a cell's progress bar: none for a memory written without training."""
    return ctx.config.train.max_steps if parse_modules(key.modules).is_trained else 0


def _train_one(ctx: _Context, target: _Target, job: _Job, model):
    """Train one claimed cell with :func:`run_cell` and write it; return the base model."""
    key = job.key
    try:
        on_step = ctx.bar.start_cell(key, _bar_steps(ctx, key), job.first)
        result, model = run_cell(
            model,
            target.loaded.tokenizer,
            target.entries,
            task=target.task,
            method=key.method,
            modules=key.modules,
            rank=key.rank,
            seed=key.seed,
            train=ctx.config.train,
            device=target.loaded.device,
            keep_state=_keep_state(key),
            resume=None if job.resume is None else job.resume["state"],
            pack=ctx.config.pack_prompts,
            checkpoint=job.save,
            checkpoint_every=job.every,
            progress=on_step,
            warm_start=job.warm.params if job.warm is not None and job.resume is None else None,
        )
        _record(ctx, target, job, result)
    finally:
        _release(ctx, key)
    return model


def _train_batch(ctx: _Context, target: _Target, jobs: list[_Job], model):
    """Train claimed cells of one batch group together and write each as it finishes.

    Cells the batch cannot run (out of memory together, or no shared prefix on this model)
    run one by one afterwards. Returns the base model.
    """
    written = set()

    def done(k: int, result) -> None:
        _record(ctx, target, jobs[k], result)
        written.add(k)

    try:
        run_cells_batched(
            model,
            target.loaded.tokenizer,
            target.entries,
            task=target.task,
            modules=jobs[0].key.modules,
            cells=[CellSpec(j.key.method, j.key.rank, j.key.seed) for j in jobs],
            train=ctx.config.train,
            device=target.loaded.device,
            pack=ctx.config.pack_prompts,
            keep_state=[_keep_state(j.key) for j in jobs],
            resume=[None if j.resume is None else j.resume["state"] for j in jobs],
            checkpoint=[j.save for j in jobs],
            checkpoint_every=min(j.every for j in jobs),
            progress=[ctx.bar.start_cell(j.key, _bar_steps(ctx, j.key), j.first) for j in jobs],
            on_done=done,
            compile_step=ctx.batching.compile_step,
        )
    except CollectError as err:
        ctx.bar.say(f"{len(jobs) - len(written)} cells run one by one instead: {err}")
        ctx.bar.close_cells([j.key for k, j in enumerate(jobs) if k not in written])
        for k, job in enumerate(jobs):
            if k not in written:
                model = _train_one(ctx, target, job, model)
    finally:
        for job in jobs:
            _release(ctx, job.key)
    return model


def _run_cells(ctx: _Context, todo: list[CellKey]) -> None:
    """Train the pending cells ``todo``; raise :class:`TimeLimitReached` at ``deadline``."""
    config, out_dir, bar = ctx.config, ctx.out_dir, ctx.bar
    deadline, batching = ctx.deadline, ctx.batching
    for model_name, model_keys in itertools.groupby(todo, key=lambda k: k.model):
        model_keys = list(model_keys)
        if deadline is not None and deadline.passed():  # no model loads after the limit
            raise TimeLimitReached
        bar.status(f"loading {model_name}")
        loaded = load_model(model_name, device=config.device, dtype=config.dtype)
        validate_for_model(config, model_keys, loaded)
        model = loaded.model
        where = cell_provenance(model, loaded.device)
        check_precision(out_dir, where["dtype"])
        targets: dict[tuple, _Target] = {}

        def size_of(key: CellKey, loaded=loaded) -> int:
            if ctx.warm_dirs:  # warm-started cells train one by one
                return 1
            tokens_of = functools.partial(batch_tokens, loaded, config=config)
            return cells_per_batch(batching.cells, loaded.device, key, batching.tokens, tokens_of)

        for unit in batch_units(model_keys, size_of, config.train):
            if deadline is not None and deadline.passed():
                raise TimeLimitReached
            group = _group(unit[0])
            if group not in targets:
                targets = {group: _build_target(config, loaded, unit[0], where)}
            target = targets[group]
            jobs = [job for key in unit if (job := _claim(ctx, key)) is not None]
            if not jobs:
                continue
            if len(unit) == 1:
                model = _train_one(ctx, target, jobs[0], model)
            else:
                model = _train_batch(ctx, target, jobs, model)
        del loaded, model


def _build_target(config: SweepConfig, loaded, key: CellKey, where: dict) -> _Target:
    """Build the entries every cell of ``key``'s group memorizes, with their entropy."""
    how = {
        "random_ratio": key.random_ratio,
        "data_seed": key.data_seed,
        "source": config.source_for(key.task),
    }
    entries = build_task(key.task, loaded.tokenizer, key.length, **how)
    entropy = target_entropy(key.task, loaded.tokenizer, entries, **how)
    return _Target(loaded, key.task, entries, entropy, where)
