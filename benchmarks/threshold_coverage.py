"""Coverage of the p* confidence interval of lawfit.phase_transition on planted thresholds.

Simulates `--reps` token datasets (lawfit.testing.tokens, PhoneBook-like entries of 8
tokens, ranks 1-64, lengths 64-256, 3 seeds: 63 runs) with a planted p*, and counts how
often the 95 % bootstrap interval (runs resampled) covers it. Run:

    python benchmarks/threshold_coverage.py --reps 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lawfit.testing.tokens import synthetic_token_dataset
from lawfit.transition import phase_transition

GRID = dict(ranks=(1, 2, 4, 8, 16, 32, 64), lengths=(64, 128, 256), seeds=(0, 1, 2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--bootstrap", type=int, default=300)
    a = p.parse_args(argv)
    t0 = time.time()
    print(
        "| planted p* | sufficient | logistic p* (mean) | coverage: bootstrap | delta | "
        "mean CI width | isotonic crossing (mean) | isotonic coverage | misfit flagged |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for p_star, sufficient in ((0.5, False), (0.3, False), (0.3, True), (0.45, True)):
        est, cov_b, cov_d, width, iso, cov_i, flag = [], [], [], [], [], [], []
        for rep in range(a.reps):
            ds = synthetic_token_dataset(
                p_star=p_star,
                slope=3.0,
                entry_tokens=8,
                sufficient=sufficient,
                rng=10_000 + rep,
                **GRID,
            )
            t = phase_transition(ds, bootstrap=a.bootstrap, rng=rep, orders=()).token_fit
            est.append(t.threshold)
            cov_b.append(t.ci[0] <= p_star <= t.ci[1])
            cov_d.append(t.ci_delta[0] <= p_star <= t.ci_delta[1])
            width.append(t.ci[1] - t.ci[0])
            iso.append(t.threshold_isotonic)
            cov_i.append(t.ci_isotonic[0] <= p_star <= t.ci_isotonic[1])
            flag.append(not (t.ci_difference[0] <= 0 <= t.ci_difference[1]))
        print(
            f"| {p_star} | {sufficient} | {np.mean(est):.4f} | {np.mean(cov_b):.2f} | "
            f"{np.mean(cov_d):.2f} | {np.mean(width):.4f} | {np.nanmean(iso):.4f} | "
            f"{np.mean(cov_i):.2f} | {np.mean(flag):.2f} |"
        )
    print(f"\n({a.reps} datasets per row, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
