"""Run a sweep: every pending cell, grouped so each model and task is prepared once.

Resume is the default: a cell whose file exists (with the same settings) is never rerun.
Several processes started with the same arguments share the work: each claims the next cell
nobody holds (:func:`collect.store.claim_cell`), so ``collect run`` twice uses two cores.

Batched cells (``batch_cells``): the claimed cells that share a target and a single-layer
``mlp_block`` placement train together in one forward and backward
(:func:`collect.batched.run_cells_batched`, :func:`batch_units`); each is claimed,
checkpointed, resumed and written as a single cell is, so the cell files are the same.

Budget extension (``extend_from``): a sweep that differs from a finished one only by a larger
``[train] max_steps`` copies the old cells that stopped early (memorized, plateau), continues
the ones that stopped at the old budget from their saved training state, and runs the rest
from scratch. The result equals a direct run at the new budget; only the extra steps are paid.

Shared cells (``share_with``): cells another sweep directory with the same settings has
finished are copied, cells its workers are running are left to them (:mod:`collect.sharing`).
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collect.adapters import decoder_layers, parse_modules, resolve_layers, target_module_names
from collect.batched import CellSpec, batchable, run_cells_batched, step_stats
from collect.config import (
    CellKey,
    SweepConfig,
    config_from_dict,
    settings_differences,
    without_budget,
)
from collect.errors import CollectError
from collect.models import load_model
from collect.objectives import budget_dependent
from collect.probe import TrainConfig, run_cell
from collect.progress import SweepProgress, warnings_above_bars
from collect.sharing import (
    SharedDirs,
    adopt_checkpoint,
    claim_shared,
    copy_finished,
    finished_elsewhere,
    release_shared,
    shared_dirs,
)
from collect.store import (
    cell_path,
    cell_provenance,
    claim_cell,
    copy_cell,
    merge,
    now_utc,
    open_verified,
    read_cell,
    read_state,
    release_cell,
    save_dataset,
    state_path,
    write_cell,
    write_json_atomic,
    write_state,
)
from collect.tasks import build_task, target_entropy, validate_task
from collect.timelimit import Deadline, TimeLimitReached
from collect.warmstart import WarmSource, check_sources, find_source


def _group(key: CellKey) -> tuple:
    """Cells that train on the same targets (one task build serves them all)."""
    return (key.model, key.task, key.random_ratio, key.length, key.data_seed)


def prepare_dir(config: SweepConfig, out_dir: Path) -> None:
    """Create the sweep directory, or check it belongs to this sweep's settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = out_dir / "sweep.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("fingerprint") != config.fingerprint():
            raise CollectError(
                f"{out_dir} holds a sweep collected with other training/data settings; "
                "resume only with the same [train]/[data] settings, or use another --out."
            )
    recorded = {"fingerprint": config.fingerprint(), **config.to_dict()}
    if meta.exists() and "precision" in old:
        recorded["precision"] = old["precision"]
    write_json_atomic(meta, recorded)


def check_precision(out_dir: Path, precision: str) -> None:
    """Record the floating dtype a sweep directory's cells are computed in, or check it.

    ``[data] dtype`` unset means bf16 on a GPU and float32 on the CPU, so two workers on one
    directory (a GPU node and a CPU node, say) would silently mix precisions under one
    fingerprint. The first worker records its dtype in ``sweep.json``; a worker that would
    compute in another one stops before training anything.
    """
    meta = out_dir / "sweep.json"
    recorded = json.loads(meta.read_text())
    have = recorded.get("precision")
    if have is None:
        write_json_atomic(meta, {**recorded, "precision": precision})
    elif have != precision:
        raise CollectError(
            f"{out_dir}'s cells are computed in {have}, but this worker's model loads in "
            f"{precision}. Mixing them would put two precisions under one sweep; set "
            f'[data] dtype = "{have}" (or --out another directory) to run here.'
        )


#: old cells that stopped before their budget: a larger budget would stop them the same way
#: ("written": a carrier written without training, such as the Memory³ sparse KV memory)
EARLY_STOPS = ("memorized", "plateau", "converged", "written")


