"""Pickling the frozen dataclasses that hold read-only mappings.

Results and forms freeze their mappings as :class:`types.MappingProxyType`, which
:mod:`pickle` cannot store, so a result could not cross a process boundary (``multiprocessing``,
``joblib``, ``concurrent.futures``). :func:`reduce_through_init` pickles such a dataclass by its
constructor arguments with every mapping proxy given as a plain ``dict``; unpickling calls the
constructor, whose ``__post_init__`` freezes them again. Saved files stay JSON
(:mod:`lawfit.protocol`); this is for passing live objects between processes.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any


def thaw(value: Any) -> Any:
    """Return ``value`` with every (nested) mapping proxy replaced by a plain ``dict``."""
    if isinstance(value, MappingProxyType):
        return {key: thaw(item) for key, item in value.items()}
    return value


def reduce_through_init(obj: Any) -> tuple[type, tuple]:
    """``__reduce__`` for a frozen dataclass: rebuild it from its (thawed) fields.

    Parameters
    ----------
    obj
        A dataclass instance whose fields are all constructor arguments.

    Returns
    -------
    tuple
        ``(type(obj), args)``, as :meth:`object.__reduce__` returns.
    """
    args = tuple(thaw(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return type(obj), args
