"""The capacity law across carriers: per carrier, with shared exponents, and the test.

:func:`carrier_law` fits the law per carrier against its size, then once with the exponents
shared across carriers, by :func:`lawfit.shared.compare_shared`; :class:`CarrierLaw` holds
both laws and their comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lawfit.carriers.frame import SIZES, carrier_frame
from lawfit.errors import LawfitError
from lawfit.forms import Form, get_form
from lawfit.shared import (
    GROUP,
    SharedExponents,
    _check_options,
    compare_shared,
    fit_options,
)


def _sized_form(form, col: str) -> Form:
    """Return the form with its capacity input (``rank`` or ``n_params``) read from ``col``."""
    base = get_form(form)
    caps = [i for i in base.inputs if i in ("rank", "n_params", "n_bytes")]
    if len(caps) != 1:
        raise LawfitError(
            f"a carrier law needs a form with one capacity input (rank, n_params "
            f"or n_bytes); form {base.name!r} takes {base.inputs}."
        )
    return replace(base, inputs=tuple(col if i == caps[0] else i for i in base.inputs))


@dataclass(frozen=True)
class CarrierLaw(SharedExponents):
    """The law per carrier, the law with shared exponents, and their comparison.

    A :class:`~lawfit.shared.SharedExponents` over carriers, whose tables name the law
    ``model`` and the group ``carrier``.

    Attributes
    ----------
    exponents : pandas.DataFrame
        One row per (model, carrier, parameter): ``estimate``, ``low``, ``high`` (the fit's
        default interval), ``n_obs``. ``model`` is ``"separate"`` (one law per carrier) or
        ``"shared"`` (carrier ``"all"`` for a shared parameter).
    comparison : pandas.DataFrame
        Two rows (``model`` ``separate``, ``shared``), as in
        :class:`~lawfit.shared.SharedExponents`.
    fits : dict
        Carrier label → :class:`~lawfit.FitResult` of its own law.
    shared_fit : FitResult or None
        The law with shared exponents (None with fewer than two fitted carriers).
    size : str
        ``"params"`` or ``"bytes"``.
    shared, significance, verdict, notes, flags
        As in :class:`~lawfit.shared.SharedExponents` (flag ``carrier_skipped`` for a
        carrier without a law of its own).
    """

    _noun = "carrier"

    size: str = "params"

    def _title(self) -> str:
        return f"Capacity law across carriers (size in {SIZES[self.size]})"


def carrier_law(
    data,
    *,
    size: str = "params",
    form: str | Form = "power_law",
    shared: Sequence[str] = ("alpha", "beta"),
    exclude: str | float | None = "memorized",
    space: str = "linear",
    bootstrap: int = 0,
    unit: str = "cell",
    confidence_level: float = 0.95,
    significance: float = 0.05,
    dtype: str | None = None,
    rng: int | np.random.Generator | None = None,
    cluster: str | None = None,
) -> CarrierLaw:
    """Fit the law per carrier against its size, and test whether carriers share exponents.

    Parameters
    ----------
    data : xarray.Dataset, pandas.DataFrame or path
        One setting of a carrier sweep: ``loss_reduction`` over ``modules``, ``rank`` and
        ``length``, with ``n_params`` (and ``n_bytes`` or a recorded ``dtype``).
    size : {"params", "bytes"}
        The size the law is fitted against: ``n_params`` or ``n_bytes``.
    form : str or Form
        The law; its capacity input (``rank``) is read as the size. Default the paper's
        power law C·N^α·ℓ^(−β) + b.
    shared : sequence of str
        Parameters held common across carriers in the restricted law (default the two
        exponents); the others are fitted per carrier.
    exclude : {"memorized"} or float or None
        Passed to :func:`lawfit.fit` (depends on the data only: every law sees the same cells).
    space : {"linear", "log", "auto"}
        Fit ΔL or log ΔL, as in :func:`lawfit.fit` (``"auto"``: one scale for every law,
        chosen on the shared law as :func:`lawfit.shared_exponents` does). The
        likelihood-ratio test assumes one error variance on that scale: with multiplicative
        noise (a spread that grows with ΔL) fit in ``"log"``, or the test rejects shared
        exponents too often.
    bootstrap : int
        Bootstrap replicates of every law (intervals of ``exponents``).
    unit : str
        Resampling unit of the bootstrap (``"cell"``, ``"seed"``, ``"data_seed"``, ``"run"``,
        ``"residual"``, ``"wild"``), as in :func:`lawfit.fit`.
    confidence_level : float
        Level of the intervals.
    significance : float
        Level of the likelihood-ratio test of shared exponents.
    dtype : str, optional
        Storage dtype when ``n_bytes`` must be derived and the data does not record it.
    rng : int or numpy.random.Generator, optional
        Seed of the bootstrap.
    cluster : str, optional
        Give the intervals of ``exponents`` as cluster-robust ones over this column
        (``"data_seed"``: target sequences shared by the carriers; CR2 with
        Bell-McCaffrey dof, :mod:`lawfit.robust`), the interval calibrated for few
        sequences, and test shared exponents with the cluster-robust Wald test
        (:mod:`lawfit.cluster_wald`; it needs more sequences than restrictions).
        Default: the fits' own intervals (bootstrap if any, else Wald) and the F test.

    Returns
    -------
    CarrierLaw
        Parameters per carrier, the shared law, and their comparison.

    Raises
    ------
    LawfitError
        Bad options, data without carriers, or no carrier whose law can be fitted.
    """
    base, shared, significance = _check_options(form, shared, significance, space)
    frame, notes = carrier_frame(data, size=size, dtype=dtype)
    kw = fit_options(exclude, space, bootstrap, unit, confidence_level, rng)
    out = compare_shared(
        frame.rename(columns={"carrier": GROUP}),
        _sized_form(base, SIZES[size]),
        shared=shared,
        kw=kw,
        significance=significance,
        cluster=cluster,
        drop=("modules", "knob"),
        noun="carrier",
    )
    names = {"law": "model", GROUP: "carrier"}
    return CarrierLaw(
        **{
            **out,
            "exponents": out["exponents"].rename(columns=names),
            "comparison": out["comparison"].rename(columns=names),
            "notes": (*notes, *out["notes"]),
        },
        by=("modules",),
        size=size,
        shared=shared,
        significance=significance,
    )
