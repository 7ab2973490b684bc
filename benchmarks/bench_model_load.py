"""Loading a GGUF model: straight from the file against its one-time conversion.

Every process that collects loads the model: ``collect plan`` and the preflight read the
config and tokenizer, each worker reads the weights, and the GPU job does both twice (its
paper-loop timing and its sweep). This script times, each in a fresh Python process (nothing
cached in memory), the three loads of :mod:`collect.models` with the conversion cache off
(transformers' GGUF reader, what every load cost before the cache) and from the conversion
(:mod:`collect.gguf_cache`), and prints the ratios. The conversion itself is made first, in
a temporary folder, and timed too: the first load of a file pays it once.

    python benchmarks/bench_model_load.py                  # SmolLM2-135M-Instruct
    python benchmarks/bench_model_load.py --model path/to/model.gguf --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from collect.gguf_cache import CACHE_ENV

#: what a fresh process runs for each load; prints the seconds it took (imports excluded)
_LOADS = {
    "tokenizer": "load_tokenizer({model!r})",
    "config (skeleton)": "load_skeleton({model!r})",
    "weights (load_model)": "load_model({model!r}, device='cpu', dtype='float32')",
}
_TIMED = (
    "import time; from collect.models import load_model, load_skeleton, load_tokenizer; "
    "from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer; "
    "t = time.perf_counter(); {call}; print('SECONDS', time.perf_counter() - t)"
)


def time_load(call: str, cache: str, *, threads: int) -> float:
    """Seconds one load takes in a fresh process with ``COLLECT_MODEL_CACHE=cache``."""
    env = {**os.environ, CACHE_ENV: cache, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(call=call)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.split("SECONDS")[-1])


def main(argv: list[str] | None = None) -> None:
    """Time each load both ways and print a Markdown table with the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="a GGUF model spec (default smollm2)")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per load (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        weights = _LOADS["weights (load_model)"].format(model=args.model)
        first = time_load(weights, cache, threads=args.threads)  # reads the file, converts
        print("| load | from the GGUF file (s) | from its conversion (s) | ratio |")
        print("|---|---|---|---|")
        total = [0.0, 0.0]
        for name, call in _LOADS.items():
            call = call.format(model=args.model)
            direct = [time_load(call, "off", threads=args.threads) for _ in range(args.repeats)]
            cached = [time_load(call, cache, threads=args.threads) for _ in range(args.repeats)]
            d, c = statistics.median(direct), statistics.median(cached)
            total = [total[0] + d, total[1] + c]
            print(f"| {name} | {d:.1f} | {c:.1f} | {d / c:.0f}× |")
        print(f"| all three | {total[0]:.1f} | {total[1]:.1f} | {total[0] / total[1]:.0f}× |")
        print(f"\nThe first load_model, which made the conversion: {first:.1f} s.")


if __name__ == "__main__":
    main()
