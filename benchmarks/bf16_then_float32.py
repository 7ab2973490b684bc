"""Can bf16 training be finished in float32? One law cell, continued from its bf16 state.

    python benchmarks/bf16_then_float32.py                       # rank 1, l = 128, sequence 0
    python benchmarks/bf16_then_float32.py --extra-steps 600 --json bf16_then_f32.json

bf16 steps are about 2.2x cheaper than float32 ones on this CPU, but cells trained in bf16
reach 0.8-3.1 % less dL (``docs/collect.md``). If that gap were a precision floor of the
frozen bf16 model, a short float32 phase after the bf16 one would close it, and the CPU
collection could train in bf16 and finish in float32. This script measures it on one cell
that ``sweeps/bf16_cpu_check.toml`` (bf16, 3,000 steps, its state kept) and
``sweeps/law_cpu_converged.toml`` (float32) both hold:

1. the bf16-trained adapter measured in float32 (no training: is the gap in the measure?);
2. that adapter trained ``--extra-steps`` more steps in float32 under the law sweep's
   settings (constant lr, fixed budget);
3. the float32 run from scratch: the step at which it first reaches each of those dL.

Nothing is written into ``data/``. The float32 phase takes ~0.7 s/step on one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from collect.config import CellKey, load_config
from collect.models import load_model
from collect.probe import run_cell
from collect.store import cell_path, read_state
from collect.tasks import build_task

REPO = Path(__file__).resolve().parents[1]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rank", type=int, default=1)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--extra-steps", type=int, default=600)
    parser.add_argument("--bf16-dir", type=Path, default=REPO / "data/bf16_cpu_check")
    parser.add_argument("--float32-dir", type=Path, default=REPO / "data/law_cpu_converged")
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps/law_cpu_converged.toml")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    return parser.parse_args(argv)


def _key(args: argparse.Namespace) -> CellKey:
    return CellKey(
        model="smollm2",
        task="long_context",
        random_ratio=1.0,
        method="sft",
        modules="mlp_block@20",
        rank=args.rank,
        length=args.length,
        seed=0,
        data_seed=args.data_seed,
    )


def _curve(path: Path) -> tuple[float, np.ndarray]:
    """A finished cell's ΔL after training and its ΔL at every step (NaN past its end)."""
    with xr.open_dataset(path) as cell:
        before = float(cell["loss_before"].values.ravel()[0])
        after = float(cell["loss_after"].values.ravel()[0])
        return before - after, before - cell["loss_curve"].values.ravel()


def _continue_in_float32(key: CellKey, state: dict, sweep: Path, extra: int) -> list[float]:
    """ΔL of the bf16 state measured in float32 after 0 and after ``extra`` more steps."""
    config = load_config(sweep)
    if config.dtype not in (None, "float32"):
        raise SystemExit(f"{sweep} is not a float32 sweep (dtype {config.dtype})")
    torch.set_num_threads(1)
    loaded = load_model("smollm2", device=config.device, dtype="float32")
    entries = build_task(
        key.task,
        loaded.tokenizer,
        key.length,
        random_ratio=key.random_ratio,
        data_seed=key.data_seed,
        source=config.source_for(key.task),
    )
    start = int(state["step"])
    gains = []
    for steps in (0, extra):  # a fixed budget: the convergence stop would end at once
        train = dataclasses.replace(config.train, max_steps=start + steps, converge_from=None)
        result, _ = run_cell(
            loaded.model,
            loaded.tokenizer,
            entries,
            task=key.task,
            method=key.method,
            modules=key.modules,
            rank=key.rank,
            seed=key.seed,
            train=train,
            device=loaded.device,
            resume=state,
        )
        gains.append(float(result.loss_before - result.loss_after))
        print(f"bf16 state + {steps} float32 steps: dL {gains[-1]:.4f}", flush=True)
    return gains


def _first_step_reaching(curve: np.ndarray, value: float) -> int | None:
    hits = np.flatnonzero(curve >= value)
    return int(hits[0]) if hits.size else None


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison, print its table and return its numbers."""
    args = _parse(argv)
    key = _key(args)
    bf16_dl, _ = _curve(cell_path(args.bf16_dir, key))
    f32_dl, f32_curve = _curve(cell_path(args.float32_dir, key))
    saved = read_state(args.bf16_dir, key)
    if saved is None:
        raise SystemExit(f"no saved training state for {key} in {args.bf16_dir}")
    state = saved["state"]
    measured, continued = _continue_in_float32(key, state, args.sweep, args.extra_steps)
    start = int(state["step"])
    rows = [
        ("bf16, measured in bf16", start, bf16_dl),
        ("bf16, measured in float32", start, measured),
        (f"bf16 + {args.extra_steps} float32 steps", start + args.extra_steps, continued),
        ("float32 from scratch", int(np.isfinite(f32_curve).sum()) - 1, f32_dl),
    ]
    print(f"\nrank {args.rank}, l = {args.length}, sequence {args.data_seed}")
    print("| run | steps | dL | vs float32 | float32 from scratch reaches it at step |")
    print("|---|---|---|---|---|")
    for name, steps, gain in rows:
        reach = None if name.startswith("float32") else _first_step_reaching(f32_curve, gain)
        print(
            f"| {name} | {steps} | {gain:.3f} | {(gain - f32_dl) / f32_dl:+.1%} "
            f"| {'-' if reach is None else reach} |"
        )
    out = {name: {"steps": steps, "dL": gain} for name, steps, gain in rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
