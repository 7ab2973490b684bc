"""Lean vs naive collection of one cell on SmolLM2-135M on the CPU.

lean  = prefix cache (layers below the adapter run once per cell) + convergence stop
naive = full forward through every layer at every step, for the whole fixed step budget

Both train the same adapter from the same seed; the script prints ΔL of each, their relative
difference, the steps run and the wall-time ratio, all measured in this run.

    python benchmarks/bench_collect.py                      # defaults below
    python benchmarks/bench_collect.py --rank 8 --length 64 --max-steps 600
"""

from __future__ import annotations

import argparse
import time

import torch

from collect.models import load_model
from collect.probe import TrainConfig, run_cell
from collect.tasks import build_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="long_context")
    parser.add_argument("--modules", default="mlp_block@20")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("smollm2")
    ratio = 1.0 if args.task == "long_context" else 0.0
    entries = build_task(args.task, lm.tokenizer, args.length, random_ratio=ratio)
    model = lm.model
    runs = {}
    for name, train in {
        "lean": TrainConfig(max_steps=args.max_steps, prefix_cache=True),
        "naive": TrainConfig(
            max_steps=args.max_steps, prefix_cache=False, stop_when_memorized=False, patience=10**9
        ),
    }.items():
        start = time.perf_counter()
        result, model = run_cell(model, lm.tokenizer, entries, task=args.task, method="sft",
                                 modules=args.modules, rank=args.rank, seed=0, train=train,
                                 device=lm.device)
        runs[name] = (result, time.perf_counter() - start)
        print(f"{name:5s}: dL={result.loss_reduction:.4f} nats/token  loss_after="
              f"{result.loss_after:.4f}  steps={result.steps} ({result.stop_reason})  "
              f"exact_match={result.exact_match:.2f}  prefix_cached={result.prefix_cached}  "
              f"time={runs[name][1]:.1f} s", flush=True)
    (lean, t_lean), (naive, t_naive) = runs["lean"], runs["naive"]
    rel = abs(lean.loss_reduction - naive.loss_reduction) / abs(naive.loss_reduction)
    print(f"cell: {args.task} {args.modules} rank={args.rank} length={args.length} "
          f"budget={args.max_steps} threads={args.threads}")
    print(f"dL relative difference: {100 * rel:.2f} % (target < 1 %)")
    print(f"time ratio naive/lean: {t_naive / t_lean:.2f}x")


if __name__ == "__main__":
    main()
