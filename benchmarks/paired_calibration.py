"""Coverage of the paired MemFT comparison's t intervals (``lawfit.memft.paired``), known truth.

Each replicate simulates SFT and MemFT-OT cells on a few target sequences
(``lawfit.testing.paired.synthetic_paired_memft``: target content shifts both methods
alike, MemFT scatters around a true 0.9 × SFT) and counts how often the 95 % interval of
the ΔL ratio covers 0.9, with little and with much scatter between the paired cells.

    python benchmarks/paired_calibration.py             # 2,000 replicates a case (~1 min)
    python benchmarks/paired_calibration.py --n 500
"""

from __future__ import annotations

import argparse

import numpy as np

from lawfit.memft.paired import paired_ratios
from lawfit.testing.paired import synthetic_paired_memft

#: (targets, sd of target content, sd of the MemFT cell around ratio × SFT)
CASES = [(3, 0.05, 0.01), (3, 0.05, 0.05), (6, 0.05, 0.03)]
TRUE_RATIO = 0.9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="replicates per case (default 2000)")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    print(f"{'targets':>7} {'content sd':>10} {'pair sd':>8} {'coverage':>9} {'± MC se':>8}")
    for sequences, content, scatter in CASES:
        hits = 0
        for _ in range(args.n):
            ds = synthetic_paired_memft(
                TRUE_RATIO, sequences, rng, content=content, scatter=scatter
            )
            row = paired_ratios(ds, ["memft_ot"]).iloc[0]
            hits += row["low"] <= TRUE_RATIO <= row["high"]
        cover = hits / args.n
        se = np.sqrt(cover * (1 - cover) / args.n)
        print(f"{sequences:>7} {content:>10.2f} {scatter:>8.2f} {cover:>9.3f} {se:>8.3f}")
    print("\nnominal level 0.95")


if __name__ == "__main__":
    main()
