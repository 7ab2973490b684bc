"""What a training step pays for the teacher-forced argmax: each token's hit, or only "all hits".

An SFT or MemFT-OT step reads the argmax over the vocabulary for one thing only: the first
step at which every target token's argmax is right (``first_exact_step``, when greedy
recall became exact). ``collect`` asks each step for what it needs
(:attr:`collect.probe.loop.CellLoop.argmax_wanted`): whether every token is a hit, found
with ``amax`` and a gather (:func:`collect.probe.measure.every_argmax_hit`, exact, ties
included), and nothing at all once that step is found. MemFT-SW reads each token's hit and
still takes the full argmax.

Two measurements, each against the full argmax in the same run:

- ``token_stats`` alone on logits of SmolLM2's shape (ℓ target tokens over 49,152), with the
  labels right at a share of the positions;
- ``--cell``: whole training steps of one SmolLM2 cell, alternating the two ways
  ``--repeats`` times, with the cell's records compared (they must be the same).

    python benchmarks/bench_argmax.py                       # token_stats, l = 512: ~1 min
    python benchmarks/bench_argmax.py --cell --steps 14     # and whole steps: ~5 min more
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from collect.malloc import keep_freed_memory
from collect.probe import token_stats


def _time(fn, repeats: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench_token_stats(length: int, vocab: int, right: float, repeats: int) -> None:
    """Seconds of ``token_stats`` per call under each ``argmax`` setting."""
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(length, vocab, generator=gen)
    labels = logits.argmax(-1)
    wrong = torch.rand(length, generator=gen) >= right
    labels[wrong] = (labels[wrong] + 1) % vocab
    full = _time(lambda: token_stats(logits, labels, argmax=True), repeats)
    print(f"token_stats on [{length}, {vocab}] logits, {right:.0%} of labels right:")
    for mode in ("all", False):
        t = _time(lambda m=mode: token_stats(logits, labels, argmax=m), repeats)
        print(
            f"  argmax={mode!s:5s}: {1e3 * t:7.1f} ms against each token's hit {1e3 * full:7.1f} "
            f"ms: {full / t:.2f}x"
        )


def bench_cell(args: argparse.Namespace) -> None:
    """Median seconds per training step of one cell, each way, alternated."""
    from step_timing import median_step_seconds, timed_cell

    from collect.models import load_model
    from collect.probe import TrainConfig
    from collect.probe.loop import CellLoop
    from collect.tasks import build_task

    lm = load_model("smollm2", dtype="float32")
    entries = build_task("long_context", lm.tokenizer, args.length, random_ratio=1.0)
    train = TrainConfig(max_steps=args.steps, prefix_cache=True, log_every=1)
    lean = CellLoop.argmax_wanted
    ways = {"needed": lean, "full": property(lambda self: True)}
    times: dict[str, list[float]] = {w: [] for w in ways}
    records: dict[str, set] = {w: set() for w in ways}
    model = lm.model
    try:
        for _ in range(args.repeats):
            for way, wanted in ways.items():
                CellLoop.argmax_wanted = wanted
                result, model, stamps = timed_cell(
                    model,
                    lm.tokenizer,
                    entries,
                    task="long_context",
                    modules="mlp_block@20",
                    rank=args.rank,
                    train=train,
                    device=lm.device,
                )
                times[way].append(median_step_seconds(stamps))
                records[way].add((result.loss_reduction, tuple(result.loss_curve)))
    finally:
        CellLoop.argmax_wanted = lean
    med = {w: statistics.median(t) for w, t in times.items()}
    print(
        f"cell rank {args.rank}, l = {args.length}, {args.steps} steps: median s/step "
        f"full argmax {med['full']:.3f}, as needed {med['needed']:.3f}; ratio "
        f"{med['full'] / med['needed']:.3f}x; same records: {records['full'] == records['needed']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way (--cell)")
    parser.add_argument("--cell", action="store_true", help="also time whole training steps")
    parser.add_argument("--rank", type=int, default=3)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as a cell runs
    for right in (0.5, 0.99, 1.0):
        bench_token_stats(args.length, args.vocab, right, repeats=10)
    if args.cell:
        bench_cell(args)


if __name__ == "__main__":
    main()
