"""Lean vs naive collection of one cell on SmolLM2-135M on the CPU.

lean     = prefix cache (layers below the adapter run once per cell) + convergence stop, and
           entries packed around their shared prompt prefix (PhoneBook's chat template)
unpacked = lean without the packing (one padded row per entry)
naive    = full forward through every layer at every step, for the whole fixed step budget
bf16     = lean with the frozen model in bfloat16 (the adapter, losses and probabilities stay
           float32): on a CPU with AMX or AVX-512 bf16 its matmuls run several times faster
autocast = lean with a float32 model whose training steps run under bf16 autocast
           ([train] autocast = "bfloat16": matrix products in bf16, the residual stream,
           norms, adapter and optimizer in float32; measurements in float32)

All train the same adapter from the same seed; the script prints ΔL of each, its relative
difference from lean, the steps run and the wall-time ratios, all measured in this run.

    python benchmarks/bench_collect.py                      # defaults below
    python benchmarks/bench_collect.py --rank 8 --length 64 --max-steps 600
    python benchmarks/bench_collect.py --task phonebook --rank 1 --length 128 --runs lean,unpacked
    python benchmarks/bench_collect.py --rank 2 --length 512 --max-steps 40 --runs lean,bf16
    python benchmarks/bench_collect.py --rank 1 --length 256 --max-steps 40 --runs autocast,bf16

(Short budgets time the steps but not the converged dL: sweeps/bf16_cpu_check.toml and
sweeps/autocast_cpu_check.toml measure bf16 and autocast against float32 on whole 3,000-step
cells.)
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from step_timing import timed_cell

from collect.models import load_model
from collect.probe import TrainConfig
from collect.tasks import build_task

#: name -> (training settings for a budget, pack prompts?, model dtype)
RUNS = {
    "lean": lambda budget: (TrainConfig(max_steps=budget, prefix_cache=True), True, "float32"),
    "unpacked": lambda budget: (
        TrainConfig(max_steps=budget, prefix_cache=True),
        False,
        "float32",
    ),
    "naive": lambda budget: (
        TrainConfig(
            max_steps=budget, prefix_cache=False, stop_when_memorized=False, patience=10**9
        ),
        False,
        "float32",
    ),
    "bf16": lambda budget: (TrainConfig(max_steps=budget, prefix_cache=True), True, "bfloat16"),
    "autocast": lambda budget: (
        TrainConfig(max_steps=budget, prefix_cache=True, autocast="bfloat16"),
        True,
        "float32",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="long_context")
    parser.add_argument("--modules", default="mlp_block@20")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--runs",
        default="lean,naive",
        help=f"comma-separated runs out of {', '.join(RUNS)} (lean always runs)",
    )
    args = parser.parse_args()
    wanted = {"lean", *args.runs.split(",")}
    if wanted - set(RUNS):
        parser.error(f"--runs takes names out of {', '.join(RUNS)}; got {args.runs!r}")
    torch.set_num_threads(args.threads)
    lm = load_model("smollm2", dtype="float32")
    models = {"float32": lm.model}
    if "bf16" in wanted:
        models["bfloat16"] = load_model("smollm2", dtype="bfloat16").model
    ratio = 1.0 if args.task == "long_context" else 0.0
    entries = build_task(args.task, lm.tokenizer, args.length, random_ratio=ratio)
    runs = {}
    for name in (n for n in RUNS if n in wanted):
        train, pack, dtype = RUNS[name](args.max_steps)
        train = dataclasses.replace(train, log_every=1)  # a time stamp at every step
        start = time.perf_counter()
        result, models[dtype], stamps = timed_cell(
            models[dtype],
            lm.tokenizer,
            entries,
            task=args.task,
            modules=args.modules,
            rank=args.rank,
            train=train,
            device=lm.device,
            pack=pack,
        )
        total = time.perf_counter() - start
        (first, t_first), (last, t_last) = stamps[0], stamps[-1]
        # a cell that stops at its first logged step has no step time to report
        step_time = (t_last - t_first) / (last - first) if last > first else float("nan")
        runs[name] = (result, total, step_time)
        print(
            f"{name:8s}: dL={result.loss_reduction:.4f} nats/token  loss_after="
            f"{result.loss_after:.4f}  steps={result.steps} ({result.stop_reason})  "
            f"exact_match={result.exact_match:.2f}  prefix_cached={result.prefix_cached}  "
            f"prompt_packed={result.prompt_packed}  time={total:.1f} s "
            f"(training steps alone: {step_time:.3f} s/step)",
            flush=True,
        )
    print(
        f"cell: {args.task} {args.modules} rank={args.rank} length={args.length} "
        f"budget={args.max_steps} threads={args.threads}"
    )
    lean, t_lean, step_lean = runs["lean"]
    for name, (other, t_other, step_other) in runs.items():
        if name == "lean":
            continue
        rel = abs(lean.loss_reduction - other.loss_reduction) / abs(other.loss_reduction)
        print(f"dL lean vs {name}: {100 * rel:.2f} % relative difference (target < 1 %)")
        print(
            f"time ratio {name}/lean: {t_other / t_lean:.2f}x for the cell, "
            f"{step_other / step_lean:.2f}x per training step"
        )


if __name__ == "__main__":
    main()
