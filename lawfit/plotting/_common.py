"""Data helpers shared by the figure modules (no matplotlib at import time)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import xarray as xr

from lawfit._tokens import CELL_DIMS, GROUP_DIMS, load
from lawfit.data import LN2
from lawfit.errors import LawfitError

__all__ = ["cells_frame", "settings", "select_method", "fig_ax", "log_ticks", "plain_log", "LN2"]


def cells_frame(ds: xr.Dataset, variables, *, ok_only: bool = True) -> pd.DataFrame:
    """Tidy frame of cell variables: one row per cell, NaN-free, status ``ok`` only."""
    ds = load(ds)
    variables = [v for v in variables if v in ds]
    if not variables:
        return pd.DataFrame()
    keep = variables + (["status"] if "status" in ds and ok_only else [])
    sub = ds[keep]
    for extra in ("token", "step"):
        if extra in sub.dims:
            sub = sub.isel({extra: 0}, drop=True)
    df = sub.to_dataframe().reset_index()
    if ok_only and "status" in df:
        df = df[df["status"].astype(str) == "ok"].drop(columns="status")
    cols = [c for c in df.columns if c in CELL_DIMS or c in variables]
    df = df[cols].dropna(subset=variables)
    return df.reset_index(drop=True)


def settings(ds: xr.Dataset):
    """Yield ``(label, key, sub)`` per setting (model × task × random_ratio × modules).

    Settings without any ok cell are skipped. ``key`` is a short file-name-safe tag.
    """
    ds = load(ds)
    dims = [d for d in GROUP_DIMS if d != "objective" and d in ds.dims]
    multi = [d for d in dims if ds.sizes[d] > 1]
    combos = itertools.product(*[ds[d].values.tolist() for d in multi]) if multi else [()]
    for combo in combos:
        sel = dict(zip(multi, combo, strict=True))
        sub = ds.sel({k: [v] for k, v in sel.items()}) if sel else ds
        if "status" in sub and not bool((sub["status"] == "ok").any()):
            continue
        label = ", ".join(f"{k}={v}" for k, v in sel.items())
        if not label:
            label = ", ".join(f"{d}={ds[d].values[0]}" for d in dims if d in ("task", "model"))
        key = "_".join(_tag(k, v) for k, v in sel.items()) or "all"
        yield label, key, sub


def _tag(k, v) -> str:
    if k == "random_ratio":
        return f"r{int(round(100 * float(v)))}"
    s = str(v)
    for ch in "@+/ .=:":
        s = s.replace(ch, "-")
    return s


def select_method(ds: xr.Dataset, method: str = "sft") -> xr.Dataset | None:
    """Return the cells of one objective (None when absent), keeping a size-1 objective dim."""
    if "objective" not in ds.dims:
        return ds if method == "sft" else None
    if method not in [str(m) for m in ds["objective"].values]:
        return None
    sub = ds.sel({"objective": [method]})
    if "status" in sub and not bool((sub["status"] == "ok").any()):
        return None
    return sub


def methods_present(ds: xr.Dataset) -> list[str]:
    """Methods with at least one ok cell."""
    if "objective" not in ds.dims:
        return ["sft"]
    return [str(m) for m in ds["objective"].values if select_method(ds, str(m)) is not None]


def fig_ax(ax, width=3.3, height=2.5):
    """Return ``(fig, ax)``: the given axes' figure, or a new one-panel figure."""
    from lawfit.plotting.style import new_figure

    if ax is not None:
        return ax.figure, ax
    return new_figure(width, height)


def log_ticks(ax, axis: str = "x", values=None) -> None:
    """Put plain-number ticks (1, 2, 4, ...) on a log axis at the given values."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    if values is None:
        return
    vals = sorted({float(v) for v in values})
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(vals))
    a.set_major_formatter(_plain_formatter())
    a.set_minor_formatter(NullFormatter())


def _plain_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _pos):
        if v >= 1 and abs(v - round(v)) < 1e-9:
            return f"{int(round(v))}"
        return f"{v:g}"

    return FuncFormatter(fmt)


def require(ds: xr.Dataset, variables, what: str) -> None:
    """Raise LawfitError when variables are missing."""
    miss = [v for v in variables if v not in ds]
    if miss:
        raise LawfitError(
            f"{what} needs the variables {miss}; the dataset has {sorted(ds.data_vars)}. "
            "Collect them (data contract, DESIGN.md §3) or skip this figure."
        )


def plain_log(ax, axis: str = "y") -> None:
    """Label a log axis with plain numbers (0.1, 0.2, 0.5, 1, ...) instead of 10^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    if not (lo > 0 and hi > 0):
        return
    decades = np.log10(hi / lo)
    subs = (
        (1.0,) if decades > 2.5 else (1.0, 2.0, 5.0) if decades > 0.8 else (1.0, 2.0, 3.0, 5.0, 7.0)
    )
    a.set_major_locator(LogLocator(base=10, subs=subs))
    a.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())
