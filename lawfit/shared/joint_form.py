"""The shared law as one form: every group's law, with the ``shared`` parameters common.

:func:`shared_form` turns the law of one group into one :class:`~lawfit.forms.Form` over
all groups, with an extra input ``group_index``; its function is a :class:`_PerGroup`,
which a saved law names and rebuilds (``lawfit.shared:_PerGroup``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from lawfit.forms import Form, form_from_spec

#: Column of the group label, and of the group's integer index in the joint fit.
GROUP, GROUP_INDEX = "group", "group_index"


class _PerGroup:
    """A form evaluated per group: shared parameters common, the others one per group."""

    def __init__(self, base: Form, n: int, shared: Sequence[str], names: dict):
        self.base, self.n, self.shared, self.names = base, n, tuple(shared), names

    def to_spec(self) -> dict:
        """JSON-safe recipe (:meth:`Form.to_spec` stores it, so a saved law loads back)."""
        return {
            "base": self.base.to_spec(),
            "n": self.n,
            "shared": list(self.shared),
            "names": {p: list(v) for p, v in self.names.items()},
        }

    @classmethod
    def from_spec(cls, spec: dict) -> _PerGroup:
        """Rebuild from :meth:`to_spec` output."""
        return cls(form_from_spec(spec["base"]), int(spec["n"]), spec["shared"], spec["names"])

    def _kw(self, j, params):
        return {p: params[p if p in self.shared else self.names[p][j]] for p in self.base.params}

    def __call__(self, *inputs, **params):
        *xs, idx = inputs
        out = 0.0
        for j in range(self.n):
            out = np.where(idx == j, self.base.func(*xs, **self._kw(j, params)), out)
        return out

    def jac(self, *inputs, **params):
        *xs, idx = inputs
        cols = {}
        for j in range(self.n):
            mask = idx == j
            for p, d in zip(
                self.base.params, self.base.jac(*xs, **self._kw(j, params)), strict=True
            ):
                name = p if p in self.shared else self.names[p][j]
                cols[name] = np.where(mask, d, cols.get(name, 0.0))
        return [cols[p] for p in self.param_order()]

    def param_order(self) -> tuple[str, ...]:
        """Parameter names: per-group copies grouped by base parameter, shared ones once."""
        return tuple(
            p if p in self.shared else self.names[p][j]
            for p in self.base.params
            for j in (range(1) if p in self.shared else range(self.n))
        )


def shared_form(base: Form, labels: Sequence[str], shared: Sequence[str]) -> Form:
    """One form over every group (extra input ``group_index``) with ``shared`` common.

    Parameters
    ----------
    base : Form
        The law of one group.
    labels : sequence of str
        The groups, in the order of their index (0, 1, ...).
    shared : sequence of str
        Parameters of ``base`` common to all groups.

    Returns
    -------
    Form
        Parameters ``alpha`` (shared) and ``C_<label>`` (per group), and so on.
    """
    tags = [re.sub(r"\W", "_", str(lab)) for lab in labels]
    if len(set(tags)) != len(tags):
        tags = [str(j) for j in range(len(labels))]
    names = {p: [f"{p}_{t}" for t in tags] for p in base.params if p not in shared}
    func = _PerGroup(base, len(labels), shared, names)
    params = func.param_order()
    origin = {q: p for p in base.params for q in ([p] if p in shared else names[p])}
    return Form(
        name=f"{base.name}_shared_{'_'.join(shared)}",
        func=func,
        inputs=(*base.inputs, GROUP_INDEX),
        params=params,
        bounds={q: base.bounds[origin[q]] for q in params},
        linear=tuple(q for q in params if origin[q] in base.linear),
        search={q: base.search[origin[q]] for q in params if origin[q] in base.search},
        jac=func.jac if base.jac is not None else None,
        latex=base.latex,
        text=f"{base.text}, {', '.join(shared)} shared across groups",
        description=f"{base.name} per group with {', '.join(shared)} shared",
    )
