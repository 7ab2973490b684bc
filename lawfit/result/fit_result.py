"""The frozen result of :func:`lawfit.fit` for one group: :class:`FitResult`.

The dataclass itself (its fields, made read-only on creation), the parameters and
goodness of fit it exposes, its bootstrap replicates, its exports (a parameter table, an
:class:`xarray.Dataset`, a :class:`~lawfit.result.Summary`) and its plain-JSON form
(:meth:`FitResult.to_dict`, :meth:`FitResult.save`, :meth:`FitResult.from_dict`, with the
helpers that rebuild the form and the bootstrap from JSON). Its intervals, diagnostic
flags and predictions come from the mixins in :mod:`lawfit.result.intervals`,
:mod:`lawfit.result.flags` and :mod:`lawfit.result.prediction`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from lawfit._frozen import reduce_through_init
from lawfit.bootstrap import BootstrapResult, _read_only
from lawfit.errors import LawfitError
from lawfit.forms import Form, form_from_spec, get_form
from lawfit.protocol import Flag, _clean, _frame_from_json, _frame_to_json
from lawfit.result._common import (
    _FORMAT,
    _FORMAT_VERSION,
    _arr_to_json,
    _frozen_frame,
    _unclean,
    resolve_confidence_level,
)
from lawfit.result.flags import _FlagsMixin
from lawfit.result.intervals import _IntervalsMixin
from lawfit.result.prediction import _PredictionMixin
from lawfit.result.summary import Summary


@dataclass(frozen=True, eq=False)
class FitResult(_IntervalsMixin, _FlagsMixin, _PredictionMixin):
    """Result of :func:`lawfit.fit` for one group (immutable).

    Attributes
    ----------
    form : Form
        The fitted form itself (not looked up in the registry again).
    params, stderr : dict
        Estimates and Wald standard errors (sandwich for Huber).
    cov : pandas.DataFrame
        Asymptotic covariance.
    r2, rmse, mape, loglik, aic, aicc, bic : float
        Goodness of fit (R², RMSE, MAPE in % on ΔL; Gaussian log-likelihood of ΔL).
    n_obs, n_excluded : int
        Points fitted / cells excluded (see ``exclusions`` for why).
    flags : tuple of Flag
        Diagnostics (parameter at bound, poorly identified, too few points, ...).
        "Poorly identified": for a nonlinear parameter (exponent) SE > |estimate|
        (unless SE < 1 % of its bounds' width) or SE > 1/4 of that width;
        |correlation| > 0.9999; or an open profile interval.
    """

    form: Form
    param_names: tuple[str, ...]
    inputs: tuple[str, ...]
    response: str
    capacity: str
    theta: np.ndarray
    cov_matrix: np.ndarray
    sigma2: float
    space: str
    loss: str
    huber_delta: float | None
    points: pd.DataFrame
    exclusions: pd.DataFrame
    gof: Mapping[str, float]
    flags_base: tuple[Flag, ...]
    bounds: Mapping[str, tuple[float, float]]
    boot: BootstrapResult | None = None
    profile_data: Mapping[str, Mapping[str, np.ndarray]] | None = None
    ci_method: str = "percentile"
    confidence_level: float = 0.95
    group: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    linear_names: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("theta", "cov_matrix"):
            object.__setattr__(self, name, _read_only(getattr(self, name)))
        for name in ("points", "exclusions"):
            object.__setattr__(self, name, _frozen_frame(getattr(self, name)))
        for name in ("gof", "bounds", "group", "meta"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, MappingProxyType(dict(value)))
        if self.profile_data is not None:
            frozen = {
                p: MappingProxyType({k: _read_only(v) for k, v in c.items()})
                for p, c in self.profile_data.items()
            }
            object.__setattr__(self, "profile_data", MappingProxyType(frozen))

    def __reduce__(self):
        """Pickle by the constructor's arguments (the read-only mappings as dicts)."""
        return reduce_through_init(self)

    @property
    def form_latex(self) -> str:
        """LaTeX of the fitted law."""
        return self.form.latex

    # ----------------------------------------------------------------- params
    @property
    def params(self) -> dict[str, float]:
        """Point estimates, name -> value."""
        return {p: float(v) for p, v in zip(self.param_names, self.theta, strict=True)}

    @property
    def stderr(self) -> dict[str, float]:
        """Wald standard errors (sandwich for Huber), name -> value."""
        se = np.sqrt(np.clip(np.diag(self.cov_matrix), 0, None))
        return {p: float(v) for p, v in zip(self.param_names, se, strict=True)}

    @property
    def cov(self) -> pd.DataFrame:
        """Asymptotic covariance matrix of the parameters."""
        return pd.DataFrame(
            self.cov_matrix, index=list(self.param_names), columns=list(self.param_names)
        )

    @property
    def corr(self) -> pd.DataFrame:
        """Correlation matrix of the parameters."""
        se = np.sqrt(np.clip(np.diag(self.cov_matrix), 1e-300, None))
        return pd.DataFrame(
            self.cov_matrix / np.outer(se, se),
            index=list(self.param_names),
            columns=list(self.param_names),
        )

    # ---------------------------------------------------------- goodness of fit
    r2 = property(lambda self: float(self.gof["r2"]), doc="R² on ΔL (linear scale).")
    rmse = property(lambda self: float(self.gof["rmse"]), doc="Root mean squared error on ΔL.")
    mape = property(
        lambda self: float(self.gof["mape"]), doc="Mean absolute percentage error on ΔL (in %)."
    )
    loglik = property(
        lambda self: float(self.gof["loglik"]),
        doc="Gaussian log-likelihood of ΔL (log space includes the Jacobian).",
    )
    aic = property(lambda self: float(self.gof["aic"]), doc="Akaike information criterion.")
    aicc = property(lambda self: float(self.gof["aicc"]), doc="AIC with small-sample correction.")
    bic = property(lambda self: float(self.gof["bic"]), doc="Bayesian information criterion.")
    n_obs = property(lambda self: int(self.gof["n_obs"]), doc="Number of fitted points.")

    @property
    def n_excluded(self) -> int:
        """Number of excluded cells (status != ok, memorized)."""
        return int(len(self.exclusions))

    @property
    def residuals(self) -> pd.DataFrame:
        """Fitted points: inputs, observed, ``fitted`` and ``residual`` (fit space)."""
        return self.points.copy()

    @property
    def input_ranges(self) -> dict[str, tuple[float, float]]:
        """Min and max of every input over the fitted points."""
        return {c: (float(self.points[c].min()), float(self.points[c].max())) for c in self.inputs}

    # ------------------------------------------------------------- bootstrap
    @property
    def draws(self) -> pd.DataFrame | None:
        """Bootstrap replicates (one row each) with ``status`` and ``converged`` columns.

        Every replicate is kept. ``status`` is one of
        :data:`lawfit.bootstrap.REPLICATE_STATUSES`; all but ``"unidentifiable"``
        (no estimate exists for that resample) enter the intervals, boundary and
        not-converged solutions included. ``draws.attrs`` holds ``n_failed`` (not
        converged or unidentifiable), ``n_excluded`` (left out of the intervals),
        ``counts`` (per status) and ``unit``. ``None`` without bootstrap.
        """
        if self.boot is None:
            return None
        df = pd.DataFrame(np.array(self.boot.draws), columns=list(self.param_names))
        df["status"] = self.boot.status
        df["converged"] = self.boot.converged
        df.attrs.update(
            {
                "n_failed": self.boot.n_failed,
                "n_excluded": self.boot.n_excluded,
                "counts": dict(self.boot.counts),
                "unit": self.boot.unit,
            }
        )
        return df

    def _good_draws(self):
        return self.boot.usable_draws()

    # ------------------------------------------------------------- rendering
    def to_dataframe(
        self,
        method: str | None = None,
        confidence_level: float | None = None,
        *,
        level: float | None = None,
    ) -> pd.DataFrame:
        """Tidy parameter table: estimate, stderr, low, high (one row per parameter)."""
        ci = self.conf_int(
            method, resolve_confidence_level(confidence_level, self.confidence_level, level)
        )
        df = pd.DataFrame(
            {"estimate": self.theta, "stderr": list(self.stderr.values())},
            index=pd.Index(self.param_names, name="param"),
        )
        df["low"], df["high"] = ci["low"], ci["high"]
        df["ci_method"] = ci.attrs["method"]
        df["confidence_level"] = ci.attrs["confidence_level"]
        return df

    def to_dataset(self):
        """Return the result as an :class:`xarray.Dataset` (estimates, cov, draws; gof in attrs)."""
        import xarray as xr

        p = list(self.param_names)
        ds = xr.Dataset(
            {
                "estimate": ("param", self.theta),
                "stderr": ("param", np.array(list(self.stderr.values()))),
                "cov": (("param", "param_2"), self.cov_matrix),
            },
            coords={"param": p, "param_2": p},
            attrs={
                "form": self.form.name,
                "form_latex": self.form_latex,
                **{k: v for k, v in self.gof.items()},
                "flags": json.dumps([f.to_dict() for f in self.flags]),
                "space": self.space,
                "loss": self.loss,
            },
        )
        if self.boot is not None:
            ds["draws"] = (("draw", "param"), np.array(self.boot.draws, float))
            ds["converged"] = ("draw", self.boot.converged)
            ds["status"] = ("draw", np.array(self.boot.status))
        return ds

    def summary(
        self,
        method: str | None = None,
        confidence_level: float | None = None,
        *,
        level: float | None = None,
    ) -> Summary:
        """Statsmodels-like summary (``str()`` text, ``.as_html()``, ``.as_latex()``)."""
        return Summary(
            self, method, resolve_confidence_level(confidence_level, self.confidence_level, level)
        )

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        g = f" group={dict(self.group)}" if self.group else ""
        return f"<FitResult {self.form.name}{g}: {ps}; R²={self.r2:.4f}, n={self.n_obs}>"

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        """Plain-JSON-serialisable dict (see :meth:`save`)."""
        boot = None
        if self.boot is not None:
            boot = {
                k: (_arr_to_json(v) if isinstance(v, np.ndarray) else v)
                for k, v in self.boot.to_dict().items()
            }
        prof = None
        if self.profile_data is not None:
            prof = {
                p: {k: _arr_to_json(v) for k, v in c.items()} for p, c in self.profile_data.items()
            }
        return _clean(
            {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "form": self.form.to_spec(),
                "param_names": list(self.param_names),
                "inputs": list(self.inputs),
                "response": self.response,
                "capacity": self.capacity,
                "theta": _arr_to_json(self.theta),
                "cov_matrix": _arr_to_json(self.cov_matrix),
                "sigma2": self.sigma2,
                "space": self.space,
                "loss": self.loss,
                "huber_delta": self.huber_delta,
                "points": _frame_to_json(self.points),
                "exclusions": _frame_to_json(self.exclusions),
                "gof": dict(self.gof),
                "flags_base": [f.to_dict() for f in self.flags_base],
                "bounds": {p: list(b) for p, b in self.bounds.items()},
                "boot": boot,
                "profile_data": prof,
                "ci_method": self.ci_method,
                "confidence_level": self.confidence_level,
                "group": None
                if self.group is None
                else {k: (v.item() if hasattr(v, "item") else v) for k, v in self.group.items()},
                "meta": dict(self.meta),
                "linear_names": list(self.linear_names),
            }
        )

    def save(self, path) -> None:
        """Write the result as plain JSON (no pickle). Read back with :func:`lawfit.load`.

        Parameters
        ----------
        path : str or path-like
            Output file. Arrays become lists, NaN/inf become ``null``; the form is
            stored by name and LaTeX (functions are never serialised).
        """
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> FitResult:
        """Rebuild from :meth:`to_dict` output (see :func:`lawfit.forms.form_from_spec`)."""
        if d.get("format") != _FORMAT:
            raise LawfitError(f"not a saved lawfit FitResult (format={d.get('format')!r}).")
        boot = None if d["boot"] is None else _boot_from_json(d["boot"])
        prof = None
        if d["profile_data"] is not None:
            prof = {
                p: {
                    "values": _unclean(c["values"]),
                    "F": _unclean(c["F"]),
                    "converged": np.array(c["converged"], bool),
                }
                for p, c in d["profile_data"].items()
            }
        gof = {k: (math.nan if v is None else v) for k, v in d["gof"].items()}
        return cls(
            form=_form_from_json(d),
            param_names=tuple(d["param_names"]),
            inputs=tuple(d["inputs"]),
            response=d["response"],
            capacity=d["capacity"],
            theta=_unclean(d["theta"]),
            cov_matrix=_unclean(d["cov_matrix"]),
            sigma2=float(d["sigma2"]),
            space=d["space"],
            loss=d["loss"],
            huber_delta=d["huber_delta"],
            points=_frame_from_json(d["points"]),
            exclusions=_frame_from_json(d["exclusions"]),
            gof=gof,
            flags_base=tuple(Flag.from_dict(f) for f in d["flags_base"]),
            bounds={
                p: tuple(
                    -math.inf if v is None and i == 0 else math.inf if v is None else v
                    for i, v in enumerate(b)
                )
                for p, b in d["bounds"].items()
            },
            boot=boot,
            profile_data=prof,
            ci_method=d["ci_method"],
            confidence_level=d["confidence_level"],
            group=d["group"],
            meta=d["meta"],
            linear_names=tuple(d.get("linear_names", ())),
        )


def _form_from_json(d: dict) -> Form:
    """Rebuild the saved form: a spec (format 2) or a registered name (format 1)."""
    if isinstance(d["form"], dict):
        return form_from_spec(d["form"])
    try:
        return get_form(d["form"])
    except LawfitError:
        raise LawfitError(
            f"the saved result uses the form {d['form']!r} (LaTeX: {d.get('form_latex')!r}), "
            "which is not registered in this session. Register it first with "
            f"lawfit.register_form({d['form']!r}, func, ...) and load again."
        ) from None


def _boot_from_json(b: dict) -> BootstrapResult:
    """Bootstrap replicates from JSON; format-1 files have a boolean ``converged``."""
    status = b.get("status")
    if status is None:  # format 1: converged flags only
        status = np.where(np.array(b["converged"], bool), "converged", "not_converged")
    return BootstrapResult(
        draws=_unclean(b["draws"]),
        status=np.asarray(status),
        unit=b["unit"],
        resid=_unclean(b["resid"]),
        jack=None if b.get("jack") is None else _unclean(b["jack"]),
        n_clusters=b.get("n_clusters"),
    )
