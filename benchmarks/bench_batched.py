"""Cells one by one, cells batched, and worker processes: throughput of the same sweep.

Runs one small sweep (every rank x method x seed given, on each target sequence given) in
up to four ways, each into a fresh folder, in this one run:

separate  = ``collect run --batch-cells 1``: one process, one cell after another
batched   = ``collect run --batch-cells N``: one process, N cells of a target per batch
workers   = ``collect run --workers W --batch-cells 1``: W processes sharing the folder
            (optional; ``--workers 0`` skips it)
workers batched = ``collect run --workers W --batch-cells N``: W processes, each training its
            own batches (the GPU lease's way); with ``--data-seeds`` giving W or more targets,
            each worker has a batch to take

Every cell runs its whole step budget (no early stop), so each way does the same training.
For each it prints cells/hour and target-token-steps/s (every target token once per training
step, over the wall-clock time of the whole run, model loading included) and the ratios to
``separate``, and checks that the ways agree (largest ΔL difference between them).

    python benchmarks/bench_batched.py                                  # tiny random model
    python benchmarks/bench_batched.py --ranks 1 2 4 8 --methods sft memft_ot --workers 2
    python benchmarks/bench_batched.py --model smollm2 --modules mlp_block@20 --length 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # collect/ without an install

from collect.config import config_from_dict  # noqa: E402
from collect.store import cell_path  # noqa: E402
from collect.sweep import run_sweep  # noqa: E402


def sweep_dict(args: argparse.Namespace) -> dict:
    """The benchmark's sweep: one target, every rank x method x seed, the whole budget each."""
    return {
        "name": "bench-batched",
        "defaults": {
            "models": [args.model],
            "tasks": [args.task],
            "methods": args.methods,
            "modules": [args.modules],
            "ranks": args.ranks,
            "lengths": [args.length],
            "seeds": args.seeds,
            "data_seeds": args.data_seeds,
        },
        "train": {
            "max_steps": args.max_steps,
            "log_every": 10,
            "stop_when_memorized": False,
            "patience": 10**9,
        },
        "data": {"threads": args.threads, "checkpoint_minutes": 0},
    }


def throughput(config, out: Path, seconds: float) -> dict:
    """Cells/hour and target-token-steps/s of the finished cells in ``out`` over ``seconds``."""
    import xarray as xr

    cells, token_steps, gains = 0, 0, {}
    for key in config.cells():
        with xr.open_dataset(cell_path(out, key)) as cell:
            if str(cell["status"].values) != "ok":
                continue
            cells += 1
            token_steps += cell.sizes["token"] * int(cell["steps"])
            gains[key] = float(cell["loss_before"]) - float(cell["loss_after"])
    return {
        "cells": cells,
        "seconds": seconds,
        "cells_per_hour": 3600 * cells / seconds,
        "target_token_steps_per_s": token_steps / seconds,
        "delta_loss": gains,
    }


def run_in_process(config, out: Path, batch_cells: int) -> dict:
    """Run the sweep in this process with ``batch_cells``; return its throughput."""
    start = time.perf_counter()
    run_sweep(config, out, progress=False, batch_cells=batch_cells)
    return throughput(config, out, time.perf_counter() - start)


def run_workers(
    config, sweep_file: Path, out: Path, workers: int, threads: int, batch_cells: int = 1
) -> dict:
    """Run ``collect run --workers W --batch-cells N`` on one folder; return its throughput."""
    # keep the caller's path (the GPU lease puts the carried gguf wheel on it)
    path = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "collect", "run", str(sweep_file), "--out", str(out)]
    cmd += ["--workers", str(workers), "--batch-cells", str(batch_cells), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode:
        raise SystemExit(f"the workers failed:\n{proc.stderr.decode()[-2000:]}")
    return throughput(config, out, time.perf_counter() - start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--task", default="long_context")
    parser.add_argument("--modules", default="mlp_block@2", help="an mlp_block@L placement")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--methods", nargs="+", default=["sft", "memft_ot"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--data-seeds", nargs="+", type=int, default=[0], help="target sequences (one batch each)"
    )
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--batch-cells", type=int, default=8, help="cells per batch (batched)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return parser.parse_args(argv)


def report(name: str, res: dict, base: dict) -> None:
    """Print one way's throughput, its ratios to ``base`` (separate) and its largest ΔL gap."""
    diff = max(abs(res["delta_loss"][k] - base["delta_loss"][k]) for k in base["delta_loss"])
    speed = res["cells_per_hour"] / base["cells_per_hour"]
    rate = res["target_token_steps_per_s"] / base["target_token_steps_per_s"]
    print(
        f"{name:12s}: {res['cells']} cells in {res['seconds']:.1f} s: "
        f"{res['cells_per_hour']:.0f} cells/hour ({speed:.2f}x), "
        f"{res['target_token_steps_per_s']:.0f} target-token-steps/s ({rate:.2f}x); "
        f"max |ΔL - separate ΔL| = {diff:.2g} nats/token",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the ways and print each one's throughput and ratios as soon as it ends.

    A run cut short (the GPU lease runs this under ``timeout``) keeps the lines printed so far.
    """
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    raw = sweep_dict(args)
    config = config_from_dict(raw)
    n_cells = len(config.cells())
    print(
        f"sweep: {args.model} {args.task} {args.modules} length {args.length}, ranks "
        f"{args.ranks}, methods {args.methods}, seeds {args.seeds}: {n_cells} cells x "
        f"{args.max_steps} steps, {args.threads} thread(s) per process, torch "
        f"{torch.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_batched_") as tmp:
        tmp = Path(tmp)
        base = results["separate"] = run_in_process(config, tmp / "separate", 1)
        report("separate", base, base)
        name = f"batched x{args.batch_cells}"
        results[name] = run_in_process(config, tmp / "batched", args.batch_cells)
        report(name, results[name], base)
        if args.workers:
            sweep_file = tmp / "sweep.json"
            sweep_file.write_text(json.dumps(raw))
            # the lease's way first: under its `timeout` the lines printed so far are kept
            batched = f"{args.workers} workers batched x{args.batch_cells}"
            for batch, name in ((args.batch_cells, batched), (1, f"{args.workers} workers")):
                folder = tmp / name.replace(" ", "_")
                results[name] = run_workers(
                    config, sweep_file, folder, args.workers, args.threads, batch
                )
                report(name, results[name], base)
    if not all(np.isfinite(list(r["delta_loss"].values())).all() for r in results.values()):
        raise SystemExit("a cell's ΔL is not finite")


if __name__ == "__main__":
    main()
