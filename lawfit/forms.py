"""Functional forms of a scaling law: frozen specs in a user-extensible registry.

A form is a plain numpy function whose *positional* arguments are the inputs (names
of dataset coordinates or variables, e.g. ``rank`` and ``length``) and whose
*keyword-only* arguments are the parameters (lmfit's ``Model`` convention). It is
wrapped in a frozen :class:`Form` with bounds, a LaTeX string and the names of the
parameters that enter linearly (those are solved in closed form by variable
projection, see :mod:`lawfit._varpro`).

The function must broadcast: it is called with inputs of shape ``(n,)`` and
parameters of shape ``(R, 1)`` (``R`` parameter vectors at once) and must return an
array broadcastable to ``(R, n)``. Any function written with numpy ufuncs does.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from lawfit.errors import LawfitError

__all__ = ["Form", "register_form", "get_form", "available_forms", "resolve_inputs"]


@dataclass(frozen=True, eq=False)
class Form:
    r"""Frozen specification of a functional form.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"power_law"``.
    func : callable
        ``func(*inputs, **params) -> array``; positional arguments are the inputs,
        keyword-only arguments the parameters. Must broadcast (see module docstring).
    inputs : tuple of str
        Names of the dataset coordinates/variables fed positionally to ``func``.
    params : tuple of str
        Parameter names, in the order used for arrays (covariance, draws).
    bounds : mapping
        ``name -> (low, high)``; missing names are unbounded.
    latex : str
        LaTeX of the law (without ``$``), for summaries and saved results.
    linear : tuple of str
        Parameters in which ``func`` is affine. They are solved in closed form for
        fixed values of the others (variable projection). Declaring a parameter
        linear when it is not gives wrong fits; leave it out when unsure.
    search : mapping
        ``name -> (low, high)`` range of the global grid search for nonlinear
        parameters whose bounds are infinite (required for those).
    jac : callable, optional
        ``jac(*inputs, **params) -> sequence`` of derivatives of ``func`` with
        respect to each parameter (in ``params`` order). Optional; forward
        differences are used otherwise (exact for linear parameters).
    response : str
        Name of the modelled variable (default ``"loss_reduction"``).
    description : str
        One line for listings.

    Examples
    --------
    >>> import numpy as np
    >>> import lawfit
    >>> def chinchilla(n_params, length, *, E, A, a, B, b):
    ...     return E + A / n_params**a + B / length**b
    >>> form = lawfit.register_form(
    ...     "chinchilla_demo", chinchilla, inputs=("n_params", "length"),
    ...     linear=("E", "A", "B"), bounds={"a": (0, 2), "b": (0, 2)},
    ...     latex=r"E + A N^{-a} + B \ell^{-b}", overwrite=True)
    >>> form.params
    ('E', 'A', 'a', 'B', 'b')
    """

    name: str
    func: Callable[..., np.ndarray]
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    latex: str = ""
    linear: tuple[str, ...] = ()
    search: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    jac: Callable[..., Sequence[np.ndarray]] | None = None
    response: str = "loss_reduction"
    description: str = ""

    def __post_init__(self):
        full = {p: tuple(float(v) for v in self.bounds.get(p, (-math.inf, math.inf)))
                for p in self.params}
        object.__setattr__(self, "bounds", MappingProxyType(full))
        object.__setattr__(self, "search", MappingProxyType(dict(self.search)))

    @property
    def nonlinear(self) -> tuple[str, ...]:
        """Parameters that are not linear (searched on a grid, then polished)."""
        return tuple(p for p in self.params if p not in self.linear)

    def lower_upper(self) -> tuple[np.ndarray, np.ndarray]:
        """Return arrays of lower and upper bounds in ``params`` order."""
        lo = np.array([self.bounds[p][0] for p in self.params], float)
        hi = np.array([self.bounds[p][1] for p in self.params], float)
        return lo, hi

    def search_range(self, p: str) -> tuple[float, float]:
        """Finite range of the global grid for parameter ``p``."""
        if p in self.search:
            return tuple(float(v) for v in self.search[p])
        lo, hi = self.bounds[p]
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
        raise LawfitError(
            f"form {self.name!r}: parameter {p!r} is nonlinear with infinite bounds "
            f"{(lo, hi)} and no search range; pass search={{{p!r}: (low, high)}} "
            "(or finite bounds) to register_form."
        )

    def __call__(self, *inputs, **params):
        """Evaluate the law (same call as ``func``)."""
        return self.func(*inputs, **params)

    def __repr__(self) -> str:
        return (f"Form({self.name!r}, inputs={self.inputs}, params={self.params}, "
                f"linear={self.linear})")


def _power_law(x, length, *, C, alpha, beta, b):
    return C * np.exp(alpha * np.log(x) - beta * np.log(length)) + b


def _power_law_jac(x, length, *, C, alpha, beta, b):
    lx, ll = np.log(x), np.log(length)
    g = np.exp(alpha * lx - beta * ll)
    cg = C * g
    return (g, cg * lx, -cg * ll, 1.0)


_REGISTRY: dict[str, Form] = {}


def register_form(
    name: str,
    func: Callable[..., np.ndarray],
    *,
    inputs: Sequence[str] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    latex: str = "",
    linear: Sequence[str] = (),
    search: Mapping[str, tuple[float, float]] | None = None,
    jac: Callable[..., Sequence[np.ndarray]] | None = None,
    response: str = "loss_reduction",
    description: str = "",
    overwrite: bool = False,
) -> Form:
    """Register a functional form so that :func:`lawfit.fit` can use it by name.

    Parameters
    ----------
    name : str
        Registry name.
    func : callable
        Plain numpy function; positional arguments are inputs, keyword-only
        arguments are parameters.
    inputs : sequence of str, optional
        Dataset coordinate/variable names for the positional arguments. Default:
        the positional argument names of ``func``.
    bounds, latex, linear, search, jac, response, description
        See :class:`Form`.
    overwrite : bool
        Replace an existing form of the same name (default: error).

    Returns
    -------
    Form
        The registered spec.
    """
    if not isinstance(name, str) or not name:
        raise LawfitError(f"form name must be a non-empty string; got {name!r}.")
    if name in _REGISTRY and not overwrite:
        raise LawfitError(
            f"a form named {name!r} is already registered; pass overwrite=True to replace it."
        )
    if not callable(func):
        raise LawfitError(f"func must be callable; got {type(func).__name__}.")
    sig = inspect.signature(func)
    pos = [p.name for p in sig.parameters.values()
           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    kw = [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]
    if not kw:
        raise LawfitError(
            f"form {name!r}: func has no keyword-only parameters; write it as "
            "def f(rank, length, *, C, alpha, ...) so the parameters follow the '*'."
        )
    inputs = tuple(inputs) if inputs is not None else tuple(pos)
    if len(inputs) != len(pos):
        raise LawfitError(
            f"form {name!r}: func takes {len(pos)} positional input(s) {pos} but "
            f"inputs={inputs} names {len(inputs)}."
        )
    if not inputs:
        raise LawfitError(f"form {name!r}: needs at least one input.")
    for group, what in ((linear, "linear"), (tuple((bounds or {}).keys()), "bounds"),
                        (tuple((search or {}).keys()), "search")):
        bad = [p for p in group if p not in kw]
        if bad:
            raise LawfitError(
                f"form {name!r}: {what} names unknown parameter(s) {bad}; parameters are {kw}."
            )
    for p, (lo, hi) in (bounds or {}).items():
        if not lo < hi:
            raise LawfitError(f"form {name!r}: bounds for {p!r} must have low < high; "
                              f"got {(lo, hi)}.")
    form = Form(name=name, func=func, inputs=inputs, params=tuple(kw), bounds=dict(bounds or {}),
                latex=latex, linear=tuple(linear), search=dict(search or {}), jac=jac,
                response=response, description=description)
    for p in form.nonlinear:
        form.search_range(p)  # raises if no finite grid range
    _REGISTRY[name] = form
    return form


def get_form(name: str | Form) -> Form:
    """Return the registered :class:`Form` called ``name`` (a Form passes through).

    Raises
    ------
    LawfitError
        If no such form is registered; the message lists the available ones.
    """
    if isinstance(name, Form):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise LawfitError(
            f"unknown form {name!r}; available forms: {available_forms()}. "
            "Register custom forms first with lawfit.register_form(name, func, ...)."
        ) from None


def available_forms() -> list[str]:
    """Names of the registered forms, sorted."""
    return sorted(_REGISTRY)


def resolve_inputs(form: Form, capacity: str = "rank") -> tuple[str, ...]:
    """Map the form's inputs for ``capacity`` (``"rank"`` or ``"n_params"``).

    With ``capacity="n_params"`` the ``rank`` input is replaced by the adapter's
    trainable parameter count (the ``n_params`` variable).
    """
    if capacity not in ("rank", "n_params"):
        raise LawfitError(
            f"capacity must be 'rank' or 'n_params'; got {capacity!r}."
        )
    if capacity == "rank":
        return form.inputs
    return tuple("n_params" if i == "rank" else i for i in form.inputs)


register_form(
    "power_law",
    _power_law,
    inputs=("rank", "length"),
    bounds={"alpha": (-2.0, 4.0), "beta": (-2.0, 4.0)},
    latex=r"\Delta L = C\, r^{\alpha}\, \ell^{-\beta} + b",
    linear=("C", "b"),
    jac=_power_law_jac,
    description="Parametric Memory Law: C * r**alpha * length**(-beta) + b",
)
