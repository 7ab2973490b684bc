"""Compare the cells two collected datasets share: GPU against CPU, bf16 against float32.

    python benchmarks/gpu_overlap.py data/smollm2_cpu.nc runs/overlap/dataset.nc
    python benchmarks/gpu_overlap.py data/smollm2_cpu.nc runs/overlap_bf16/dataset.nc --json x

A cell is shared when both datasets hold it with status ``ok`` (same model, task,
random_ratio, objective, modules, rank, length, seed and data_seed). For each, it prints ΔL
in both, the relative difference (second − first) / |first|, the steps each ran, and whether
greedy recall agrees; then how many cells lie within ``--tolerance`` (default 1 %, the
issue's bound for float32 against float32). Cells whose training stopped at a different step
are marked: a stop rule that fires one step earlier or later changes ΔL by more than
rounding does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from lawfit.data import CELL_DIMS, migrate_objective

COLUMNS = ("loss_reduction", "loss_before", "steps", "exact_match")


def _ok_cells(ds: xr.Dataset) -> pd.DataFrame:
    """The dataset's ``ok`` cells as a table indexed by the cell coordinates."""
    ds = migrate_objective(ds)  # files written before the rename call it `method`
    dims = [d for d in CELL_DIMS if d in ds.dims]
    table = ds[["status", *COLUMNS]].to_dataframe().reset_index()
    table = table[table["status"].astype(str) == "ok"]
    return table.set_index(dims)[list(COLUMNS)]


def shared_cells(first: xr.Dataset, second: xr.Dataset) -> pd.DataFrame:
    """One row per cell both datasets hold with status ``ok``: values and relative ΔL change.

    Returns
    -------
    pandas.DataFrame
        Columns ``<var>_first``, ``<var>_second`` for ΔL, loss_before, steps and exact_match,
        ``rel_diff`` = (ΔL second − ΔL first) / |ΔL first|, ``same_steps`` and
        ``same_recall``.
    """
    a, b = _ok_cells(first), _ok_cells(second)
    joined = a.add_suffix("_first").join(b.add_suffix("_second"), how="inner")
    first_dl = joined["loss_reduction_first"]
    joined["rel_diff"] = (joined["loss_reduction_second"] - first_dl) / first_dl.abs()
    joined["same_steps"] = joined["steps_first"] == joined["steps_second"]
    joined["same_recall"] = joined["exact_match_first"] == joined["exact_match_second"]
    return joined


def summarize(table: pd.DataFrame, tolerance: float) -> dict:
    """Counts and extremes of the relative ΔL differences."""
    rel = table["rel_diff"].abs()
    return {
        "shared_cells": len(table),
        "tolerance": tolerance,
        "within_tolerance": int((rel <= tolerance).sum()),
        "max_abs_rel_diff": float(rel.max()) if len(rel) else float("nan"),
        "median_abs_rel_diff": float(rel.median()) if len(rel) else float("nan"),
        "mean_rel_diff": float(table["rel_diff"].mean()) if len(rel) else float("nan"),
        "same_steps": int(table["same_steps"].sum()),
        "same_recall": int(table["same_recall"].sum()),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the shared cells and the summary; returns 2 on unreadable input."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="reference dataset (e.g. the CPU one)")
    parser.add_argument("second", type=Path, help="dataset to compare (e.g. the GPU one)")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--json", type=Path, help="also write the summary and rows here")
    args = parser.parse_args(argv)
    for path in (args.first, args.second):
        if not path.is_file():
            print(f"gpu_overlap: error: {path} does not exist; give two merged datasets.")
            return 2
    table = shared_cells(xr.load_dataset(args.first), xr.load_dataset(args.second))
    summary = summarize(table, args.tolerance)
    show = table[["loss_reduction_first", "loss_reduction_second", "rel_diff"]].copy()
    steps = [table[f"steps_{which}"].astype(int).astype(str) for which in ("first", "second")]
    show["steps"] = steps[0] + "/" + steps[1]
    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 160
    ):
        print(show.droplevel([d for d in ("model", "modules") if d in show.index.names]))
    print(json.dumps(summary, indent=2))
    if args.json:
        rows = table.reset_index().replace({np.nan: None}).to_dict(orient="records")
        args.json.write_text(json.dumps({"summary": summary, "cells": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
