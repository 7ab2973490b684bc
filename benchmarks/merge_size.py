"""How big the merged file of a sweep is, and how long merging, writing and packing it take.

The GPU machine has no netCDF4, so `collect` writes NetCDF-3 there (scipy, uncompressed), and
the lease keeps a reserve of minutes at the end of each step for the merge and the packing
(benchmarks/GPU_RUN.md). This measures both on an empty sweep directory (the merged file is
the full grid whatever is done), with netCDF4 hidden as on that machine.

    python benchmarks/merge_size.py sweeps/gpu_converged.toml sweeps/gpu_carriers.toml
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def hide_netcdf4() -> None:
    """Make ``collect.store.netcdf_engine`` choose scipy, as on a machine without netCDF4."""
    find = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a, **k: (
        None if name == "netCDF4" else find(name, *a, **k)
    )


def measure(sweep: str, max_mib: float) -> None:
    """Print the merged file's dimensions and size, and the seconds of each stage."""
    from gpu_pack import pack_dir

    from collect import store
    from collect.config import load_config

    config = load_config(sweep)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "cells").mkdir()
        began = time.perf_counter()
        ds = store.merge(config, tmp)
        merged = time.perf_counter() - began
        print(f"{sweep}: {dict(ds.sizes)}, {ds.nbytes / 1e9:.2f} GB in memory")
        work = tmp / "work"
        work.mkdir()
        began = time.perf_counter()
        store.save_dataset(ds, work / "dataset.nc")
        written = time.perf_counter() - began
        size = (work / "dataset.nc").stat().st_size
        began = time.perf_counter()
        pack_dir(work, tmp / "packed", max_files=3, max_mib=max_mib)
        packed = time.perf_counter() - began
        parts = sum(p.stat().st_size for p in (tmp / "packed").iterdir()) / 2**20
        print(
            f"  merge {merged:.1f} s; {store.netcdf_engine()} file {size / 1e9:.2f} GB written "
            f"in {written:.1f} s; packed into {parts:.1f} MiB in {packed:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", help="sweep files")
    parser.add_argument("--max-mib", type=float, default=16.0, help="size of a packed part")
    args = parser.parse_args()
    hide_netcdf4()
    for sweep in args.sweeps:
        measure(sweep, args.max_mib)


if __name__ == "__main__":
    main()
