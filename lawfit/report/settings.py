"""What every section reads: one setting's cells, the report's options, shared helpers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import xarray as xr

from lawfit import space as _space
from lawfit._tokens import GROUP_DIMS
from lawfit.data import LN2, ok_cells
from lawfit.errors import LawfitError

#: Breusch-Pagan level of the log-space decision (one rule for lawfit: :mod:`lawfit.space`)
HETEROSCEDASTIC_P = _space.HETEROSCEDASTIC_P
#: a MemFT method whose shared-exponent law misses its cells by more than this multiple of
#: the SFT law's RMSE gets no saving claimed: the law does not describe its cells
RMSE_RATIO_LIMIT = 2.0


@dataclass
class _Setting:
    """One setting of the sweep (every method) and what its sections computed."""

    label: str
    data: xr.Dataset
    sft: xr.Dataset | None
    results: dict


@dataclass(frozen=True)
class _Options:
    bootstrap: int
    level: float
    rng: int
    targets_length: tuple[float, ...] | None


def _collected_mask(ds: xr.Dataset) -> xr.DataArray | None:
    """Cells that hold data (collected in any state), or None when the data cannot say."""
    if "status" in ds:
        return ds["status"] != "not_run"
    if "loss_reduction" in ds:
        return ds["loss_reduction"].notnull()
    return None


def _split_settings(ds: xr.Dataset) -> tuple[list[tuple[str, xr.Dataset]], list[str]]:
    """Split the settings (grouping dims other than objective) into those with and without data."""
    dims = [d for d in GROUP_DIMS if d != "objective" and d in ds.dims]
    multi = [d for d in dims if ds.sizes[d] > 1]
    if not multi:
        label = ", ".join(f"{d}={ds[d].values[0]}" for d in dims) or "all cells"
        return [(label, ds)], []
    found, empty = [], []
    for combo in itertools.product(*[ds[d].values.tolist() for d in multi]):
        sel = dict(zip(multi, combo, strict=True))
        sub = ds.sel({k: [v] for k, v in sel.items()})
        label = ", ".join(f"{k}={v}" for k, v in sel.items())
        mask = _collected_mask(sub)
        (found if mask is None or bool(mask.any()) else empty).append((label, sub))
    return found, [label for label, _ in empty]


def _sft(ds: xr.Dataset):
    if "objective" not in ds.dims:
        return ds
    if "sft" in ds["objective"].values:
        return ds.sel({"objective": ["sft"]})
    return None


def _has_ok_cells(ds: xr.Dataset) -> bool:
    return "loss_reduction" in ds and bool(ok_cells(ds).any())


def _notes(result) -> list:
    """Report blocks for a result's structured flags, then its plain notes."""
    flags = [("note", str(f)) for f in getattr(result, "flags", ())]
    return flags + [("note", n) for n in getattr(result, "notes", ())]


def _require_law_data(st: _Setting) -> xr.Dataset:
    """Return the SFT cells of a setting, or raise a LawfitError that says what is missing."""
    if st.sft is None:
        raise LawfitError("no 'sft' objective in this setting; the law is fitted on SFT cells.")
    if "rank" not in st.sft.dims or "length" not in st.sft.dims:
        raise LawfitError("the data has no rank and length dims; the law needs both.")
    if not _has_ok_cells(st.sft):
        raise LawfitError("no SFT cell with status 'ok' and a loss_reduction.")
    return st.sft


def _rank_context(sft: xr.Dataset) -> str:
    """Which ranks were collected and which the law can use (memorized cells are excluded)."""
    if "loss_after" not in sft or "rank" not in sft.dims:
        return ""
    ok = sft["loss_reduction"].notnull()
    if "status" in sft:
        ok = ok & (sft["status"] == "ok")
    fitted = ok & (sft["loss_after"] > LN2)
    others = [d for d in ok.dims if d != "rank"]
    have = sft["rank"].values[ok.any(others).values].tolist()
    used = sft["rank"].values[fitted.any(others).values].tolist()
    if have == used:
        return ""
    return (
        f" Ranks collected: {have}; not memorized (loss_after > ln 2, what the law fits): {used}."
    )
