"""Small helpers the data modules share.

:func:`_describe` names an object's type and value for an error message, and
:func:`_as_list` turns a ``by=`` argument (None, a name or names) into a list.
"""

from __future__ import annotations


def _describe(obj) -> str:
    return f"{type(obj).__name__} {obj!r}"[:120]


def _as_list(by) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)
