"""Helpers shared by the numbered analysis scripts (argument parsing, loading, settings).

Kept small on purpose: the scripts themselves show the lawfit calls.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import xarray as xr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the shipped dataset: the law sweep (data/smollm2_cpu.nc is the 600-step pilot)
DEFAULT_DATA = os.path.join(ROOT, "data", "law_cpu_converged.nc")


def merge_cmd(sweep: str) -> str:
    """The command that merges ``sweeps/<sweep>.toml``'s cells into ``data/<sweep>.nc``."""
    return f"python -m collect merge sweeps/{sweep}.toml --out data/{sweep} -o data/{sweep}.nc"


MERGE_CMD = merge_cmd("law_cpu_converged")


def parser(doc: str, data: str = DEFAULT_DATA) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=doc.strip().split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc,
    )
    ap.add_argument(
        "data",
        nargs="?",
        default=data,
        help=f"contract dataset (default: {os.path.relpath(data, ROOT)})",
    )
    ap.add_argument(
        "--synthetic",
        action="store_true",
        help="run on lawfit.testing synthetic data instead (a demo; no real numbers)",
    )
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    return ap


def read_dataset(path: str, hint: str = "") -> xr.Dataset:
    """Read a contract dataset, or exit with what was expected and how to make it.

    A missing path, a folder or a file that is not NetCDF ends the script with one message
    (``lawfit.data.open_dataset``'s) and the command that merges the shipped cells, never
    with a traceback from the NetCDF library.
    """
    from lawfit.data import open_dataset
    from lawfit.errors import LawfitError

    try:
        return open_dataset(path)
    except LawfitError as exc:
        sys.exit(f"error: {exc}\nMerge collected cells into a dataset with:\n  {MERGE_CMD}\n{hint}")


def load(args, kind: str = "cells") -> xr.Dataset:
    """Load the dataset (or the synthetic demo), print what it is, warn when partial."""
    if args.synthetic:
        from lawfit.plotting.demo import synthetic_figure_data

        ds = synthetic_figure_data()[kind]
        print(f"# SYNTHETIC {kind} data (lawfit.testing): numbers describe the simulator\n")
        return ds
    ds = read_dataset(args.data, hint="or run with --synthetic for a demo.")
    n_done, n = ds.attrs.get("n_cells_done"), ds.attrs.get("n_cells")
    print(f"# data: {args.data}")
    print(f"# created {ds.attrs.get('created', '?')}, git {ds.attrs.get('git_revision', '?')}")
    if n is not None and str(ds.attrs.get("complete", "")).lower() not in ("true", "1"):
        print(
            f"# PARTIAL dataset: {n_done} of {n} cells collected so far; every number below "
            "is provisional."
        )
    print()
    return ds


def settings(ds):
    """(label, sub-dataset) for every setting with collected cells (lawfit.plotting helper)."""
    from lawfit.plotting._common import settings as _settings

    for label, _key, sub in _settings(ds):
        yield label or "all cells", sub


def sft(sub):
    """The SFT cells of a setting, or None (the ``objective`` dim's ``"sft"`` value)."""
    from lawfit.plotting._common import select_method

    return select_method(sub, "sft")


def sft_settings(ds):
    """(label, sub-dataset, SFT cells) per setting, each under a printed header.

    Settings without ok SFT cells are announced and skipped.
    """
    for label, sub in settings(ds):
        header(f"Setting: {label}")
        cells = sft(sub)
        if cells is None:
            print("no ok SFT cells: skipped\n")
            continue
        yield label, sub, cells


def cell_progress(out_dir, key, fingerprint: str) -> tuple[str, xr.Dataset | None, dict | None]:
    """Where a sweep cell stands: ``(state, cell, checkpoint)``.

    ``("done", cell dataset, None)`` once it finished ok, ``("running", None, its training
    state)`` while only a checkpoint (``.partial.pt``) exists, else ``("pending", None, None)``.
    """
    from collect.store import read_cell, read_state

    ds = read_cell(out_dir, key, fingerprint)
    if ds is not None and str(ds["status"].values) == "ok":
        return "done", ds, None
    partial = read_state(out_dir, key, "partial")
    if partial is not None:
        return "running", None, partial["state"]
    return "pending", None, None


def best_dl(ds, by_step: int | None = None) -> float:
    """The largest ΔL a cell's logged curve reached (by ``by_step``, else over the whole run)."""
    curve = ds["loss_curve"]
    if by_step is not None:
        curve = curve.sel(step=slice(0, by_step))
    return float(ds["loss_before"]) - float(np.nanmin(curve.values))


def cheapest_within(table, cells: list[str], tolerance: float) -> tuple[str | None, str]:
    """The protocol with the fewest steps that is within ``tolerance`` of the best everywhere.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per (protocol, cell): ``protocol``, the ``cells`` columns, ``state``
        (``done`` or not), ``steps`` and ``share_of_best`` (ΔL over the best ΔL any protocol
        reached on that cell).
    cells : list of str
        The columns that name a cell.
    tolerance : float
        Largest shortfall from the best ΔL allowed on any cell (0.01: 1 %).

    Returns
    -------
    tuple
        The chosen protocol (None when none qualifies yet) and why, judged only on the cells
        every protocol has finished.
    """
    done = table[table["state"] == "done"]
    counts = done.groupby(cells)["protocol"].nunique()
    common = counts[counts == table["protocol"].nunique()].index
    if len(common) == 0:
        return None, "no probe cell is finished under every protocol yet"
    shared = done.set_index(cells).loc[common].reset_index()
    ok = shared.groupby("protocol")["share_of_best"].min() >= 1 - tolerance
    cost = shared.groupby("protocol")["steps"].sum()
    within = cost[ok[ok].index]
    names = ", ".join(
        " ".join(f"{c} {v}" for c, v in zip(cells, np.atleast_1d(key), strict=True))
        for key in common
    )
    if within.empty:
        return None, f"no protocol is within {tolerance:.0%} of the best on {names}"
    return str(within.idxmin()), (
        f"cheapest within {tolerance:.0%} of the best ΔL on every cell finished under all "
        f"protocols ({names}): {int(within.min())} steps in all"
    )


def quiet():
    warnings.simplefilter("ignore")


def markdown(frame) -> str:
    """A pipe table of a DataFrame: floats to 4 significant digits, missing values blank."""

    def cell(v):
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def header(title: str) -> None:
    print("=" * 78)
    print(title)
    print("=" * 78)