@dataclass(frozen=True)
class ExtensionSource:
    """A sweep directory whose cells a sweep with a larger step budget builds on."""

    out_dir: Path
    fingerprint: str  # the old cells' fingerprint
    max_steps: int  # the old budget


def extension_source(
    config: SweepConfig, old_dir: str | Path, out_dir: str | Path | None = None
) -> ExtensionSource:
    """Check that ``config`` may extend the sweep in ``old_dir`` (nothing trains or is written).

    Every training and data setting must equal the old sweep's, except the budget: ``[train]
    max_steps`` may grow, and the lr schedule may change where it gives every step the old
    sweep ran the old lr (a constant run continued under ``cooldown`` whose constant phase
    covers the old budget; :func:`check_same_lr`). The grid may differ: cells the old sweep
    lacks run from scratch.

    Raises
    ------
    CollectError
        If ``old_dir`` holds no sweep, is ``out_dir`` itself, its settings differ (the
        message names each differing setting), or its lr differs at a step it ran.
    """
    old_dir = Path(old_dir)
    meta = old_dir / "sweep.json"
    if not meta.exists():
        raise CollectError(
            f"--extend-from {old_dir}: no sweep.json there; give a directory that "
            "`collect run` wrote."
        )
    if out_dir is not None and Path(out_dir).resolve() == old_dir.resolve():
        raise CollectError(
            f"--extend-from {old_dir} is the output directory itself; write the extended sweep "
            "to a new --out directory (the old one stays as it is)."
        )
    old = json.loads(meta.read_text())
    old_settings = {name: old.get(name) for name in config.settings()}
    diffs = settings_differences(without_budget(old_settings), without_budget(config.settings()))
    if diffs:
        raise CollectError(
            f"cannot extend {old_dir}: only [train] max_steps and the schedule may change, but "
            "these settings "
            "differ:\n  " + "\n  ".join(diffs) + "\nUse the old sweep's settings, or run "
            "without --extend-from."
        )
    old_budget = int(old_settings["train"]["max_steps"])
    if config.train.max_steps < old_budget:
        raise CollectError(
            f"cannot extend {old_dir}: [train] max_steps = {config.train.max_steps} is smaller "
            f"than its budget {old_budget}; extension only raises the budget."
        )
    old_train = TrainConfig(**old_settings["train"])
    check_same_lr(old_train, config.train, old_dir)
    check_same_stops(old_train, config.train, old_dir)
    return ExtensionSource(old_dir, str(old["fingerprint"]), old_budget)


def check_same_lr(old: TrainConfig, new: TrainConfig, old_dir: str | Path) -> None:
    """Refuse to extend ``old`` by ``new`` unless each step ``old`` ran has the same lr.

    Continuing an old cell from its saved state equals a direct run only if the direct run
    would have taken the old run's steps: the same lr at every step below the old budget.
    ``plateau_decay`` is refused outright (its lr depends on when the plateaus came).

    Raises
    ------
    CollectError
        Naming the first step where the two schedules' lr differ.
    """
    if "plateau_decay" in (old.schedule, new.schedule):
        raise CollectError(
            f"cannot extend {old_dir} under schedule 'plateau_decay': its lr depends on when the "
            "plateaus came, so a continued run is not the run a larger budget gives. Run the "
            "sweep from scratch instead."
        )
    step = next((s for s in range(old.max_steps) if old.lr_at(s) != new.lr_at(s)), None)
    if step is not None:
        raise CollectError(
            f"cannot extend {old_dir}: its cells ran step {step} at lr {old.lr_at(step):g} "
            f"(schedule {old.schedule!r}, max_steps {old.max_steps}), but this sweep's schedule "
            f"({new.schedule!r}, max_steps {new.max_steps}) gives that step lr "
            f"{new.lr_at(step):g}, so a continued run is not the run this sweep describes. "
            "Extension works from a constant-lr sweep to a larger constant budget, or to a "
            "'cooldown' schedule whose constant phase (max_steps - cooldown_steps) covers the "
            f"old budget of {old.max_steps}; otherwise run the sweep from scratch."
        )


