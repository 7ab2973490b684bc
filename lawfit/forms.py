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

import importlib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from lawfit._frozen import reduce_through_init
from lawfit.errors import LawfitError

__all__ = [
    "Form",
    "register_form",
    "get_form",
    "available_forms",
    "resolve_inputs",
    "form_from_spec",
    "callable_reference",
    "latex_to_text",
]


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
        LaTeX of the law (without ``$``), for LaTeX and notebook output.
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
    text : str
        Plain-text (Unicode) form of the law for terminals, e.g.
        ``"ΔL = C · r^α · ℓ^(−β) + b"``. Default: derived from ``latex`` by
        :func:`latex_to_text` (or the name when there is no LaTeX).

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
    text: str = ""

    def __post_init__(self):
        if not self.text:
            object.__setattr__(self, "text", latex_to_text(self.latex) or self.name)
        full = {
            p: tuple(float(v) for v in self.bounds.get(p, (-math.inf, math.inf)))
            for p in self.params
        }
        object.__setattr__(self, "bounds", MappingProxyType(full))
        object.__setattr__(self, "search", MappingProxyType(dict(self.search)))

    def __reduce__(self):
        """Pickle by the constructor's arguments (the read-only mappings as dicts)."""
        return reduce_through_init(self)

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

    @property
    def fixed(self) -> Mapping[str, float]:
        """Parameters held at fixed values (see :meth:`with_fixed`); empty if none."""
        return self.func.values if isinstance(self.func, _FixedParams) else MappingProxyType({})

    def with_fixed(self, values: Mapping[str, float]) -> Form:
        """Return this form with some parameters held at fixed values.

        Parameters
        ----------
        values : mapping
            ``name -> value`` for parameters of this form, e.g. ``{"b": 0.0}``.

        Returns
        -------
        Form
            A form over the remaining parameters (same inputs); its ``fixed``
            property records the held values.
        """
        values = dict(values)
        bad = [p for p in values if p not in self.params]
        if bad:
            raise LawfitError(
                f"form {self.name!r}: cannot fix unknown parameter(s) {bad}; its "
                f"parameters are {self.params}."
            )
        vals = {p: float(v) for p, v in values.items()}
        if not all(math.isfinite(v) for v in vals.values()):
            raise LawfitError(f"fixed values must be finite numbers; got {values!r}.")
        free = tuple(p for p in self.params if p not in vals)
        if not free:
            raise LawfitError(
                f"form {self.name!r}: fixing {sorted(vals)} leaves no free "
                "parameter to fit; fix fewer."
            )
        jac = None if self.jac is None else _FixedJac(self.jac, vals, self.params)
        func = _FixedParams(self.func, vals, self.params)
        note = ", ".join(f"{p} = {v:g}" for p, v in vals.items())
        return replace(
            self,
            func=func,
            jac=jac,
            params=free,
            bounds={p: self.bounds[p] for p in free},
            linear=tuple(p for p in self.linear if p in free),
            search={p: r for p, r in self.search.items() if p in free},
            latex=rf"{self.latex}\quad ({note})" if self.latex else "",
            text=f"{self.text}  ({note})",
            description=f"{self.description} [{note}]".strip(),
        )

    def to_spec(self) -> dict[str, Any]:
        """JSON-safe description of the form (functions by importable reference).

        ``func`` and ``jac`` are stored as ``"module:qualname"`` when importing that
        name gives back the same function (``None`` for lambdas and local
        functions); :func:`form_from_spec` rebuilds the form from it.
        """
        base = self.func.func if isinstance(self.func, _FixedParams) else self.func
        jac = self.jac.jac if isinstance(self.jac, _FixedJac) else self.jac
        base_params = self.func.base_params if isinstance(self.func, _FixedParams) else self.params
        return {
            "name": self.name,
            "func": _callable_spec(base),
            "jac": None if jac is None else _jac_spec(jac, base),
            "inputs": list(self.inputs),
            "params": list(base_params),
            "fixed": dict(self.fixed),
            "bounds": {p: [_finite_or_none(v) for v in b] for p, b in self.bounds.items()},
            "latex": self.latex,
            "linear": list(self.linear),
            "search": {p: list(r) for p, r in self.search.items()},
            "response": self.response,
            "description": self.description,
            "text": self.text,
        }

    def __repr__(self) -> str:
        fixed = f", fixed={dict(self.fixed)}" if self.fixed else ""
        return (
            f"Form({self.name!r}, inputs={self.inputs}, params={self.params}, "
            f"linear={self.linear}{fixed})"
        )


class _FixedParams:
    """``func`` with some keyword parameters held at fixed values (see Form.with_fixed)."""

    def __init__(self, func, values, base_params):
        self.func = func
        self.values = MappingProxyType(dict(values))
        self.base_params = tuple(base_params)

    def __call__(self, *inputs, **params):
        return self.func(*inputs, **params, **self.values)


