"""Run a sweep: every pending cell, grouped so each model and task is prepared once.

Resume is the default: a cell whose file exists (with the same settings) is never rerun.
Several processes started with the same arguments share the work: each claims the next cell
nobody holds (:func:`collect.store.claim_cell`), so ``collect run`` twice uses two cores.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from collect.adapters import decoder_layers, parse_modules, resolve_layers, target_module_names
from collect.config import CellKey, SweepConfig, config_from_dict
from collect.errors import CollectError
from collect.models import load_model
from collect.probe import run_cell
from collect.store import cell_path, claim_cell, merge, release_cell, save_dataset, write_cell
from collect.tasks import build_task, validate_task


def _group(key: CellKey) -> tuple:
    return (key.model, key.task, key.random_ratio, key.length)


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
    meta.write_text(json.dumps({"fingerprint": config.fingerprint(), **config.to_dict()}, indent=2))


def validate_for_model(config: SweepConfig, keys: Iterable[CellKey], loaded) -> None:
    """Run the checks that need the model (layers, module names, task sizes) before training."""
    for spec_text in sorted({k.modules for k in keys}):
        spec = parse_modules(spec_text)
        if spec.is_block:
            _, layers = decoder_layers(loaded.model)
            resolve_layers(spec, len(layers))
        else:
            target_module_names(loaded.model, spec)
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
    """Cells of the sweep (or of ``only``) that have no finished file yet."""
    keys = list(only) if only is not None else config.cells()
    todo = [k for k in keys if not cell_path(out_dir, k).exists()]
    if retry_failed:
        import xarray as xr

        for k in keys:
            path = cell_path(out_dir, k)
            if path.exists():
                with xr.open_dataset(path) as ds:
                    if str(ds["status"].values) != "ok":
                        todo.append(k)
    return todo


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    only: Iterable[CellKey] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    merge_to: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
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

    Returns
    -------
    xarray.Dataset or None
        The merged dataset when ``merge_to`` is given.
    """
    out_dir = Path(out_dir)
    prepare_dir(config, out_dir)
    # Config order is priority order: blocks listed first run first (a partial sweep is useful).
    index, n_shards = shard
    if not 0 <= index < n_shards:
        raise CollectError(f"shard must be i/n with 0 <= i < n, got {index}/{n_shards}.")
    keys = list(only) if only is not None else config.cells()
    mine = keys[index::n_shards]
    todo = pending_cells(config, out_dir, retry_failed=retry_failed, only=mine)
    redo = {k for k in todo if cell_path(out_dir, k).exists()}  # failed cells to retry
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    bar = tqdm(total=len(todo), disable=not progress, desc=config.name, unit="cell")
    for model_name, model_keys in itertools.groupby(todo, key=lambda k: k.model):
        model_keys = list(model_keys)
        bar.set_postfix_str(f"loading {model_name}")
        loaded = load_model(model_name, device=config.device, dtype=config.dtype)
        validate_for_model(config, model_keys, loaded)
        model = loaded.model
        for (_, task, ratio, length), group in itertools.groupby(model_keys, key=_group):
            entries = build_task(
                task,
                loaded.tokenizer,
                length,
                random_ratio=ratio,
                data_seed=config.data_seed,
                source=config.source_for(task),
            )
            for key in group:
                # another worker on this directory may have finished or taken it meanwhile
                done_elsewhere = key not in redo and cell_path(out_dir, key).exists()
                if done_elsewhere or not claim_cell(out_dir, key):
                    bar.update(1)
                    continue
                bar.set_postfix_str(f"{task} {key.method} r={key.rank} l={length} s={key.seed}")
                try:
                    result, model = run_cell(
                        model,
                        loaded.tokenizer,
                        entries,
                        task=task,
                        method=key.method,
                        modules=key.modules,
                        rank=key.rank,
                        seed=key.seed,
                        train=config.train,
                        device=loaded.device,
                    )
                    write_cell(out_dir, key, result, config.fingerprint())
                finally:
                    release_cell(out_dir, key)
                bar.update(1)
        del loaded, model
    bar.close()
    if merge_to is not None:
        ds = merge(config, out_dir)
        save_dataset(ds, merge_to)
        return ds
    return None


def run_chunk(config_dict: dict, out_dir: str, keys: list[dict]) -> int:
    """Entry point of one cluster job: run the given cells (plain data in, for pickling)."""
    config = config_from_dict(config_dict)
    cells = [CellKey(**k) for k in keys]
    run_sweep(config, out_dir, only=cells, progress=False)
    return len(cells)