def check_same_stops(old: TrainConfig, new: TrainConfig, old_dir: str | Path) -> None:
    """Refuse to extend ``old`` by ``new`` when the convergence stop could fire in its steps.

    An old cell ran to its budget without the new sweep's convergence stop; continuing it
    equals a direct run only if that stop could not have fired before the old budget, i.e.
    ``new.converge_from`` is off or at least the old ``max_steps`` (and the old sweep had the
    same stop, or none).

    Raises
    ------
    CollectError
        Saying which ``converge_from`` would make the extension valid.
    """
    same = (old.converge_from, old.converge_tol, old.converge_window) == (
        new.converge_from,
        new.converge_tol,
        new.converge_window,
    )
    fires_after_old_budget = not new.converge_from or new.converge_from >= old.max_steps
    if same or (not old.converge_from and fires_after_old_budget):
        return
    raise CollectError(
        f"cannot extend {old_dir}: its cells ran under converge_from {old.converge_from} "
        f"(tol {old.converge_tol}, window {old.converge_window}) and a budget of "
        f"{old.max_steps}, this sweep's convergence stop is converge_from {new.converge_from} "
        f"(tol {new.converge_tol}, window {new.converge_window}), which could have stopped "
        "them elsewhere, so a continued run is not the run this sweep describes. Keep the old "
        f"stop, or add one from converge_from >= {old.max_steps} to a sweep without one; "
        "otherwise run the sweep from scratch."
    )


def extension_plan(source: ExtensionSource, keys: Iterable[CellKey]) -> dict[CellKey, str]:
    """Say how each cell is obtained from ``source``: ``copy``, ``resume`` or ``scratch``.

    ``copy``: the old cell stopped before its budget (memorized, plateau) and its objective does
    not depend on the budget, so a larger budget stops it the same way. ``resume``: it stopped
    at the old budget and left a state file. ``scratch``: anything else (missing, not ``ok``,
    MemFT-SW on PhoneBook, no state file).
    """
    plan = {}
    for key in keys:
        plan[key] = "scratch"
        if budget_dependent(key.method, key.task):
            continue
        old = read_cell(source.out_dir, key, source.fingerprint)
        if old is None or str(old["status"].values) != "ok":
            continue
        reason = old.attrs.get("stop_reason")
        if reason in EARLY_STOPS:
            plan[key] = "copy"
        elif reason == "budget" and _state_dir(source.out_dir, key, old.attrs) is not None:
            plan[key] = "resume"
    return plan


def _state_dir(out_dir: Path, key: CellKey, attrs: dict) -> Path | None:
    """Where the old cell's saved state is: its own directory, or the one it was copied from.

    A cell shared from another sweep (``--share-cells-with``, attribute ``copied_from``) left
    its state file where it trained; the cell is the same computation, so is the state.
    """
    folders = [out_dir]
    if attrs.get("copied_from"):
        folders.append(out_dir / str(attrs["copied_from"]))
    return next((folder for folder in folders if state_path(folder, key).exists()), None)


def _resume_state(source: ExtensionSource, config: SweepConfig, key: CellKey) -> dict | None:
    """Read the old cell's saved state if it fits this sweep; None (run from scratch) if not."""
    old = read_cell(source.out_dir, key, source.fingerprint)
    folder = _state_dir(source.out_dir, key, old.attrs if old is not None else {})
    payload = read_state(folder, key) if folder is not None else None
    meta = payload["meta"] if payload else {}
    if (
        payload is None
        or meta.get("fingerprint_without_budget") != config.fingerprint_without_budget()
        or int(payload["state"].get("step", -1)) != source.max_steps
    ):
        warnings.warn(
            f"{state_path(folder or source.out_dir, key)} is unreadable or belongs to other "
            "settings; "
            "running this cell from scratch",
            stacklevel=2,
        )
        return None
    return payload


