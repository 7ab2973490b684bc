"""Coverage of ``lawfit.transfer_law``'s prediction intervals, with a known truth (simulated).

Each replicate draws a source model's sweep (ranks 1-8, lengths 64-1,024, four target
sequences that each shift log C and tilt both exponents: ``synthetic_dataset(noise_kind=
"run")``) and a second model's sweep with the same exponents and offset and a 1.5x scale,
fits the law on the source, carries it to the second model from anchor cells on its
sequence 0 and predicts its cell at rank 4, ℓ = 256: on sequence 0 (``in_cluster=0``) or on
another sequence. It counts how often the 95 % interval covers the measured cell, and
repeats the first case with a second model whose α is 0.15 larger (the assumption broken:
the interval should then miss often, which is what makes a landed prediction evidence).

    python benchmarks/transfer_calibration.py            # 400 replicates a case (~2 min)
    python benchmarks/transfer_calibration.py --n 100    # quicker, coarser
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lawfit.testing.transfer import transfer_replicate

#: (label, free parameters, anchor points, the new cell's sequence, extra α of the new model)
CASES = [
    ("C free, 1 anchor, same sequence", ("C",), [(1, 128)], 0, 0.0),
    ("C free, 1 anchor, new sequence", ("C",), [(1, 128)], None, 0.0),
    ("C and b free, 2 anchors, same sequence", ("C", "b"), [(1, 128), (1, 512)], 0, 0.0),
    ("C free, new model's alpha +0.15 (broken)", ("C",), [(1, 128)], 0, 0.15),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400, help="replicates per case (default 400)")
    args = ap.parse_args()
    print(f"{'case':<44} {'coverage':>9} {'± MC se':>8} {'median log width':>17}")
    for label, free, points, in_cluster, extra in CASES:
        start = time.perf_counter()
        runs = [transfer_replicate(rep, free, points, in_cluster, extra) for rep in range(args.n)]
        hit = np.mean([h for h, _ in runs])
        se = np.sqrt(hit * (1 - hit) / args.n)
        width = np.median([w for _, w in runs])
        took = time.perf_counter() - start
        print(f"{label:<44} {hit:>9.3f} {se:>8.3f} {width:>17.3f}   ({took:.0f} s)")
    print("\nnominal level 0.95; the last case breaks the assumption that α carries over")


if __name__ == "__main__":
    main()
