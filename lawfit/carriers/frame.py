"""A carrier's spec, its size, and its cells as a tidy frame.

:func:`carrier_of` reads a ``modules`` value as a carrier (kind and placement), its size
knob (``rank``, ``m`` or ``k``) and the template of its spec; :func:`knob_value` gives a
cell's knob. :func:`carrier_frame` gives the usable cells of one setting with their carrier,
knob and size (``n_params`` or ``n_bytes``, :data:`SIZES`), refusing data with several
settings besides the carriers.
"""

from __future__ import annotations

import re

import pandas as pd

from lawfit.data import GROUP_DIMS, as_frame, load_data, with_n_bytes
from lawfit.errors import LawfitError

#: Size measures of a carrier, and the data variable of each.
SIZES = {"params": "n_params", "bytes": "n_bytes"}
#: Carrier specs of ``collect`` (collect/carriers/spec.py): kind, size knob, placement.
_SPEC = re.compile(r"^(?P<kind>memtok|kv|skv):(?P<knob>[1-9]\d*)(@(?P<at>.+))?$")


def carrier_of(modules: str) -> tuple[str, str, str]:
    """Carrier label, size-knob name and spec template of a ``modules`` value.

    Parameters
    ----------
    modules : str
        A ``modules`` coordinate: ``memtok:16``, ``kv:8@20``, ``skv:64@all`` or a LoRA
        placement such as ``mlp_block@20``.

    Returns
    -------
    label, knob, template : str
        ``("memtok", "m", "memtok:{}")``, ``("kv@20", "m", "kv:{}@20")``,
        ``("skv@all", "k", "skv:{}@all")``; a LoRA placement is its own label with knob
        ``"rank"`` and template ``"<placement>, rank {}"``.

    Examples
    --------
    >>> carrier_of("kv:8@20")
    ('kv@20', 'm', 'kv:{}@20')
    >>> carrier_of("mlp_block@20")
    ('mlp_block@20', 'rank', 'mlp_block@20, rank {}')
    """
    text = str(modules).strip()
    match = _SPEC.match(text)
    if match is None:
        return text, "rank", f"{text}, rank {{}}"
    kind, at = match["kind"], match["at"]
    knob = "k" if kind == "skv" else "m"
    if at is None:
        return kind, knob, f"{kind}:{{}}"
    return f"{kind}@{at}", knob, f"{kind}:{{}}@{at}"


def knob_value(modules: str, rank: float) -> float:
    """Return the size knob of one cell: m or k from a carrier spec, else the LoRA rank.

    Examples
    --------
    >>> knob_value("kv:4@27", 1)
    4.0
    >>> knob_value("mlp_block@20", 2)
    2.0
    """
    match = _SPEC.match(str(modules).strip())
    return float(match["knob"]) if match else float(rank)


def _check_size(size: str) -> str:
    if size not in SIZES:
        raise LawfitError(
            f"size must be one of {sorted(SIZES)} (trainable parameters or bytes "
            f"at storage precision); got {size!r}."
        )
    return SIZES[size]


def _one_setting(data) -> None:
    """Refuse data with several settings other than carriers (select one first)."""
    if isinstance(data, pd.DataFrame):
        multi = [
            c
            for c in GROUP_DIMS
            if c != "modules" and c in data.columns and data[c].nunique(dropna=False) > 1
        ]
        has_modules = "modules" in data.columns
    else:
        multi = [d for d in GROUP_DIMS if d != "modules" and d in data.dims and data.sizes[d] > 1]
        has_modules = "modules" in data.dims or "modules" in data.coords
    if not has_modules:
        raise LawfitError(
            "the carriers are told apart by the 'modules' dim (e.g. "
            "'mlp_block@20', 'memtok:16', 'kv:8@20'); the data has none. Collect "
            "carriers with collect run --modules ..., or add a modules column."
        )
    if multi:
        raise LawfitError(
            f"one law across carriers is fitted within one setting; the data has "
            f"grouping dim(s) of size > 1 besides 'modules': {multi}. Select one "
            f"first, e.g. ds.sel({multi[0]}=...)."
        )


def carrier_frame(data, *, size: str = "params", dtype: str | None = None):
    """Usable cells of every carrier as a tidy frame, with their size.

    Parameters
    ----------
    data : xarray.Dataset, pandas.DataFrame or path
        One setting of a carrier sweep (a ``modules`` dim, ``n_params``).
    size : {"params", "bytes"}
        Size measure: ``n_params`` or ``n_bytes``.
    dtype : str, optional
        Storage dtype for deriving ``n_bytes`` when the data does not record it.

    Returns
    -------
    frame : pandas.DataFrame
        One row per usable cell with ``carrier``, ``knob``, the size column, ``length``,
        ``loss_reduction`` and what else the data has (``loss_after``, seeds, ...).
    notes : list of str
        How the size was obtained.
    """
    col = _check_size(size)
    data = load_data(data)
    _one_setting(data)
    notes = []
    if size == "bytes":
        data, note = with_n_bytes(data, dtype)
        notes += [note] if note else []
    frame, _ = as_frame(data, variables=("loss_reduction",), by="modules", inputs=(col, "length"))
    labels = frame["modules"].map(lambda m: carrier_of(m)[0])
    rank = frame["rank"] if "rank" in frame else pd.Series(1.0, index=frame.index)
    knob = [knob_value(m, r) for m, r in zip(frame["modules"], rank, strict=True)]
    return frame.assign(carrier=labels.to_numpy(), knob=knob), notes