class _FixedJac:
    """``jac`` of a form with fixed parameters: the columns of the free ones only."""

    def __init__(self, jac, values, base_params):
        self.jac = jac
        self.values = dict(values)
        self.keep = [j for j, p in enumerate(base_params) if p not in self.values]

    def __call__(self, *inputs, **params):
        cols = self.jac(*inputs, **params, **self.values)
        return [cols[j] for j in self.keep]


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def callable_reference(func: Callable) -> str | None:
    """``"module:qualname"`` of ``func`` if importing it gives back ``func``, else None."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    try:
        found = import_reference(f"{module}:{qualname}")
    except LawfitError:
        return None
    return f"{module}:{qualname}" if found is func else None


def _callable_spec(func: Callable) -> str | dict | None:
    """Return what a form saves for its function: a reference, or an object's recipe.

    A callable object whose class is importable and has ``to_spec()`` and a
    ``from_spec(spec)`` classmethod is saved as ``{"class": ref, "spec": ...}``.
    """
    cls_ref = callable_reference(type(func))
    if cls_ref and hasattr(func, "to_spec") and hasattr(type(func), "from_spec"):
        return {"class": cls_ref, "spec": func.to_spec()}
    return callable_reference(func)


def _jac_spec(jac: Callable, func: Callable) -> str | dict | None:
    """Return what a form saves for its jacobian (``{"method": name}`` for a method of func)."""
    if getattr(jac, "__self__", None) is func:
        return {"method": jac.__name__}
    return callable_reference(jac)


def _rebuild_callable(saved: str | Mapping[str, Any], owner: Callable | None = None) -> Callable:
    """Inverse of :func:`_callable_spec` / :func:`_jac_spec` (``owner``: the rebuilt func)."""
    if not isinstance(saved, Mapping):
        return import_reference(saved)
    if "method" in saved:
        return getattr(owner, saved["method"])
    cls = import_reference(saved["class"])
    if not hasattr(cls, "from_spec"):
        raise LawfitError(f"{saved['class']!r} has no from_spec(); cannot rebuild the function.")
    return cls.from_spec(saved["spec"])


def import_reference(ref: str) -> Any:
    """Import the object named by ``"module:attr"`` (``attr`` may be dotted).

    Raises
    ------
    LawfitError
        If the reference is malformed, the module cannot be imported or lacks the name.
    """
    module, sep, attr = str(ref).partition(":")
    if not sep or not module or not attr:
        raise LawfitError(f"a form reference must look like 'package.module:name'; got {ref!r}.")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise LawfitError(f"cannot import module {module!r} of {ref!r}: {exc}.") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LawfitError(f"module {module!r} has no attribute {attr!r} (from {ref!r}).")
        obj = getattr(obj, part)
    return obj


def _func_from_spec(spec: Mapping[str, Any]) -> tuple[Callable, Callable | None, str]:
    """Find the saved form's function and jacobian: by reference, else by registry name."""
    problems = []
    if spec.get("func"):
        try:
            func = _rebuild_callable(spec["func"])
            jac = _rebuild_callable(spec["jac"], func) if spec.get("jac") else None
            return func, jac, "its saved reference"
        except LawfitError as exc:
            problems.append(str(exc))
    else:
        problems.append(
            "its function has no importable reference (a lambda, a local "
            "function or one defined in __main__)"
        )
    form = _REGISTRY.get(spec["name"])
    if (
        form is not None
        and tuple(form.params) == tuple(spec["params"])
        and tuple(form.inputs) == tuple(spec["inputs"])
    ):
        return form.func, form.jac, f"registered name {spec['name']!r}"
    problems.append(
        f"no form named {spec['name']!r} with parameters {tuple(spec['params'])} "
        f"and inputs {tuple(spec['inputs'])} is registered"
    )
    raise LawfitError(
        f"cannot rebuild the saved form {spec['name']!r} (LaTeX: {spec.get('latex', '')!r}): "
        + "; ".join(problems)
        + ". Fix: make its module importable (on sys.path), or register "
        f"it first with lawfit.register_form({spec['name']!r}, func, ...), then load again."
    )


def form_from_spec(spec: Mapping[str, Any]) -> Form:
    """Rebuild a :class:`Form` from :meth:`Form.to_spec` output.

    The function is imported by its saved reference (``"module:qualname"``); if that
    fails, a registered form of the same name, parameters and inputs is used. Bounds,
    linear parameters, search ranges, LaTeX and fixed values come from the spec, so
    the rebuilt form is the one that was fitted.

    Raises
    ------
    LawfitError
        If neither the reference nor the registry provides the function.
    """
    func, jac, _ = _func_from_spec(spec)
    bounds = {
        p: tuple(
            -math.inf if v is None and i == 0 else math.inf if v is None else v
            for i, v in enumerate(b)
        )
        for p, b in spec["bounds"].items()
    }
    fixed = dict(spec.get("fixed") or {})
    full_bounds = {p: bounds.get(p, (-math.inf, math.inf)) for p in spec["params"]}
    form = Form(
        name=spec["name"],
        func=func,
        inputs=tuple(spec["inputs"]),
        params=tuple(spec["params"]),
        bounds=full_bounds,
        latex=spec.get("latex", ""),
        linear=tuple(spec["linear"]),
        search={p: tuple(r) for p, r in spec.get("search", {}).items()},
        jac=jac,
        response=spec.get("response", "loss_reduction"),
        description=spec.get("description", ""),
        text=spec.get("text", ""),
    )
    if not fixed:
        return form
    return replace(
        form.with_fixed(fixed), latex=form.latex, description=form.description, text=form.text
    )


