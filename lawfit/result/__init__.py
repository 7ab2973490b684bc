"""Frozen fit results: parameters, uncertainty, diagnostics, prediction, rendering, JSON.

:class:`FitResult` never refits itself; every method derives from stored numbers
(estimates, covariance, bootstrap draws, jackknife values, profile curves, the
fitted points). It owns its :class:`~lawfit.forms.Form` (a later
:func:`~lawfit.register_form` of the same name does not change it), its arrays are
read-only and its mappings immutable. It round-trips through plain JSON
(:meth:`FitResult.save`, :func:`load`): the form is stored as a spec with its
function's importable reference (``"module:qualname"``), and rebuilt from that
reference, or else from a registered form of the same name, on load.

The package holds one module per part of the result: ``fit_result`` (the
:class:`FitResult` dataclass, its parameters, exports and JSON form), ``intervals`` (its
confidence intervals, contrasts and exponent correlation), ``flags`` (its diagnostic
flags), ``prediction`` (:meth:`FitResult.predict` and its helpers), ``by_group``
(:class:`FitResults`, one result per group), ``summary`` (:class:`Summary`, the printed
table) and ``_common`` (the warning, the confidence-level keyword and the JSON and frame
helpers they share). :func:`load` lives here.
"""

from __future__ import annotations

from lawfit.data import read_saved_json
from lawfit.protocol import Flag, saved_as
from lawfit.protocol import _flt as _flt  # kept importable from here
from lawfit.result._common import _FORMAT_VERSION, ExtrapolationWarning
from lawfit.result._common import resolve_confidence_level as resolve_confidence_level
from lawfit.result.by_group import FitResults
from lawfit.result.fit_result import FitResult
from lawfit.result.summary import Summary

__all__ = ["FitResult", "FitResults", "Summary", "load", "ExtrapolationWarning", "Flag"]


def load(path):
    """Read a result written by any lawfit result's ``save``, as its own type.

    Parameters
    ----------
    path : str or path-like
        JSON file written by ``save``.

    Returns
    -------
    FitResult, FitResults or another lawfit result
        The result, of the type that was saved, with equal fields
        (:mod:`lawfit.protocol`); files of the earlier record format load as a
        :class:`~lawfit.protocol.ResultRecord`.

    Raises
    ------
    LawfitError
        Missing file, invalid JSON, not a lawfit result, a newer format version, a
        result type this lawfit does not have, or a form that is not registered in
        this session (register it first with :func:`lawfit.register_form`).
    """
    from lawfit.protocol import RECORD_FORMAT, RESULT_FORMAT, ResultRecord, result_from_dict

    d = read_saved_json(path, _FORMAT_VERSION)
    if d.get("format") == RESULT_FORMAT:
        return result_from_dict(d)
    if d.get("format") == RECORD_FORMAT:
        return ResultRecord.from_dict(d)
    if d.get("format") == "lawfit.FitResults":
        return FitResults.from_dict(d)
    return FitResult.from_dict(d)


# saved files keep naming these classes as this package's, as when it was one module
saved_as(__name__, ExtrapolationWarning, FitResult, FitResults, Summary)
