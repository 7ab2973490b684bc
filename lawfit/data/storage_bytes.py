"""A carrier's bytes at storage precision (``n_bytes``), derived when not recorded.

:func:`with_n_bytes` returns the data with ``n_bytes``: as recorded, or ``n_params`` ×
the bytes per scalar of the storage dtype (``DTYPE_BYTES``, read by :func:`_dtype_bytes`);
:func:`_check_bytes_known` refuses an ok cell whose dtype is unknown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lawfit.data.reading import load_data
from lawfit.errors import LawfitError

#: Bytes per stored scalar of the storage dtypes ``collect`` records (per-cell ``dtype``).
DTYPE_BYTES = {
    "float64": 8,
    "float32": 4,
    "bfloat16": 2,
    "float16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int8": 1,
}


def _dtype_bytes(name, where: str) -> float:
    """Bytes per scalar of a dtype name (``"torch.float32"`` or ``"float32"``); NaN for ""."""
    name = str(name).removeprefix("torch.")
    if not name:
        return np.nan
    if name not in DTYPE_BYTES:
        raise LawfitError(
            f"{where}: unknown storage dtype {name!r}; expected one of "
            f"{sorted(DTYPE_BYTES)}. Pass dtype=<one of them>."
        )
    return float(DTYPE_BYTES[name])


def with_n_bytes(ds, dtype: str | None = None):
    """Return ``ds`` with ``n_bytes`` (the carrier's bytes at storage precision), and a note.

    A dataset that records ``n_bytes`` is returned as it is. Otherwise ``n_bytes`` is derived
    as ``n_params`` × the bytes of the storage dtype: ``dtype`` when given, else the per-cell
    ``dtype`` text that ``collect`` records, else the sweep config's ``dtype`` attribute.

    Parameters
    ----------
    ds : xarray.Dataset or pandas.DataFrame
        Contract data with ``n_params``.
    dtype : str, optional
        Storage dtype of every carrier (e.g. ``"float32"``, ``"bfloat16"``).

    Returns
    -------
    data : xarray.Dataset or pandas.DataFrame
        The data with ``n_bytes``.
    note : str or None
        How ``n_bytes`` was derived (None when it was recorded).

    Raises
    ------
    LawfitError
        Without ``n_params``, or when an ok cell's storage dtype is unknown.
    """
    import json

    import xarray as xr

    data = load_data(ds)
    names = data.columns if isinstance(data, pd.DataFrame) else data.data_vars
    if "n_bytes" in names:
        return data, None
    if "n_params" not in names:
        raise LawfitError(
            "n_bytes needs 'n_params' (the exact trainable parameter count) to be "
            f"derived; the data has {sorted(map(str, names))}. Collect n_params."
        )
    if dtype is not None:
        per = _dtype_bytes(dtype, "dtype=")
        how = f"given dtype {dtype!r}"
    elif "dtype" in names:
        cell = data["dtype"]
        per = (
            cell.map(lambda v: _dtype_bytes(v, "the data's dtype"))
            if isinstance(data, pd.DataFrame)
            else xr.apply_ufunc(
                np.vectorize(lambda v: _dtype_bytes(v, "the data's dtype"), otypes=[float]), cell
            )
        )
        how = "the per-cell dtype"
        cfg = json.loads(data.attrs.get("config") or "{}") if hasattr(data, "attrs") else {}
        if cfg.get("dtype"):
            per = per.fillna(_dtype_bytes(cfg["dtype"], "the sweep config"))
            how += f" (the sweep config's {cfg['dtype']!r} where a cell has none)"
    else:
        raise LawfitError(
            "n_bytes cannot be derived: the data records no storage 'dtype' per "
            "cell. Pass dtype='float32' (or the carriers' storage dtype)."
        )
    n_bytes = data["n_params"] * per
    _check_bytes_known(data, n_bytes)
    note = f"n_bytes not recorded: derived as n_params × bytes per scalar of {how}"
    return data.assign(n_bytes=n_bytes), note


def _check_bytes_known(data, n_bytes) -> None:
    """Raise when an ok cell's n_bytes is unknown (its dtype was not recorded)."""
    import xarray as xr

    if isinstance(data, pd.DataFrame):
        known = np.isfinite(np.asarray(n_bytes, float))
        ok = (data["status"].astype(str) == "ok").to_numpy() if "status" in data else True
    else:
        status_ok = (data["status"] == "ok") if "status" in data else xr.ones_like(n_bytes, bool)
        nb, status_ok = xr.broadcast(n_bytes, status_ok)
        known, ok = np.isfinite(nb.values.astype(float)), status_ok.values
    bad = ~known & ok
    if np.any(bad):
        raise LawfitError(
            f"n_bytes cannot be derived for {int(np.sum(bad))} ok cell(s): their storage dtype "
            "was not recorded (dtype ''), and the sweep config names none. Pass "
            "dtype='float32' (or the carriers' storage dtype)."
        )
