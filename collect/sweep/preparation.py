"""Before a sweep trains: its directory and precision, the checks, the pending cells.

Everything here runs before any cell is claimed: a sweep with a wrong setting, a rank too large
for the model or a warm start without a source stops before it trains anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from collect.adapters import decoder_layers, parse_modules, resolve_layers, target_module_names
from collect.config import CellKey, SweepConfig
from collect.errors import CollectError
from collect.store import cell_path, open_verified, write_json_atomic
from collect.tasks import validate_task
from collect.warmstart import check_sources


def prepare_dir(config: SweepConfig, out_dir: Path) -> None:
    """Create the sweep directory, or check it belongs to this sweep's settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = out_dir / "sweep.json"
    # read once: a worker started beside this one may write the file between two looks
    old = json.loads(meta.read_text()) if meta.exists() else {}
    if old and old.get("fingerprint") != config.fingerprint():
        raise CollectError(
            f"{out_dir} holds a sweep collected with other training/data settings; "
            "resume only with the same [train]/[data] settings, or use another --out."
        )
    recorded = {"fingerprint": config.fingerprint(), **config.to_dict()}
    if "precision" in old:
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
