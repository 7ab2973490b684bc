"""lawfit: fit the Parametric Memory Law ΔL = C·r^α·ℓ^(−β) + b with honest uncertainty.

Public API (see ``docs/lawfit.md``): :func:`fit` returns a frozen :class:`FitResult`;
forms live in a registry (:func:`register_form`, :func:`get_form`,
:func:`available_forms`); :func:`load` reads a result saved as JSON.
Importing lawfit never imports torch or matplotlib.
"""

from lawfit import forms_extra as _forms_extra  # noqa: F401,I001  (registers alternative forms)
from lawfit.budget import at_budget, budget_sensitivity, convergence  # noqa: I001
from lawfit.capacity import bits_per_parameter, predict_capacity  # noqa: I001
from lawfit.capacity_forms import capacity_by_form  # noqa: I001
from lawfit.carriers import carrier_bits, carrier_law  # noqa: I001
from lawfit.compare import compare  # noqa: I001
from lawfit.design import next_cells  # noqa: I001
from lawfit.errors import LawfitError
from lawfit.extrapolate import at_extrapolated_budget, budget_extrapolation  # noqa: I001
from lawfit.fitting import fit
from lawfit.lack_of_fit import lack_of_fit, lack_of_fit_by_form  # noqa: I001
from lawfit.forms import Form, available_forms, get_form, register_form
from lawfit.memft import gradient_budget, memft_savings  # noqa: I001
from lawfit.report import build_report  # noqa: I001
from lawfit.result import FitResult, FitResults, Flag, load
from lawfit.shared import shared_exponents  # noqa: I001
from lawfit.transition import phase_transition  # noqa: I001
from lawfit.transfer import TransferredLaw, transfer_law  # noqa: I001

try:
    from importlib.metadata import version as _version

    __version__ = _version("lawfit")
except Exception:  # noqa: BLE001
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    """Import ``lawfit.plotting`` on first access (it needs matplotlib: optional)."""
    if name == "plotting":
        import importlib

        return importlib.import_module("lawfit.plotting")
    raise AttributeError(f"module 'lawfit' has no attribute {name!r}")


__all__ = [
    "fit",
    "load",
    "register_form",
    "get_form",
    "available_forms",
    "Form",
    "FitResult",
    "FitResults",
    "Flag",
    "LawfitError",
    "compare",
    "lack_of_fit",
    "lack_of_fit_by_form",
    "next_cells",
    "phase_transition",
    "predict_capacity",
    "capacity_by_form",
    "bits_per_parameter",
    "shared_exponents",
    "transfer_law",
    "TransferredLaw",
    "carrier_law",
    "carrier_bits",
    "gradient_budget",
    "memft_savings",
    "at_budget",
    "convergence",
    "budget_sensitivity",
    "budget_extrapolation",
    "at_extrapolated_budget",
    "build_report",
    "__version__",
]