def _partial_state(config: SweepConfig, out_dir: Path, key: CellKey) -> dict | None:
    """Return the checkpoint a killed run of this cell left, if it fits these settings."""
    path = state_path(out_dir, key, "partial")
    if not path.exists():
        return None
    payload = read_state(out_dir, key, "partial")
    if (
        payload is None
        or payload["meta"].get("fingerprint") != config.fingerprint()
        or int(payload["state"].get("step", -1)) > config.train.max_steps
    ):
        warnings.warn(
            f"{path} is unreadable or belongs to other settings; running this cell from its start",
            stacklevel=2,
        )
        return None
    return payload


def _checkpointer(config, out_dir, key, prior: float, extended) -> Callable | None:
    """Return the callback :func:`run_cell` calls with a state every ``checkpoint_minutes``."""
    if not config.checkpoint_minutes:
        return None
    return _state_writer(config, out_dir, key, prior, extended)


def _state_writer(config, out_dir, key, prior: float, extended) -> Callable:
    """Return a function that writes a running cell's training state as its checkpoint."""
    started = time.perf_counter()

    def save(state: dict) -> None:
        meta = {
            "fingerprint": config.fingerprint(),
            "wall_time": prior + time.perf_counter() - started,
        }
        if extended is not None:
            meta["extended_from"] = extended
        write_state(out_dir, key, state, meta, kind="partial")

    return save


def _check_ranks(model, spec, rank: int) -> None:
    """Refuse a LoRA rank above the rank of the matrices it adapts (min of their two sizes).

    A rank-r update ``B A`` of a ``d_out x d_in`` matrix has rank at most ``min(d_in, d_out)``:
    ranks beyond it add parameters, not capacity, and would put points past the law's rank
    axis.
    """
    if spec.is_block:  # parallel to the MLP block: hidden -> hidden
        full = int(model.config.hidden_size)
        where = f"a {full} x {full} map (the hidden size of {type(model).__name__})"
    else:
        modules = dict(model.named_modules())
        shapes = {n: tuple(modules[n].weight.shape) for n in target_module_names(model, spec)}
        name = min(shapes, key=lambda n: min(shapes[n]))
        full, where = min(shapes[name]), f"{name} ({shapes[name][0]} x {shapes[name][1]})"
    if rank > full:
        raise CollectError(
            f"modules spec {spec.text!r}: rank {rank} exceeds {full}, the largest rank an update "
            f"of {where} can have; its extra parameters add no capacity. Use ranks <= {full}."
        )


def validate_for_model(config: SweepConfig, keys: Iterable[CellKey], loaded) -> None:
    """Run the checks that need the model (layers, module names, task sizes) before training."""
    keys = list(keys)
    for spec_text in sorted({k.modules for k in keys}):
        spec = parse_modules(spec_text)
        if spec.is_block or spec.is_carrier:
            _, layers = decoder_layers(loaded.model)
            resolve_layers(spec, len(layers))
        if not spec.is_carrier:  # resolves (and so checks) a LoRA spec's module names too
            _check_ranks(loaded.model, spec, max(k.rank for k in keys if k.modules == spec_text))
    for task, ratio, length in sorted({(k.task, k.random_ratio, k.length) for k in keys}):
        validate_task(
            task, loaded.tokenizer, length, random_ratio=ratio, source=config.source_for(task)
        )


def pending_cells(
    config: SweepConfig,
    out_dir: Path,
    *,
    retry_failed: bool = False,
    only: Iterable[CellKey] | None = None,
) -> list[CellKey]:
    """Cells of the sweep (or of ``only``) that have no finished, whole file yet."""
    keys = list(only) if only is not None else config.cells()
    status = {}  # of the whole cell files; a damaged one is set aside, so it runs again
    for k in keys:
        path = cell_path(out_dir, k)
        if path.exists() and (ds := open_verified(path)) is not None:
            status[k] = str(ds["status"].values)
    todo = [k for k in keys if k not in status]
    if retry_failed:
        todo += [k for k in keys if status.get(k, "ok") != "ok"]
    return todo


