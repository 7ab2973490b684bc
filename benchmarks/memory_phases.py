"""Where a SmolLM2 cell's memory peaks: the growth of resident memory in each phase of one cell.

``benchmarks/memory_estimate.py`` compares whole-process peaks; this splits one cell into the
phases ``collect.probe.run_cell`` goes through and reads how far each one raised the
process's resident memory above where it started (``VmHWM`` after resetting it to the
current ``VmRSS`` through ``/proc/self/clear_refs``, Linux only):

- ``check``: choosing the forward (``collect.probe.lean_forward``: the full model and the
  shortcut, compared); on the first call it includes the weights' first touch;
- ``measure``: the no-gradient pass that measures ``loss_before``;
- ``step 0``, ``step 1``: training steps (forward, backward, AdamW).

It runs with glibc's own malloc (``COLLECT_MALLOC=system``), so that freed memory leaves the
process and each phase's growth is its own; under ``collect``'s default setting freed memory
is kept for reuse and the peaks of successive phases add up in part::

    python benchmarks/memory_phases.py long_context mlp_block@20 4 1024   # ~30 s, one thread
"""

from __future__ import annotations

import argparse
import os
import re
import sys

os.environ["COLLECT_MALLOC"] = "system"  # before collect is imported


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return 1024 * int(re.search(rf"{field}:\s*(\d+) kB", f.read()).group(1))


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def phase_growth(task: str, modules: str, rank: int, length: int) -> dict[str, int]:
    """Bytes each phase of one cell raised the resident memory above its starting point."""
    import torch

    from collect.adapters import attach
    from collect.models import load_model
    from collect.probe.batch import make_batch
    from collect.probe.forward import lean_forward
    from collect.probe.measure import token_stats
    from collect.tasks import build_task

    torch.set_num_threads(1)
    loaded = load_model("smollm2", device="cpu")
    ratio = 1.0 if task == "long_context" else 0.0
    entries = build_task(task, loaded.tokenizer, length, random_ratio=ratio, data_seed=0)
    batch = make_batch(loaded.tokenizer, entries, torch.device("cpu"))
    adapter = attach(loaded.model, modules, rank, seed=0, tokenizer=loaded.tokenizer)
    grown = {}
    start = _reset_peak()
    fwd = lean_forward(loaded.model, batch, adapter.first_layer, True)
    grown["check"] = _status("VmHWM") - start
    start = _reset_peak()
    with torch.no_grad():
        token_stats(fwd.logits(), batch.labels)
    grown["measure"] = _status("VmHWM") - start
    optimizer = torch.optim.AdamW(adapter.parameters, lr=1e-2)
    for step in range(2):
        start = _reset_peak()
        losses, _, _ = token_stats(fwd.logits(), batch.labels, "all")
        losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        grown[f"step {step}"] = _status("VmHWM") - start
    return grown


def main(argv: list[str] | None = None) -> int:
    """Print one line: each phase's growth in MiB."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["long_context", "phonebook"])
    parser.add_argument("modules", help="placement, e.g. mlp_block@20 or memtok:2")
    parser.add_argument("rank", type=int)
    parser.add_argument("length", type=int)
    args = parser.parse_args(argv)
    grown = phase_growth(args.task, args.modules, args.rank, args.length)
    cell = f"{args.task} {args.modules} r{args.rank} l{args.length}"
    print(cell + ": " + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in grown.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
