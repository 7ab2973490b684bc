"""Lean vs naive collection of one cell on SmolLM2-135M on the CPU.

lean     = prefix cache (layers below the adapter run once per cell) + convergence stop, and
           entries packed around their shared prompt prefix (PhoneBook's chat template)
unpacked = lean without the packing (one padded row per entry)
naive    = full forward through every layer at every step, for the whole fixed step budget

All train the same adapter from the same seed; the script prints ΔL of each, its relative
difference from lean, the steps run and the wall-time ratios, all measured in this run.

    python benchmarks/bench_collect.py                      # defaults below
    python benchmarks/bench_collect.py --rank 8 --length 64 --max-steps 600
    python benchmarks/bench_collect.py --task phonebook --rank 1 --length 128 --runs lean,unpacked
"""

from __future__ import annotations

import argparse
import time

import torch

from collect.models import load_model
from collect.probe import TrainConfig, run_cell
from collect.tasks import build_task

#: name -> (training settings for a budget, pack prompts?)
RUNS = {
    "lean": lambda budget: (TrainConfig(max_steps=budget, prefix_cache=True), True),
    "unpacked": lambda budget: (TrainConfig(max_steps=budget, prefix_cache=True), False),
    "naive": lambda budget: (
        TrainConfig(
            max_steps=budget, prefix_cache=False, stop_when_memorized=False, patience=10**9
        ),
        False,
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
        help="comma-separated runs out of lean, unpacked, naive (lean always runs)",
    )
    args = parser.parse_args()
    wanted = {"lean", *args.runs.split(",")}
    if wanted - set(RUNS):
        parser.error(f"--runs takes names out of {', '.join(RUNS)}; got {args.runs!r}")
    torch.set_num_threads(args.threads)
    lm = load_model("smollm2")
    ratio = 1.0 if args.task == "long_context" else 0.0
    entries = build_task(args.task, lm.tokenizer, args.length, random_ratio=ratio)
    model = lm.model
    runs = {}
    for name in (n for n in RUNS if n in wanted):
        train, pack = RUNS[name](args.max_steps)
        start = time.perf_counter()
        result, model = run_cell(
            model,
            lm.tokenizer,
            entries,
            task=args.task,
            method="sft",
            modules=args.modules,
            rank=args.rank,
            seed=0,
            train=train,
            device=lm.device,
            pack=pack,
        )
        runs[name] = (result, time.perf_counter() - start)
        print(
            f"{name:8s}: dL={result.loss_reduction:.4f} nats/token  loss_after="
            f"{result.loss_after:.4f}  steps={result.steps} ({result.stop_reason})  "
            f"exact_match={result.exact_match:.2f}  prefix_cached={result.prefix_cached}  "
            f"prompt_packed={result.prompt_packed}  time={runs[name][1]:.1f} s "
            f"({runs[name][1] / max(result.steps, 1):.3f} s/step)",
            flush=True,
        )
    print(
        f"cell: {args.task} {args.modules} rank={args.rank} length={args.length} "
        f"budget={args.max_steps} threads={args.threads}"
    )
    lean, t_lean = runs["lean"]
    for name, (other, t_other) in runs.items():
        if name == "lean":
            continue
        rel = abs(lean.loss_reduction - other.loss_reduction) / abs(other.loss_reduction)
        print(f"dL lean vs {name}: {100 * rel:.2f} % relative difference (target < 1 %)")
        print(f"time ratio {name}/lean: {t_other / t_lean:.2f}x")


if __name__ == "__main__":
    main()
