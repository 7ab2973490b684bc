"""Carrier specs: parsing, the size knob of each, and the bytes a cell's carrier takes.

:func:`parse_carrier` reads a ``modules`` value as a carrier spec (:data:`CARRIER_SPECS`:
``memtok:m[@k]``, ``kv:m@k``, ``skv:k@LAYERS``), :func:`memory_size` gives its size knob (m
vectors, m KV slots or k kept positions) and :func:`derived_n_bytes` the bytes of a cell
written before ``n_bytes`` was recorded.
"""

from __future__ import annotations

import re

from collect.adapters import CARRIER_KINDS, ModulesSpec
from collect.errors import CollectError

_LAYERS = r"(?P<layers>all|-?\d+(,-?\d+)*)"

#: The carrier specs, by kind: ``memtok:m`` and ``memtok:m@k`` (one layer k: the vectors
#: enter the residual stream at layer k), ``kv:m@k`` (one layer k: the memory is read from
#: layer k on) and ``skv:k@LAYERS`` (``all``, one layer or a comma list), with m, k >= 1.
CARRIER_SPECS = {
    "memtok": re.compile(r"^memtok:(?P<m>[1-9]\d*)(@(?P<layers>-?\d+))?$"),
    "kv": re.compile(r"^kv:(?P<m>[1-9]\d*)@(?P<layers>-?\d+)$"),
    "skv": re.compile(rf"^skv:(?P<m>[1-9]\d*)@{_LAYERS}$"),
}

assert tuple(CARRIER_SPECS) == CARRIER_KINDS

#: The memory-token spec (kept for callers that match it alone).
CARRIER_SPEC = CARRIER_SPECS["memtok"]

#: what each carrier's size counts, for messages
CARRIER_KNOBS = {
    "memtok": "memory tokens",
    "kv": "key/value slots per layer",
    "skv": "positions kept per head",
}


def parse_carrier(text: str) -> ModulesSpec | None:
    """Parse a carrier spec (``memtok:m[@k]``, ``kv:m@k``, ``skv:k@LAYERS``); None if not one.

    Parameters
    ----------
    text : str
        A ``modules`` value of the sweep.

    Returns
    -------
    ModulesSpec or None
        ``parts`` is the kind, e.g. ``("kv",)``. ``layers`` is ``(0,)`` for memory tokens
        read before the key (they change what enters layer 0, so no prefix of the model can
        be cached), ``(k,)`` for memory tokens entering layer k and for a KV prefix, and the
        chosen layers (None = all) for sparse KV memory.
    """
    if not isinstance(text, str):
        return None
    count = re.match(r"^(memtok|kv|skv):(-?\d+)", text.strip())
    if count is not None and int(count[2]) < 1:
        raise CollectError(
            f"modules spec {text!r}: the {count[1]} carrier's size must be a whole number >= 1 "
            f"({CARRIER_KNOBS[count[1]]}); got {count[2]}."
        )
    for kind, pattern in CARRIER_SPECS.items():
        match = pattern.match(text.strip())
        if match is None:
            continue
        if match["layers"] is None:  # memtok:m
            layers = (0,)
        elif match["layers"] == "all":
            layers = None
        else:
            layers = tuple(int(x) for x in match["layers"].split(","))
        return ModulesSpec(text=text.strip(), parts=(kind,), layers=layers)
    return None


#: Bytes per element of the model dtypes a cell file records (its ``dtype`` attribute).
DTYPE_BYTES = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}


def derived_n_bytes(modules: str, n_params: int, dtype: str) -> int | None:
    """Bytes at storage precision of a cell written before ``n_bytes`` was recorded.

    Weight-delta adapters (LoRA, ``mlp_block``) are held in float32 whatever the model's
    dtype (:attr:`collect.adapters.Adapter.n_bytes`): 4 bytes per parameter. Carriers are held
    in the model's dtype, which cell files record as ``dtype`` (every carrier cell has it: the
    carriers came after it).

    Parameters
    ----------
    modules : str
        The cell's ``modules`` spec.
    n_params : int
        Its recorded ``n_params``.
    dtype : str
        Its recorded model dtype (``""`` where the cell has none).

    Returns
    -------
    int or None
        The bytes, or None for a carrier whose dtype is not recorded.
    """
    if parse_carrier(modules) is None:
        return 4 * int(n_params)
    size = DTYPE_BYTES.get(dtype)
    return None if size is None else size * int(n_params)


def memory_size(spec: ModulesSpec) -> int:
    """Return the size knob of a carrier spec: m vectors, m KV slots or k kept positions."""
    return int(CARRIER_SPECS[spec.parts[0]].match(spec.text)["m"])
