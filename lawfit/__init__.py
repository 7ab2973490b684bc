"""lawfit: fit the Parametric Memory Law ΔL = C·r^α·ℓ^(−β) + b with honest uncertainty.

Public API (see ``docs/lawfit.md``): :func:`fit` returns a frozen :class:`FitResult`;
forms live in a registry (:func:`register_form`, :func:`get_form`,
:func:`available_forms`); :func:`load` reads a result saved as JSON.
Importing lawfit never imports torch or matplotlib.
"""

from lawfit.errors import LawfitError
from lawfit.forms import Form, available_forms, get_form, register_form
from lawfit.result import FitResult, FitResults, load
from lawfit.fitting import fit  # noqa: I001  (after result: fitting imports it)

try:
    from importlib.metadata import version as _version

    __version__ = _version("lawfit")
except Exception:  # noqa: BLE001
    __version__ = "0.0.0+unknown"

__all__ = [
    "fit",
    "load",
    "register_form",
    "get_form",
    "available_forms",
    "Form",
    "FitResult",
    "FitResults",
    "LawfitError",
    "__version__",
]