def discard_stale_checkpoints(out_dir: Path, keys: Iterable[CellKey]) -> list[CellKey]:
    """Delete the checkpoints of finished cells; return the keys whose checkpoint went.

    A run writes a finished cell (atomically), then deletes its checkpoint: a kill between the
    two leaves both on disk. The cell file is complete, so the cell counts as finished and its
    checkpoint is stale. Cells still running have a checkpoint but no cell file: untouched.
    """
    stale = [
        k
        for k in keys
        if cell_path(out_dir, k).exists() and state_path(out_dir, k, "partial").exists()
    ]
    for key in stale:
        state_path(out_dir, key, "partial").unlink(missing_ok=True)
    return stale


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    only: Iterable[CellKey] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    merge_to: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
    extend_from: str | Path | None = None,
    deadline: Deadline | None = None,
    batch_cells: int | str = "auto",
    compile_step: bool | str = False,
    share_with: Iterable[str | Path] = (),
    warm_start_from: Iterable[str | Path] = (),
):
    """Run every pending cell of ``config`` into ``out_dir`` and optionally merge the dataset.

    Parameters
    ----------
    config : SweepConfig
        The validated sweep.
    out_dir : path
        Sweep directory (``sweep.json`` + ``cells/``); created if needed, resumed if present.
    only : iterable of CellKey, optional
        Run just these cells (used by the cluster launcher).
    retry_failed : bool
        Also rerun cells recorded as failed/diverged/oom.
    progress : bool
        Show a tqdm progress bar with ETA.
    merge_to : path, optional
        Write the merged NetCDF dataset there at the end.
    shard : (int, int)
        ``(i, n)``: run only the cells whose position in the sweep is ``i`` modulo ``n``, so
        ``n`` workers (processes, GPUs) can share one sweep directory.
    extend_from : path, optional
        A finished sweep directory with the same settings but a smaller or equal ``max_steps``
        (checked before anything runs, :func:`extension_source`). Its early-stopped cells are
        copied, its budget-stopped cells continue from their state files, and the rest run
        from scratch (:func:`extension_plan`); the cells record ``extended_from`` (the old
        budget) in their attributes.
    deadline : Deadline, optional
        A time limit (``collect run --time-limit``): once it has passed, no further cell is
        claimed, the running cell saves its checkpoint and stops (the next run continues it),
        and the cells finished so far are merged. Cells run in the sweep's order (block by
        block, by ``priority`` then as listed), so a cut-short run holds the first blocks'
        cells.
    batch_cells : int or "auto"
        Train up to this many cells of one target and placement together, in one batched
        forward and backward (:mod:`collect.batched`; ``mlp_block`` adapters at one layer);
        1 trains every cell on its own. ``"auto"`` batches on a GPU only
        (:func:`cells_per_batch`). The cells and their files are the same either way (up to
        floating-point summation order), so batched and unbatched runs share a directory.
    compile_step : bool or str
        Compile the batched cells' training step with ``torch.compile``
        (:func:`collect.batched.step_stats`): an opt-in for the GPU, off by default.
    share_with : iterable of path
        Other sweep directories collected under the same settings (checked before anything
        runs, :func:`collect.sharing.shared_dirs`): their finished cells are copied, not
        trained; cells their workers run are left to them; cells trained here are claimed
        there too, and a checkpoint they hold is resumed.
    warm_start_from : iterable of path
        Sweep directories searched, after ``out_dir``, for the rank-r // 2 adapters that the
        cells of a ``[train] warm_start = "half_rank"`` sweep start from
        (:mod:`collect.warmstart`); a cell whose source is nowhere and not pending in this run
        is refused before anything trains.

    Returns
    -------
    xarray.Dataset or None
        The merged dataset when ``merge_to`` is given.
    """
    out_dir = Path(out_dir)
    batching = Batching(check_batch_cells(batch_cells), compile_step)
    step_stats(compile_step)  # a bad value fails here, before anything trains
    source = None if extend_from is None else extension_source(config, extend_from, out_dir)
    warm_start_from = tuple(Path(d) for d in warm_start_from)
    _check_warm_settings(config, warm_start_from)
    prepare_dir(config, out_dir)
    shared = shared_dirs(config, share_with, out_dir)
    if shared.precision is not None:
        check_precision(out_dir, shared.precision)  # copied cells fix the precision here
    # Config order is priority order: blocks by `priority`, then as listed, run first.
    index, n_shards = shard
    if not 0 <= index < n_shards:
        raise CollectError(f"shard must be i/n with 0 <= i < n, got {index}/{n_shards}.")
    keys = list(only) if only is not None else config.cells()
    mine = keys[index::n_shards]
    todo = pending_cells(config, out_dir, retry_failed=retry_failed, only=mine)
    redo = {k for k in todo if cell_path(out_dir, k).exists()}  # failed cells to retry
    discard_stale_checkpoints(out_dir, [k for k in mine if k not in redo])
    plan = extension_plan(source, todo) if source is not None else {}
    warm_dirs = _warm_dirs(config, out_dir, warm_start_from, todo)
    if warm_dirs:  # sources first: rank r // 2 trains before rank r (stable: order kept)
        todo.sort(key=lambda k: k.rank)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    bar = SweepProgress(len(todo), f"{config.name} cells", enabled=progress)
    ctx = _Context(config, out_dir, redo, plan, source, bar, deadline, batching, shared, warm_dirs)
    with warnings_above_bars(bar.file):
        _run_pending(ctx, todo)
    bar.close()
    if merge_to is not None:
        ds = merge(config, out_dir)
        save_dataset(ds, merge_to)
        return ds
    return None


