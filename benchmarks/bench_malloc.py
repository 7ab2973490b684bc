"""CPU training steps with freed memory kept in the heap against glibc's defaults.

``collect`` raises glibc's mmap and trim thresholds before a cell trains
(:mod:`collect.malloc`), so that the large tensors of a step (the logits over the vocabulary
and their gradient, the activations above the prefix cache) reuse the memory the last step
freed instead of mapping, faulting in and zeroing fresh pages. This script times the same
cell under both settings, each in its own process (the thresholds are process-wide),
alternating them ``--repeats`` times so that a machine's drift falls on both, and prints the
seconds per training step, their ratio, ΔL of each run (the allocator does not touch the
arithmetic, so they must agree to the bit) and each process's peak resident memory.

    python benchmarks/bench_malloc.py                          # rank 3, l = 512: ~4 min
    python benchmarks/bench_malloc.py --rank 1 --length 128 --steps 30
    python benchmarks/bench_malloc.py --task phonebook --modules memtok:2@20 --length 512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("system", "keep")  # COLLECT_MALLOC values: glibc's defaults, collect's


def _child(args: argparse.Namespace) -> None:
    """Train one cell for ``--steps`` steps; print its step times, ΔL and peak memory as JSON."""
    import resource

    import torch
    from step_timing import median_step_seconds, timed_cell

    from collect.models import load_model
    from collect.probe import TrainConfig
    from collect.tasks import build_task

    torch.set_num_threads(args.threads)
    lm = load_model(args.model, dtype="float32")
    ratio = 1.0 if args.task == "long_context" else 0.0
    entries = build_task(args.task, lm.tokenizer, args.length, random_ratio=ratio)
    train = TrainConfig(max_steps=args.steps, prefix_cache=True, log_every=1, lr=args.lr)
    result, _, stamps = timed_cell(
        lm.model,
        lm.tokenizer,
        entries,
        task=args.task,
        modules=args.modules,
        rank=args.rank,
        train=train,
        device=lm.device,
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "step_s": median_step_seconds(stamps),
                "dL": result.loss_reduction,
                "status": result.status,
                "peak_mib": peak_mib,
            }
        )
    )


def _run(setting: str, args: argparse.Namespace) -> dict:
    env = {
        **os.environ,
        "COLLECT_MALLOC": setting,
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {setting} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="long_context", choices=["long_context", "phonebook"])
    parser.add_argument("--modules", default="mlp_block@20")
    parser.add_argument("--rank", type=int, default=3)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=14, help="steps per run (>= 4)")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 4:
        parser.error(
            f"--steps must be at least 4 (two warm-up steps, then timed); got {args.steps}"
        )
    if args.child:
        _child(args)
        return
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for i in range(args.repeats):
        for setting in SETTINGS:
            run = _run(setting, args)
            runs[setting].append(run)
            print(
                f"run {i + 1} {setting:6s}: {run['step_s']:.3f} s/step, dL {run['dL']:.6f} "
                f"({run['status']}), peak {run['peak_mib']:,.0f} MiB",
                flush=True,
            )
    med = {s: statistics.median(r["step_s"] for r in runs[s]) for s in SETTINGS}
    dls = {r["dL"] for s in SETTINGS for r in runs[s]}
    print(
        f"cell: {args.task} {args.modules} rank {args.rank}, l = {args.length}, "
        f"{args.steps} steps, {args.threads} thread(s)"
    )
    print(
        f"median s/step: glibc defaults {med['system']:.3f}, kept {med['keep']:.3f}; "
        f"ratio defaults/kept {med['system'] / med['keep']:.3f}x"
    )
    print(f"dL identical across all runs: {len(dls) == 1} ({', '.join(f'{d:.6f}' for d in dls)})")


if __name__ == "__main__":
    main()
