"""What the level-and-power benchmarks share: the simulated design and the printing.

``shared_exponents_level.py`` and ``compare_nested_level.py`` simulate sweeps whose target
sequences each carry their own random law (:data:`SEQUENCE_EFFECTS` on the grid
:data:`GRID`), run a test that treats cells as independent and its cluster-robust
counterpart on each of N datasets, and print the share of datasets each test rejects.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

#: ranks × lengths of one simulated target sequence, and the cells' own noise (sd of log ΔL)
GRID = dict(ranks=(1, 2, 4, 8), lengths=(64, 128, 256, 512, 1024), noise=0.03)
#: sd of each sequence's random offset in log C and slopes on log r and log ℓ
SEQUENCE_EFFECTS = {"logC": 0.1, "alpha": 0.08, "beta": 0.08}


def datasets_per_row(doc: str) -> int:
    """Parse ``--n`` (datasets per row, default 200) for a benchmark whose docstring is ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="datasets per row (default 200)")
    return parser.parse_args().n


def rates_row(labels: dict, rejected: dict[str, list[bool]]) -> dict:
    """One printed row: its labels, each test's share of rejections, the number of datasets."""
    n = len(next(iter(rejected.values())))
    return {**labels, **{test: float(np.mean(r)) for test, r in rejected.items()}, "datasets": n}


def print_rates(rows: list[dict], reading: str) -> None:
    """Print the rows as one table, then how to read it."""
    with pd.option_context("display.width", 120, "display.float_format", "{:.3f}".format):
        print(pd.DataFrame(rows).to_string(index=False))
    print(reading)