def _check_warm_settings(config: SweepConfig, given: tuple[Path, ...]) -> None:
    """Refuse warm-start settings that cannot apply (before the output directory is touched)."""
    if config.train.warm_start == "none" and given:
        raise CollectError(
            "--warm-start-from only applies to a sweep with [train] warm_start = "
            "'half_rank'; this one has warm_start = 'none'. Drop --warm-start-from or "
            "set warm_start in the sweep file."
        )
    if config.train.warm_start != "none" and config.train.lora_alpha is not None:
        raise CollectError(
            f"[train] warm_start = 'half_rank' needs lora_alpha unset (scaling 1 at every "
            f"rank); got lora_alpha = {config.train.lora_alpha}: the scaling alpha/r would "
            "change the source adapter's map when its rank doubles. Remove lora_alpha."
        )


def _warm_dirs(
    config: SweepConfig, out_dir: Path, given: tuple[Path, ...], todo: list[CellKey]
) -> tuple[Path, ...]:
    """Where warm starts are looked up; check every pending cell has a source (or none)."""
    if config.train.warm_start == "none":
        return ()
    dirs = (out_dir, *given)
    check_sources(todo, dirs, pending=todo)
    return dirs


def _run_pending(ctx: _Context, todo: list[CellKey]) -> None:
    """Copy, resume or train every cell of ``todo`` that no other worker holds."""
    config, out_dir, redo = ctx.config, ctx.out_dir, ctx.redo
    plan, source, bar = ctx.plan, ctx.source, ctx.bar
    # copied cells need no model: take them first
    for key in (k for k in todo if plan.get(k) == "copy"):
        done_elsewhere = key not in redo and cell_path(out_dir, key).exists()
        if not done_elsewhere and claim_cell(out_dir, key):
            try:
                state_path(out_dir, key).unlink(missing_ok=True)
                attrs = {"extended_from": source.max_steps, "extension": "copied"}
                copy_cell(
                    source.out_dir, out_dir, key, source.fingerprint, config.fingerprint(), attrs
                )
            finally:
                release_cell(out_dir, key)
        bar.skipped("copied")
    todo = [k for k in todo if plan.get(k) != "copy" and not _copied_from_shared(ctx, k)]
    try:
        _run_cells(ctx, todo)
    except TimeLimitReached:
        bar.stopped = ctx.deadline.reason
        bar.say(f"{config.name}: {ctx.deadline.reason}; stopped")
    # cells left to a shared directory's worker that it finished meanwhile join this merge
    late = [key for key in todo if _copied_from_shared(ctx, key, count=False)]
    if late:
        bar.say(f"{len(late)} cell(s) a shared directory finished meanwhile: copied")


