"""Quantiles of the likelihood-ratio statistic for a monotone binary regression at a point.

For ``P(y = 1 | x) = mu(x)`` with ``mu`` non-decreasing, the likelihood ratio statistic of
H0: ``mu(c) = theta`` (the isotonic maximum likelihood against the one constrained through
``theta`` at ``c``) is asymptotically pivotal, with the law 𝔻 of Banerjee & Wellner (2001,
Ann. Statist. 29, 1699-1731; Banerjee 2007, Ann. Statist. 35, 928-961 for monotone binary
regression) instead of χ²₁. lawfit inverts it for the interval of the isotonic 50 % crossing
of greedy recall (``lawfit.crossing_profile.isotonic_crossing_interval``), and this script
simulates the quantiles that ``lawfit.crossing_profile.MONOTONE_LR_QUANTILES`` holds: ``n``
points uniform on [-1, 1], ``mu(x) = 0.5 + 0.25 x``, the statistic at ``c = 0``. Run:

    python benchmarks/monotone_lr_quantiles.py --n 20000 --reps 100000

(Banerjee & Wellner give 2.286 at 0.95; with ``--reps 3000`` this gives 2.28.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lawfit.crossing_profile import constrained_isotonic_lr

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 0.995)


def simulate(n: int, reps: int, seed: int = 0) -> np.ndarray:
    """Return ``reps`` draws of the statistic at ``n`` points under H0."""
    gen = np.random.default_rng(seed)
    x = np.sort(gen.uniform(-1.0, 1.0, n))
    mu = 0.5 + 0.25 * x
    split = int(np.searchsorted(x, 0.0))
    return np.array(
        [constrained_isotonic_lr((gen.random(n) < mu).astype(float), split) for _ in range(reps)]
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=100_000)
    a = p.parse_args(argv)
    t0 = time.time()
    draws = simulate(a.n, a.reps)
    print("| level | quantile |\n|---|---|")
    for level in LEVELS:
        print(f"| {level} | {np.quantile(draws, level):.4f} |")
    print(f"\n({a.reps} draws at n = {a.n}, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