#: LaTeX commands rendered as one Unicode character (or word) in plain text.
_LATEX_SYMBOLS = {
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "epsilon": "ε",
    "zeta": "ζ",
    "eta": "η",
    "theta": "θ",
    "kappa": "κ",
    "lambda": "λ",
    "mu": "μ",
    "nu": "ν",
    "xi": "ξ",
    "pi": "π",
    "rho": "ρ",
    "sigma": "σ",
    "tau": "τ",
    "phi": "φ",
    "chi": "χ",
    "psi": "ψ",
    "omega": "ω",
    "Delta": "Δ",
    "Gamma": "Γ",
    "Lambda": "Λ",
    "Sigma": "Σ",
    "Omega": "Ω",
    "ell": "ℓ",
    "cdot": "·",
    "times": "×",
    "infty": "∞",
    "exp": "exp",
    "log": "log",
    "ln": "ln",
    "quad": "  ",
    "qquad": "  ",
    "left": "",
    "right": "",
}


def latex_to_text(latex: str) -> str:
    r"""Plain-text (Unicode) rendering of a simple LaTeX formula, for terminals.

    Greek letters and ``\ell`` become their characters, spacing commands are
    dropped, ``\mathrm{x}``/``\text{x}`` become ``x``, ``\frac{a}{b}`` becomes
    ``(a)/(b)`` and a braced super- or subscript of more than one character is
    parenthesised. Commands it does not know are kept without their backslash.

    Parameters
    ----------
    latex : str
        A formula without ``$``, e.g. ``r"\Delta L = C\, r^{\alpha}\, \ell^{-\beta} + b"``.

    Returns
    -------
    str
        E.g. ``"ΔL = C r^α ℓ^(-β) + b"``.

    Examples
    --------
    >>> latex_to_text(r"\Delta L = C\, (r/\ell)^{\gamma}")
    'ΔL = C (r/ℓ)^γ'
    """
    s = re.sub(r"\\(?:mathrm|text|operatorname|mathit)\{([^{}]*)\}", r"\1", str(latex))
    s = re.sub(r"\\[,;:! ]", " ", s)
    s = re.sub(r"\\([A-Za-z]+)", lambda m: _LATEX_SYMBOLS.get(m.group(1), m.group(1)), s)
    inner = re.compile(r"\{([^{}]*)\}")
    while True:  # innermost braces first: fractions, then scripts, then bare groups
        new = re.sub(r"frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", s)
        new = re.sub(
            r"([\^_])\{([^{}]*)\}",
            lambda m: (
                m.group(1)
                + (m.group(2) if len(m.group(2).strip()) == 1 else f"({m.group(2).strip()})")
            ),
            new,
        )
        new = inner.sub(r"\1", new) if new == s else new
        if new == s:
            break
        s = new
    s = re.sub(r"(?<=[ΔΓΛΣΩ]) (?=[A-Za-z])", "", s)  # "\Delta L" -> "ΔL"
    return re.sub(r"\s+", " ", s).strip()


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
    text: str = "",
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
    bounds, latex, linear, search, jac, response, description, text
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
    pos = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
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
    for group, what in (
        (linear, "linear"),
        (tuple((bounds or {}).keys()), "bounds"),
        (tuple((search or {}).keys()), "search"),
    ):
        bad = [p for p in group if p not in kw]
        if bad:
            raise LawfitError(
                f"form {name!r}: {what} names unknown parameter(s) {bad}; parameters are {kw}."
            )
    for p, (lo, hi) in (bounds or {}).items():
        if not lo < hi:
            raise LawfitError(
                f"form {name!r}: bounds for {p!r} must have low < high; got {(lo, hi)}."
            )
    form = Form(
        name=name,
        func=func,
        inputs=inputs,
        params=tuple(kw),
        bounds=dict(bounds or {}),
        latex=latex,
        linear=tuple(linear),
        search=dict(search or {}),
        jac=jac,
        response=response,
        description=description,
        text=text,
    )
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
        raise LawfitError(f"capacity must be 'rank' or 'n_params'; got {capacity!r}.")
    if capacity == "rank":
        return form.inputs
    return tuple("n_params" if i == "rank" else i for i in form.inputs)


register_form(
    "power_law",
    _power_law,
    inputs=("rank", "length"),
    bounds={"alpha": (-2.0, 4.0), "beta": (-2.0, 4.0)},
    latex=r"\Delta L = C\, r^{\alpha}\, \ell^{-\beta} + b",
    text="ΔL = C · r^α · ℓ^(−β) + b",
    linear=("C", "b"),
    jac=_power_law_jac,
    description="Parametric Memory Law: C * r**alpha * length**(-beta) + b",
)