#: ``batch_cells = "auto"`` on a GPU: cells per batch, and the target tokens a batch may hold
#: (one replica of the batch per cell). For SmolLM2 a target token costs about 1 MB in a
#: training step (float32 logits over 49,152 tokens, their log-softmax and gradient, and the
#: activations of the layers above the adapter), so 32,768 tokens take about 32 GB.
AUTO_BATCH_MAX_CELLS = 16
AUTO_BATCH_TOKENS = 32768


def check_batch_cells(batch_cells: int | str) -> int | str:
    """Return ``batch_cells`` if it is ``"auto"`` or an integer >= 1; raise CollectError if not."""
    ok = batch_cells == "auto" or (
        isinstance(batch_cells, int) and not isinstance(batch_cells, bool) and batch_cells >= 1
    )
    if not ok:
        raise CollectError(
            f"batch_cells must be 'auto' or an integer >= 1 (1: one cell at a time), got "
            f"{batch_cells!r}."
        )
    return batch_cells


def cells_per_batch(batch_cells: int | str, device, key: CellKey) -> int:
    """How many cells like ``key`` to train together on ``device`` (1: one by one).

    ``"auto"`` batches on a CUDA device only, as many cells as :data:`AUTO_BATCH_TOKENS`
    target tokens allow, at most :data:`AUTO_BATCH_MAX_CELLS`. On the CPU a batch of four
    SmolLM2-sized cells was only 1.11x faster than the cells one after another
    (``benchmarks/bench_batched.py``, ``benchmarks/GPU_RUN.md``), and one by one keeps new
    CPU cells bit-identical to the ones already collected.
    """
    if batch_cells != "auto":
        return int(batch_cells)
    if getattr(device, "type", str(device)) != "cuda":
        return 1
    return max(1, min(AUTO_BATCH_MAX_CELLS, AUTO_BATCH_TOKENS // max(key.length, 1)))


def _batch_group(key: CellKey) -> tuple:
    """Cells that can share one batch: same target and same adapter placement."""
    return (*_group(key), key.modules)


def batch_units(
    keys: list[CellKey], size_of: Callable[[CellKey], int], train: TrainConfig
) -> list[list[CellKey]]:
    """Split ``keys`` into the units that train together, in the order of their first cell.

    A unit is one cell, or up to ``size_of(first)`` cells of one batch group
    (:func:`_batch_group`) whose placement batches (:func:`collect.batched.batchable`): the
    first pending cell of a group takes the next cells of its group along, wherever in the
    sweep's order they are.
    """
    left, units = list(keys), []
    while left:
        first = left.pop(0)
        size = size_of(first)
        if size <= 1 or not batchable(first.modules, train):
            units.append([first])
            continue
        mates = [k for k in left if _batch_group(k) == _batch_group(first)][: size - 1]
        left = [k for k in left if k not in mates]
        units.append([first, *mates])
    return units


@dataclass(frozen=True)
class Batching:
    """How a sweep run batches cells: up to ``cells`` together, ``compile_step`` or not."""

    cells: int | str = 1
    compile_step: bool | str = False


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

        def size_of(key: CellKey, device=loaded.device) -> int:
            if ctx.warm_dirs:  # warm-started cells train one by one
                return 1
            return cells_per_batch(batching.cells, device, key)

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


def run_chunk(
    config_dict: dict, out_dir: str, keys: list[dict], extend_from: str | None = None
) -> int:
    """Entry point of one cluster job: run the given cells (plain data in, for pickling)."""
    config = config_from_dict(config_dict)
    cells = [CellKey(**k) for k in keys]
    run_sweep(config, out_dir, only=cells, progress=False, extend_from=extend_from)
    return len(cells)
