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

from collections.abc import Iterable
from pathlib import Path

from collect.batched import step_stats
from collect.config import CellKey, SweepConfig, config_from_dict
from collect.errors import CollectError
from collect.malloc import keep_freed_memory
from collect.progress import SweepProgress, warnings_above_bars
from collect.sharing import shared_dirs
from collect.store import (
    cell_path,
    claim_cell,
    copy_cell,
    merge,
    release_cell,
    save_dataset,
    state_path,
)
from collect.sweep.batching import AUTO_BATCH_TOKENS, Batching, check_batch_cells
from collect.sweep.checkpoints import discard_stale_checkpoints
from collect.sweep.extension import extension_plan, extension_source
from collect.sweep.preparation import (
    _check_warm_settings,
    _warm_dirs,
    check_precision,
    pending_cells,
    prepare_dir,
)
from collect.sweep.training import _Context, _copied_from_shared, _run_cells
from collect.timelimit import Deadline, TimeLimitReached


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
    batch_tokens: int = AUTO_BATCH_TOKENS,
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
    batch_tokens : int
        The batch tokens (prompts and targets) a ``batch_cells="auto"`` batch may hold on a GPU
        (:data:`collect.sweep.AUTO_BATCH_TOKENS`; :func:`run_workers` gives each of its
        processes an equal share).

    Returns
    -------
    xarray.Dataset or None
        The merged dataset when ``merge_to`` is given.
    """
    out_dir = Path(out_dir)
    keep_freed_memory()  # a bad COLLECT_MALLOC fails here, before anything trains
    batching = Batching(check_batch_cells(batch_cells), compile_step, batch_tokens)
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
    return merge_into(config, out_dir, merge_to)


def merge_into(config: SweepConfig, out_dir: Path, merge_to: str | Path | None):
    """Merge ``out_dir``'s finished cells and save them at ``merge_to``; None without it."""
    if merge_to is None:
        return None
    ds = merge(config, out_dir)
    save_dataset(ds, merge_to)
    return ds


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


def run_chunk(
    config_dict: dict, out_dir: str, keys: list[dict], extend_from: str | None = None
) -> int:
    """Entry point of one cluster job: run the given cells (plain data in, for pickling)."""
    config = config_from_dict(config_dict)
    cells = [CellKey(**k) for k in keys]
    run_sweep(config, out_dir, only=cells, progress=False, extend_from=extend_from)
    return len(cells)
