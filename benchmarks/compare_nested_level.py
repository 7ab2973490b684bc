"""Level and power of compare's nested tests when target sequences share errors.

Sweeps are simulated on G target sequences, each with its own random offset and slopes
(``lawfit.testing.synthetic_dataset(noise_kind="run")``; the population law is the given
one), and ``lawfit.compare(..., space="log", cluster="seed")`` is run on each of N datasets.
For two restrictions the script prints how often each test rejects at 0.05:

- ``likelihood ratio``: the LR test of ``lr_tests["pvalue"]`` (cells independent);
- ``cluster-robust``: the CR2 Wald test with the HTZ F reference (``robust_pvalue``);

and the LR statistic's mean (about 1 for a calibrated one-restriction test). Two control rows
simulate the nulls with independent cells only. Sequence effects linear in log r and log ℓ
load on β − α but, on a grid every sequence shares, are orthogonal to b's direction: they
inflate the residual variance the LR test of b = 0 divides by without moving b̂, which makes
that test conservative (docs/analyses.md §1).

The restrictions: β = α (``ratio`` inside ``power_law``) and b = 0
(``power_law_no_offset`` inside ``power_law``). Under the null a calibrated test rejects
about 5 % (Monte-Carlo sd sqrt(0.05 · 0.95 / N): 1.5 points at N = 200); the power rows
simulate β = 0.45 against α = 0.6, and b = 0.02.

Usage::

    python benchmarks/compare_nested_level.py            # N = 200, about 12 minutes
    python benchmarks/compare_nested_level.py --n 50     # a quick look
"""

from __future__ import annotations

import warnings

import numpy as np
from level_common import GRID, SEQUENCE_EFFECTS, datasets_per_row, print_rates, rates_row

from lawfit import compare
from lawfit.testing import synthetic_dataset

FORMS = ["power_law", "ratio", "power_law_no_offset"]
#: restriction → (restricted form, general form)
PAIRS = {"beta = alpha": ("ratio", "power_law"), "b = 0": ("power_law_no_offset", "power_law")}


def rejection_rates(
    n: int, n_sequences: int, restriction: str, truth: dict, sequence_effects: bool = True
) -> dict:
    """Share of N datasets in which each test rejects ``restriction`` at 0.05.

    Without ``sequence_effects`` the cells err independently (the control rows).
    """
    restricted, general = PAIRS[restriction]
    lr_test, robust, statistics = [], [], []
    noise = dict(noise_kind="run", run_effect=SEQUENCE_EFFECTS) if sequence_effects else {}
    for i in range(n):
        gen = np.random.default_rng(10_000 * n_sequences + i)
        ds = synthetic_dataset(**truth, **GRID, seeds=n_sequences, **noise, rng=gen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = compare(ds, FORMS, space="log", holdout=(), cluster="seed")
        row = res.lr_tests.set_index(["restricted", "general"]).loc[(restricted, general)]
        lr_test.append(row["pvalue"] < 0.05)
        robust.append(row["robust_pvalue"] < 0.05)
        statistics.append(row["statistic"])
    labels = {
        "restriction": restriction,
        "truth": ", ".join(f"{k} {v:g}" for k, v in truth.items()),
        "sequences": n_sequences,
        "sequence effects": "yes" if sequence_effects else "no",
    }
    rates = rates_row(labels, {"likelihood ratio": lr_test, "cluster-robust": robust})
    return {**rates, "mean LR statistic": float(np.mean(statistics))}


def main() -> None:
    """Print the rejection rates of both tests under each null and one alternative each."""
    n = datasets_per_row(__doc__)
    nulls = {"beta = alpha": dict(alpha=0.6, beta=0.6), "b = 0": dict(b=0.0)}
    alternatives = {"beta = alpha": dict(alpha=0.6, beta=0.45), "b = 0": dict(b=0.02)}
    rows = [rejection_rates(n, g, r, t) for r, t in nulls.items() for g in (3, 6)]
    rows += [
        rejection_rates(max(n // 4, 10), g, r, t) for r, t in alternatives.items() for g in (3, 6)
    ]
    rows += [rejection_rates(n, 3, r, t, sequence_effects=False) for r, t in nulls.items()]
    print_rates(
        rows,
        "first four rows: level (calibrated: about 0.05); next four: power; last two: level "
        "with independent cells only (the LR test's own setting; its statistic then averages "
        "about 1, chi-squared with one dof). One restriction needs 2+ sequences for the "
        "cluster-robust test; fewer than 3 is not advised.",
    )


if __name__ == "__main__":
    main()
