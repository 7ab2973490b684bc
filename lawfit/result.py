"""Frozen fit results: parameters, uncertainty, diagnostics, prediction, rendering, JSON.

:class:`FitResult` never refits itself; every method derives from stored numbers
(estimates, covariance, bootstrap draws, jackknife values, profile curves, the
fitted points). It owns its :class:`~lawfit.forms.Form` (a later
:func:`~lawfit.register_form` of the same name does not change it), its arrays are
read-only and its mappings immutable. It round-trips through plain JSON
(:meth:`FitResult.save`, :func:`load`): the form is stored as a spec with its
function's importable reference (``"module:qualname"``), and rebuilt from that
reference, or else from a registered form of the same name, on load.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lawfit import _validate as V
from lawfit.bootstrap import BootstrapResult, _read_only
from lawfit.data import read_saved_json
from lawfit.errors import LawfitError
from lawfit.forms import Form, form_from_spec, get_form
from lawfit.protocol import (
    Flag,
    ResultProtocol,
    _clean,
    _flt,  # noqa: F401  (kept importable from here)
    _frame_from_json,
    _frame_to_json,
)

__all__ = ["FitResult", "FitResults", "Summary", "load", "ExtrapolationWarning", "Flag"]

_FORMAT = "lawfit.FitResult"
_FORMAT_VERSION = 2


class ExtrapolationWarning(UserWarning):
    """A prediction lies outside the ranges of the inputs the law was fitted on."""


def resolve_confidence_level(confidence_level, default, level=None) -> float:
    """Pick and check a confidence level; ``level`` is the deprecated old keyword.

    Parameters
    ----------
    confidence_level : float or None
        The value passed under the current name.
    default : float
        Used when neither is given.
    level : float or None
        The value passed under the old name (emits a ``DeprecationWarning``).
    """
    if level is not None:
        warnings.warn(
            "the keyword 'level' is deprecated; use 'confidence_level' (same meaning).",
            DeprecationWarning,
            stacklevel=3,
        )
        if confidence_level is not None:
            raise LawfitError("pass confidence_level only (level is its deprecated old name).")
        confidence_level = level
    return V.confidence_level(default if confidence_level is None else confidence_level)


def _frozen_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` whose numeric columns are backed by read-only arrays."""
    cols = {}
    for c in df.columns:
        values = df[c].to_numpy()
        cols[c] = _read_only(values) if values.dtype != object else values.copy()
    return pd.DataFrame(cols, index=df.index.copy(), copy=False)


def _arr_to_json(a):
    if a is None:
        return None
    a = np.asarray(a)
    if a.dtype == bool:
        return a.tolist()
    return np.where(np.isfinite(a), a, np.nan).astype(object).tolist() if a.size else []


def _unclean(a, dtype=float):
    if a is None:
        return None
    return (
        np.array([np.nan if v is None else v for v in np.ravel(a).tolist()], dtype=dtype).reshape(
            np.shape(a)
        )
        if np.size(a)
        else np.array(a, dtype=dtype)
    )


@dataclass(frozen=True, eq=False)
class FitResult:
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

    # ------------------------------------------------------------- intervals
    def conf_int(
        self,
        method: str | None = None,
        confidence_level: float | None = None,
        *,
        level: float | None = None,
        cluster: str | None = None,
    ) -> pd.DataFrame:
        """Confidence intervals, one row per parameter, columns ``low`` and ``high``.

        Parameters
        ----------
        method : {"bootstrap", "percentile", "bca", "profile", "wald", "cluster"}, optional
            ``"bootstrap"`` uses the fit's ``ci_method`` (percentile or BCa).
            ``"cluster"``: cluster-robust (CR2 sandwich) standard errors with
            Bell-McCaffrey t degrees of freedom over the clusters named by ``cluster``
            (:mod:`lawfit.robust`), for cells that share a target sequence or seed;
            calibrated down to 3 clusters, where the cluster bootstrap is not.
            Default: bootstrap if the fit has draws, else profile, else wald.
        confidence_level : float, optional
            Default: the fit's ``confidence_level``.
        level : float, optional
            Deprecated name of ``confidence_level``.
        cluster : str, optional
            For ``method="cluster"``: the column of :attr:`points` that defines the
            clusters (``"data_seed"``, ``"seed"``, ``"run"``). Default: the fit's
            bootstrap unit when it is such a column.

        Returns
        -------
        pandas.DataFrame
            Index: parameter names; columns ``low``, ``high`` (and ``se``, ``dof`` for
            ``"cluster"``, whose ``attrs`` add ``n_clusters``). ``attrs["method"]``
            names the method, ``attrs["confidence_level"]`` the level; profile
            intervals that stay open (flat profile) are NaN. Bootstrap intervals use
            every replicate with an estimate (boundary and not-converged solutions
            included; see :attr:`draws`).
        """
        level = resolve_confidence_level(confidence_level, self.confidence_level, level)
        if method is None:
            method = (
                "bootstrap"
                if self.boot is not None
                else "profile"
                if self.profile_data is not None
                else "wald"
            )
        if method == "bootstrap":
            if self.boot is None:
                raise LawfitError(
                    "no bootstrap draws: refit with lawfit.fit(..., bootstrap=2000) "
                    "or use method='profile' / 'wald'."
                )
            method = self.ci_method
        if method in ("percentile", "bca"):
            from lawfit.bootstrap import bca_interval, percentile_interval

            if self.boot is None:
                raise LawfitError(
                    f"method={method!r} needs bootstrap draws; refit with bootstrap=N."
                )
            d = self._good_draws()
            if self.boot.degenerate:  # a handful of distinct estimates: no interval
                lo = hi = np.full(len(self.param_names), np.nan)
            elif method == "percentile":
                lo, hi = percentile_interval(d, level)
            else:
                jack = self.boot.jack
                if jack is None:
                    raise LawfitError("BCa needs jackknife values; refit with ci_method='bca'.")
                lo, hi = bca_interval(d, self.theta, np.asarray(jack, float), level)
        elif method == "profile":
            from lawfit.profile import profile_interval

            if self.profile_data is None:
                raise LawfitError("no profile curves: refit with profile=True.")
            lo, hi = np.full(len(self.param_names), np.nan), np.full(len(self.param_names), np.nan)
            for j, p in enumerate(self.param_names):
                b = self.bounds[p]
                lo[j], hi[j], _, _ = profile_interval(
                    self.profile_data[p], self.theta[j], level, self.gof["dof"], b[0], b[1]
                )
        elif method == "wald":
            t = stats.t.ppf(0.5 + level / 2, self.gof["dof"])
            se = np.array(list(self.stderr.values()))
            lo, hi = self.theta - t * se, self.theta + t * se
        elif method == "cluster":
            from lawfit.robust import cluster_interval

            ci = cluster_interval(self, self._cluster_column(cluster), level)
            ci.attrs.update({"method": method, "confidence_level": level, "level": level})
            return ci  # with the standard errors and each parameter's dof
        else:
            raise LawfitError(
                f"method must be 'bootstrap', 'percentile', 'bca', 'profile', 'wald' or "
                f"'cluster'; got {method!r}."
            )
        out = pd.DataFrame({"low": lo, "high": hi}, index=pd.Index(self.param_names, name="param"))
        out.attrs.update({"method": method, "confidence_level": level, "level": level})
        return out

    def _cluster_column(self, cluster: str | None) -> str:
        """Return the column ``conf_int("cluster")`` clusters on (given, or the bootstrap unit)."""
        if cluster is not None:
            return cluster
        unit = None if self.boot is None else self.boot.unit
        if unit == "run" and "run" not in self.points.columns:
            unit = "seed"
        if isinstance(unit, str) and unit in self.points.columns:
            return unit
        raise LawfitError(
            "method='cluster' needs the column that defines the clusters; got none, and "
            f"the fit's bootstrap unit is {unit!r}. Pass cluster='data_seed' (target "
            "sequences) or cluster='seed' (initialisations)."
        )

    def profile_curve(self, param: str) -> pd.DataFrame:
        """Profile of one parameter (for plots): ``value``, ``F`` and ``converged``.

        ``F = (S(value) - S_hat) / (S_hat / (n - k))``; the profile interval at
        level L is where ``F <= scipy.stats.f.ppf(L, 1, n - k)`` (``attrs["cutoff"]``).
        """
        if self.profile_data is None:
            raise LawfitError("no profile curves: refit with profile=True.")
        if param not in self.profile_data:
            raise LawfitError(
                f"unknown parameter {param!r}; parameters are {list(self.param_names)}."
            )
        c = self.profile_data[param]
        df = pd.DataFrame(
            {"value": c["values"], "F": c["F"], "converged": np.asarray(c["converged"], bool)}
        )
        df.attrs["cutoff"] = float(stats.f.ppf(self.confidence_level, 1, self.gof["dof"]))
        df.attrs["estimate"] = self.params[param]
        return df

    # ---------------------------------------------------------------- flags
    @property
    def few_clusters(self) -> bool:
        """Whether the fit's intervals come from a cluster bootstrap over too few clusters.

        True when its bootstrap clusters over fewer than
        :data:`lawfit.bootstrap.MIN_BOOTSTRAP_CLUSTERS` units and still gave intervals (flag
        ``few_clusters``): quote the cluster-robust ones instead
        (:func:`lawfit.robust.preferred_interval`, :func:`lawfit.robust.law_mean_interval`).
        """
        return self.boot is not None and self.boot.too_few_clusters

    @property
    def flags(self) -> tuple[Flag, ...]:
        """Diagnostics as :class:`Flag` objects (empty tuple when nothing is suspicious).

        Codes: those set while fitting (``not_converged``, ``multiple_optima``,
        ``heteroscedastic``, ``profile_lower_objective``), ``at_bound``,
        ``poorly_identified``, ``collinear``, ``exponents_not_separately_identified``,
        ``open_profile``, ``profile_crosses_zero`` (info), ``too_few_points``,
        ``bootstrap_at_bound``,
        ``bootstrap_not_converged``, ``bootstrap_unidentifiable``, ``bootstrap_degenerate``,
        ``few_clusters``.
        """
        out = list(self.flags_base)
        out += self._bound_flags() + self._identification_flags() + self._profile_flags()
        k = len(self.param_names)
        if self.n_obs <= k + 2:
            out.append(Flag("too_few_points", f"too few points: n={self.n_obs} <= k+2={k + 2}"))
        if self.boot is not None:
            out += _bootstrap_flags(self.boot)
        return tuple(out)

    def _bound_flags(self) -> list[Flag]:
        out = []
        for j, p in enumerate(self.param_names):
            lo, hi = self.bounds[p]
            for bnd, side in ((lo, "lower"), (hi, "upper")):
                if math.isfinite(bnd) and abs(self.theta[j] - bnd) <= 1e-6 * (1 + abs(bnd)):
                    out.append(Flag("at_bound", f"{p} at {side} bound ({bnd:g})"))
        return out

    def _identification_flags(self) -> list[Flag]:
        """Poorly identified parameters (large SE), collinear pairs, confounded exponents."""
        out = []
        se = self.stderr
        for p, v in self.params.items():
            if p in self.linear_names and math.isfinite(se[p]):
                continue  # an offset/scale near 0 is not a failure of identification
            lo, hi = self.bounds[p]
            width = hi - lo if math.isfinite(hi - lo) else math.inf
            why = None
            if not math.isfinite(se[p]):
                why = "SE not finite"
            elif se[p] > abs(v) and se[p] > max(
                1e-8, 0.01 * width if math.isfinite(width) else 1e-8
            ):
                why = f"SE {se[p]:.3g} > |estimate| {abs(v):.3g}"
            elif math.isfinite(width) and se[p] > 0.25 * width:
                why = f"SE {se[p]:.3g} > 1/4 of its bounds' width {width:g}"
            if why:
                out.append(Flag("poorly_identified", f"{p} poorly identified ({why})"))
        c = self.corr.to_numpy()
        names = self.param_names
        for i, j in zip(*np.triu_indices(len(names), 1), strict=True):
            if abs(c[i, j]) > 0.9999:
                out.append(
                    Flag(
                        "collinear",
                        f"{names[i]} and {names[j]} nearly collinear "
                        f"(correlation {c[i, j]:+.5f}): poorly identified",
                    )
                )
        ec = self.exponent_correlation
        src = ec.attrs["source"]
        ex = list(ec.index)
        for i, j in zip(*np.triu_indices(len(ex), 1), strict=True):
            r = ec.iloc[i, j]
            if abs(r) > 0.95:
                out.append(self._ridge_flag(ex[i], ex[j], r, src))
        return out

    def _ridge_flag(self, a: str, b: str, r: float, src: str) -> Flag:
        """Flag two exponents on a ridge, with the combination the cells do measure."""
        sign = -1.0 if r > 0 else 1.0  # correlated up together: their difference is measured
        comb = f"{a} {'-' if sign < 0 else '+'} {b}"
        est = self.params[a] + sign * self.params[b]
        cov = self.cov
        var = cov.loc[a, a] + cov.loc[b, b] + 2 * sign * cov.loc[a, b]
        se = math.sqrt(var) if var >= 0 else math.nan
        return Flag(
            "exponents_not_separately_identified",
            f"{a} and {b} not separately identified (correlation {r:+.2f}, {src}); the cells "
            f"measure their combination {comb} = {est:.3g} (asymptotic SE {se:.2g}; "
            f"res.contrast({{'{a}': 1, '{b}': {sign:g}}}, cluster=...) tests it). Where "
            f"{a} - {b} is 0 within its interval, the one-variable form C·(r/ℓ)^γ "
            "(lawfit.compare) describes the cells with one exponent",
            severity="info",
        )

    def _profile_flags(self) -> list[Flag]:
        if self.profile_data is None:
            return []
        from lawfit.profile import profile_interval

        out = []
        for j, p in enumerate(self.param_names):
            b = self.bounds[p]
            lo, hi, cl, ch = profile_interval(
                self.profile_data[p], self.theta[j], self.confidence_level, self.gof["dof"], *b
            )
            if not (cl and ch):
                out.append(
                    Flag(
                        "open_profile",
                        f"{p}: flat profile, the "
                        f"{self.confidence_level:.0%} profile interval is open (poorly "
                        "identified)",
                    )
                )
            elif p not in self.linear_names and lo < 0 < hi:
                out.append(
                    Flag(
                        "profile_crosses_zero",
                        f"{p}: the "
                        f"{self.confidence_level:.0%} profile interval [{lo:.3g}, "
                        f"{hi:.3g}] contains 0 (its input may have no detectable "
                        "effect)",
                        severity="info",
                    )
                )
        return out

    def contrast(
        self,
        weights: Mapping[str, float],
        *,
        cluster: str | None = None,
        value: float = 0.0,
        confidence_level: float | None = None,
    ) -> pd.Series:
        """Estimate and test a linear combination of the parameters, e.g. α − β.

        Parameters
        ----------
        weights : mapping
            Parameter → weight, e.g. ``{"alpha": 1, "beta": -1}`` (does ℓ's exponent
            equal r's? the one-variable law C·(r/ℓ)^γ says yes).
        cluster : str, optional
            ``"data_seed"`` (target sequences) etc.: CR2 cluster-robust standard error with
            the Bell-McCaffrey dof of this combination. Default: the asymptotic covariance.
        value : float
            Its value under the null hypothesis.
        confidence_level : float, optional
            Level of the interval (default the fit's).

        Returns
        -------
        pandas.Series
            ``estimate``, ``se``, ``dof``, ``low``, ``high``, ``t``, ``pvalue``
            (:func:`lawfit.robust.contrast_test`).
        """
        from lawfit.robust import contrast_test

        level = self.confidence_level if confidence_level is None else confidence_level
        return contrast_test(self, dict(weights), cluster=cluster, value=value, level=level)

    @property
    def exponent_correlation(self) -> pd.DataFrame:
        """Correlation matrix of the nonlinear parameters (the exponents).

        From the bootstrap replicates that enter the intervals when there are at least
        10, else from the asymptotic covariance; ``attrs["source"]`` says which. A
        correlation near ±1 (e.g. alpha and beta of the power law on a triangular
        design) means only a combination of them is identified.
        """
        names = [p for p in self.param_names if p not in self.linear_names]
        idx = [self.param_names.index(p) for p in names]
        draws = self._good_draws() if self.boot is not None else np.empty((0, len(idx)))
        if draws.shape[0] >= 10 and idx and self.boot.n_distinct >= 10:
            with np.errstate(all="ignore"):
                c = np.atleast_2d(np.corrcoef(draws[:, idx], rowvar=False))
            source = f"{draws.shape[0]} bootstrap replicates"
        else:
            c = self.corr.to_numpy()[np.ix_(idx, idx)]
            source = "asymptotic covariance"
        out = pd.DataFrame(c, index=names, columns=names)
        out.attrs["source"] = source
        return out

    # ------------------------------------------------------------ prediction
    def _eval(self, theta2d, X):
        f = self.form
        kw = {p: theta2d[:, j : j + 1] for j, p in enumerate(self.param_names)}
        with np.errstate(all="ignore"):
            out = f.func(*X, **kw)
        return np.broadcast_to(np.asarray(out, float), (theta2d.shape[0], X[0].shape[0]))

    def predict(
        self,
        data=None,
        *,
        interval: str = "confidence",
        confidence_level: float | None = None,
        warn: bool = True,
        level: float | None = None,
        entropy_bits: float | None = None,
        cluster: str | None = None,
        **inputs,
    ) -> pd.DataFrame:
        """Predict the response with a confidence or prediction interval.

        Parameters
        ----------
        data : pandas.DataFrame or xarray.Dataset, optional
            Inputs as columns/coordinates (e.g. ``rank``, ``length``); a Dataset is
            broadcast over its coordinates.
        interval : {"confidence", "prediction"}
            ``"confidence"``: uncertainty of the mean curve. ``"prediction"``: of a
            new observation (adds the residual spread). From the bootstrap draws when
            the fit has them (and they are not degenerate: ``bootstrap_degenerate``),
            else by the delta method with t quantiles.
        confidence_level : float, optional
            Level of the interval (default: the fit's ``confidence_level``).
        warn : bool
            Emit :class:`ExtrapolationWarning` when any point lies outside the fitted
            input ranges (always flagged in the ``extrapolated`` column).
        **inputs
            Scalars or arrays per input name (broadcast together), e.g.
            ``rank=[8, 16], length=1024``.
        level : float, optional
            Deprecated name of ``confidence_level``.
        entropy_bits : float, optional
            Content entropy per target token (bits), for a law in ``n_params``: the
            implied bits per parameter are then information (a lower bound), else ΔL bits.
        cluster : str, optional
            Column of ``self.points`` naming the target sequences (``"data_seed"``): the
            cluster-robust intervals instead, calibrated down to 3 sequences where a
            cluster bootstrap is too narrow: :func:`lawfit.robust.law_mean_interval` for
            ``"confidence"``, :func:`lawfit.robust.law_prediction_interval` (one new cell
            on a new sequence) for ``"prediction"``; their columns (``dof``, ...).

        Returns
        -------
        pandas.DataFrame
            The inputs, ``mean``, ``low``, ``high`` and ``extrapolated`` (bool). With
            bootstrap draws the interval is the percentile interval of the draws'
            predictions (plus resampled residuals for ``"prediction"``); otherwise the
            delta method with t quantiles. For a ΔL law in ``n_params`` and ``length``,
            also ``bits_per_param`` (what ``attrs["bits_kind"]`` counts). ``attrs["flags"]``
            holds ``beyond_known_capacity`` when a row implies more than ~3.6 bits/param.
        """
        if interval not in ("confidence", "prediction"):
            raise LawfitError(f"interval must be 'confidence' or 'prediction'; got {interval!r}.")
        level = resolve_confidence_level(confidence_level, self.confidence_level, level)
        cols = self._collect_inputs(data, inputs)
        if cluster is not None:
            return self._predict_over_clusters(cols, interval, level, warn, cluster)
        X = [cols[c] for c in self.inputs]
        theta = self.theta[None, :]
        mean = self._eval(theta, X)[0]
        dof = self.gof["dof"]
        a = (1 - level) / 2
        log = self.space == "log"
        if self.boot is not None and not self.boot.degenerate:
            d = self._good_draws()
            P = self._eval(d, X)  # (R, m)
            if interval == "prediction":
                rng = np.random.default_rng(0)
                e = np.asarray(self.boot.resid, float)
                e = e[rng.integers(0, e.size, size=P.shape)]
                with np.errstate(all="ignore"):
                    P = np.exp(np.log(P) + e) if log else P + e
            with np.errstate(all="ignore"):
                lo, hi = np.nanquantile(P, a, axis=0), np.nanquantile(P, 1 - a, axis=0)
        else:
            eps = 1e-6
            k = theta.shape[1]
            G = np.empty((mean.size, k))
            for j in range(k):
                h = eps * max(1.0, abs(self.theta[j]))
                t2 = theta.copy()
                t2[0, j] += h
                G[:, j] = (self._eval(t2, X)[0] - mean) / h
            if log:
                G = G / mean[:, None]
            var = np.einsum("mi,ij,mj->m", G, self.cov_matrix, G)
            if interval == "prediction":
                var = var + self.sigma2
            t = stats.t.ppf(1 - a, dof)
            sd = np.sqrt(np.clip(var, 0, None))
            if log:
                with np.errstate(all="ignore"):
                    lo, hi = mean * np.exp(-t * sd), mean * np.exp(t * sd)
            else:
                lo, hi = mean - t * sd, mean + t * sd
        extra = self._extrapolated(cols, warn)
        out = pd.DataFrame({c: cols[c] for c in self.inputs})
        out["mean"], out["low"], out["high"], out["extrapolated"] = mean, lo, hi, extra
        out.attrs.update(
            {
                "interval": interval,
                "confidence_level": level,
                "level": level,
                "method": "bootstrap" if self.boot is not None else "delta",
                "flags": (),
            }
        )
        if self.few_clusters:
            better = {
                "confidence": "law_mean_interval) gives the mean law's",
                "prediction": "law_prediction_interval) gives a new cell's",
            }[interval]
            out.attrs["flags"] = (
                Flag(
                    "few_clusters",
                    f"the interval comes from a bootstrap over {self.boot.n_clusters} "
                    "clusters, too narrow (docs/lawfit.md, calibration); "
                    f"predict(..., cluster={self.boot.unit!r}) (lawfit.robust.{better} "
                    "interval, calibrated down to 3 clusters",
                ),
            )
        if {"n_params", "length"} <= set(self.inputs) and self.response == "loss_reduction":
            from lawfit.capacity import prediction_capacity_use

            out["bits_per_param"], kind, flags = prediction_capacity_use(self, out, entropy_bits)
            out.attrs.update(bits_kind=kind, flags=tuple(out.attrs["flags"]) + tuple(flags))
        return out

    def _extrapolated(self, cols: dict, warn: bool, stacklevel: int = 3) -> np.ndarray:
        """Flag the points outside the fitted input ranges; warn (at the caller's) if asked."""
        extra = np.zeros(len(cols[self.inputs[0]]), bool)
        for c in self.inputs:
            lo_r, hi_r = self.input_ranges[c]
            extra |= (cols[c] < lo_r * (1 - 1e-12)) | (cols[c] > hi_r * (1 + 1e-12))
        if warn and extra.any():
            warnings.warn(
                f"{int(extra.sum())} of {extra.size} prediction point(s) lie outside the fitted "
                f"ranges {self.input_ranges}: extrapolating.",
                ExtrapolationWarning,
                stacklevel=stacklevel,
            )
        return extra

    def _predict_over_clusters(self, cols, interval, level, warn, cluster) -> pd.DataFrame:
        """``predict(cluster=...)``: the cluster-robust interval of the mean law or a new cell."""
        from lawfit.robust import law_mean_interval, law_prediction_interval

        self._extrapolated(cols, warn, stacklevel=4)
        how = law_mean_interval if interval == "confidence" else law_prediction_interval
        return how(self, cluster=cluster, level=level, **{c: cols[c] for c in self.inputs})

    def _collect_inputs(self, data, inputs):
        vals = {}
        if data is not None:
            if isinstance(data, pd.DataFrame):
                src = {c: data[c].to_numpy() for c in data.columns}
            else:
                try:
                    import xarray as xr
                except ImportError:  # pragma: no cover
                    xr = None
                if xr is not None and isinstance(data, xr.Dataset | xr.DataArray):
                    names = [
                        c
                        for c in self.inputs
                        if c in data.coords or c in getattr(data, "data_vars", {})
                    ]
                    arrs = xr.broadcast(*[data[c] for c in names])
                    src = {c: a.values.ravel() for c, a in zip(names, arrs, strict=True)}
                elif isinstance(data, Mapping):
                    src = dict(data)
                else:
                    raise LawfitError(
                        f"data must be a DataFrame, Dataset or mapping; got {type(data).__name__}."
                    )
            vals.update(src)
        vals.update(inputs)
        unknown = [k for k in inputs if k not in self.inputs]
        if unknown:
            raise LawfitError(f"unknown input(s) {unknown}; this law takes {list(self.inputs)}.")
        missing = [c for c in self.inputs if c not in vals]
        if missing:
            raise LawfitError(
                f"predict needs input(s) {missing}; pass e.g. "
                f"{', '.join(f'{c}=...' for c in self.inputs)}."
            )
        try:
            arrs = np.broadcast_arrays(*[np.asarray(vals[c], float) for c in self.inputs])
        except (ValueError, TypeError) as exc:
            raise LawfitError(
                f"could not broadcast the inputs {list(self.inputs)} to a common shape: {exc}."
            ) from None
        return {c: np.ravel(a) for c, a in zip(self.inputs, arrs, strict=True)}

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


def _bootstrap_flags(boot: BootstrapResult) -> list[Flag]:
    """Say how many replicates hit a bound, did not converge, or had no estimate."""
    c, R = boot.counts, boot.n_boot
    out = []
    if c["at_bound"]:
        out.append(
            Flag(
                "bootstrap_at_bound",
                f"{c['at_bound']} of {R} bootstrap replicates "
                "have a parameter at a bound (boundary solutions, kept in the "
                "intervals)",
                severity="info",
            )
        )
    if c["not_converged"]:
        out.append(
            Flag(
                "bootstrap_not_converged",
                f"{c['not_converged']} of {R} bootstrap "
                "replicates did not converge after a global re-solve (kept in the "
                "intervals at the best point found)",
            )
        )
    if c["unidentifiable"]:
        out.append(
            Flag(
                "bootstrap_unidentifiable",
                f"{c['unidentifiable']} of {R} bootstrap "
                "replicates cannot identify the law (resample with too few distinct "
                "design points): excluded from the intervals, which are conditional "
                "on identifiable resamples",
            )
        )
    if boot.degenerate:
        out.append(
            Flag(
                "bootstrap_degenerate",
                f"the usable bootstrap replicates hold only {boot.n_distinct} distinct "
                f"estimate(s) (a {boot.unit} bootstrap over {boot.n_clusters or 'few'} "
                "units has almost no distinct resamples): bootstrap intervals are not "
                "computed (NaN); use conf_int('cluster'), 'profile' or 'wald'",
            )
        )
    if boot.too_few_clusters:
        out.append(
            Flag(
                "few_clusters",
                f"cluster bootstrap over only {boot.n_clusters} {boot.unit} "
                "clusters: intervals are too narrow (unreliable below ~10 clusters); "
                f"conf_int('cluster', cluster={boot.unit!r}) is calibrated down to 3",
            )
        )
    return out


class FitResults(ResultProtocol, Mapping):
    """One :class:`FitResult` per group of a ``by=`` fit (read-only mapping).

    Keys are tuples of group values in ``by`` order; a single value also works for
    one grouping dim (``res["llama"]``), and ``res.sel(model="llama")`` by name.
    """

    def __init__(self, results: Mapping[tuple, FitResult], by: tuple[str, ...]):
        self._results = dict(results)
        self.by = tuple(by)

    def _key(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if key in self._results:
            return key
        for k in self._results:  # tolerate numpy vs python scalars
            if len(k) == len(key) and all(str(a) == str(b) for a, b in zip(k, key, strict=True)):
                return k
        raise KeyError(f"no group {key} in by={self.by}; groups: {list(self._results)}")

    def __getitem__(self, key) -> FitResult:
        return self._results[self._key(key)]

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def sel(self, **kw) -> FitResult:
        """Select one group by name, e.g. ``res.sel(model="llama", task="phonebook")``."""
        missing = [b for b in self.by if b not in kw]
        if missing or set(kw) - set(self.by):
            raise LawfitError(f"sel needs exactly the grouping names {self.by}; got {list(kw)}.")
        return self[tuple(kw[b] for b in self.by)]

    def to_dataframe(
        self,
        method: str | None = None,
        confidence_level: float | None = None,
        *,
        level: float | None = None,
    ) -> pd.DataFrame:
        """Tidy parameter table of every group (group columns + param rows)."""
        if level is not None:
            confidence_level = resolve_confidence_level(confidence_level, 0.95, level)
        frames = []
        for key, r in self._results.items():
            df = r.to_dataframe(method, confidence_level).reset_index()
            for b, v in zip(self.by, key, strict=True):
                df.insert(0, b, v)
            df["r2"] = r.r2
            df["n_obs"] = r.n_obs
            frames.append(df)
        out = pd.concat(frames, ignore_index=True)
        cols = list(self.by) + [c for c in out.columns if c not in self.by]
        return out[cols[: len(self.by)] + [c for c in cols[len(self.by) :]]]

    def predict(self, data=None, **kwargs) -> pd.DataFrame:
        """Predict with every group's law; group columns first (see FitResult.predict)."""
        frames = []
        for key, r in self._results.items():
            df = r.predict(data, **kwargs)
            for b, v in zip(self.by[::-1], key[::-1], strict=True):
                df.insert(0, b, v)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def summary(self):
        """Summaries of every group, one after the other (text, HTML, LaTeX)."""
        return self._summary_text(
            "\n\n".join(
                f"{dict(zip(self.by, k, strict=True))}\n{r.summary()}"
                for k, r in self._results.items()
            )
        )

    @property
    def flags(self) -> tuple[Flag, ...]:
        """Every group's flags, each message prefixed with its group."""
        return tuple(
            Flag(f.code, f"{dict(zip(self.by, k, strict=True))}: {f.message}", f.severity)
            for k, r in self._results.items()
            for f in r.flags
        )

    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain-JSON form: the grouping names and every group's :meth:`FitResult.to_dict`."""
        return {
            "format": "lawfit.FitResults",
            "by": list(self.by),
            "groups": [
                {"key": _clean(list(k)), "result": r.to_dict()} for k, r in self._results.items()
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FitResults:
        """Inverse of :meth:`to_dict`."""
        return cls(
            {tuple(g["key"]): FitResult.from_dict(g["result"]) for g in d["groups"]},
            by=tuple(d["by"]),
        )

    def save(self, path) -> None:
        """Write every group's result to one JSON file."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1, allow_nan=False)

    def __repr__(self) -> str:
        return f"<FitResults by={self.by}: {len(self)} groups>"


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


# ------------------------------------------------------------------ summary
class Summary:
    """Rendered summary of a :class:`FitResult`.

    ``str()`` gives a plain-text table (the law as :attr:`Form.text`, readable in a
    terminal); ``as_html()`` and ``as_latex()`` (the law as LaTeX) are for notebooks
    and papers.
    """

    def __init__(self, result: FitResult, method=None, level=None):
        self.result = result
        self.ci = result.conf_int(method, level)

    def _header(self):
        r = self.result
        g = r.gof
        left = [
            ("Form:", r.form.name),
            ("Inputs:", ", ".join(r.inputs)),
            (
                "Loss / space:",
                f"{r.loss} / {r.space}"
                + (f" (delta={r.huber_delta:.3g})" if r.huber_delta else ""),
            ),
            ("No. points:", str(g["n_obs"])),
            ("No. excluded:", str(r.n_excluded)),
        ]
        not_run = int((r.exclusions.get("reason", pd.Series(dtype=str)) == "status=not_run").sum())
        if not_run:  # grid cells of a sweep not collected yet: not excluded by the fit
            left[-1] = ("No. excluded:", f"{r.n_excluded - not_run} (+{not_run} not run)")
        if r.group:
            left.insert(0, ("Group:", ", ".join(f"{k}={v}" for k, v in r.group.items())))
        right = [
            ("R-squared:", f"{g['r2']:.4f}"),
            ("RMSE:", f"{g['rmse']:.4g}"),
            ("MAPE (%):", f"{g['mape']:.3g}"),
            ("Log-Likelihood:", f"{g['loglik']:.4g}"),
            ("AIC / AICc:", f"{g['aic']:.4g} / {g['aicc']:.4g}"),
            ("BIC:", f"{g['bic']:.4g}"),
        ]
        if r.boot is not None:
            c = r.boot.counts
            right += [
                ("Bootstrap:", f"{r.boot.n_boot} x {r.boot.unit}"),
                ("  at a bound:", str(c["at_bound"])),
                ("  not converged:", f"{c['not_converged']} (kept)"),
                ("  unidentifiable:", f"{c['unidentifiable']} (excluded)"),
            ]
        return left, right

    def _table(self):
        r = self.result
        lvl = self.ci.attrs["level"]
        a = (1 - lvl) / 2
        rows = []
        for p in r.param_names:
            rows.append(
                (p, r.params[p], r.stderr[p], self.ci.loc[p, "low"], self.ci.loc[p, "high"])
            )
        head = ("", "coef", "std err", f"[{a:.3g}", f"{1 - a:.3g}]")
        return head, rows

    def __str__(self) -> str:
        left, right = self._header()
        width = 78
        lines = [
            "=" * width,
            "Parametric law fit (lawfit)".center(width),
            f"Law: {self.result.form.text}".center(width),
            "=" * width,
        ]
        for i in range(max(len(left), len(right))):
            lt = f"{left[i][0]:<14}{left[i][1]:>24}" if i < len(left) else ""
            rt = f"{right[i][0]:<16}{right[i][1]:>22}" if i < len(right) else ""
            lines.append(f"{lt:<38}  {rt}".rstrip())
        lines.append("=" * width)
        head, rows = self._table()
        lines.append(f"{head[0]:<10}{head[1]:>14}{head[2]:>14}{head[3]:>14}{head[4]:>14}")
        lines.append("-" * width)
        for p, v, s, lo, hi in rows:
            lines.append(f"{p:<10}{v:>14.5g}{s:>14.4g}{lo:>14.5g}{hi:>14.5g}")
        lines.append("=" * width)
        lines.append(f"CI: {self.ci.attrs['method']} at {self.ci.attrs['level']:.0%}.")
        flags = self.result.flags
        if flags:
            lines.append("Diagnostics:")
            lines += [f"  [{i + 1}] {f}" for i, f in enumerate(flags)]
        else:
            lines.append("Diagnostics: none.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def as_text(self) -> str:
        """Plain-text table (same as ``str()``)."""
        return str(self)

    def as_html(self) -> str:
        """HTML tables (header, parameters, diagnostics)."""
        import html

        left, right = self._header()
        head, rows = self._table()
        e = html.escape
        out = ['<table class="lawfit-summary"><caption>Parametric law fit (lawfit)</caption>']
        for i in range(max(len(left), len(right))):
            lt = left[i] if i < len(left) else ("", "")
            rt = right[i] if i < len(right) else ("", "")
            out.append(
                f"<tr><th>{e(lt[0])}</th><td>{e(str(lt[1]))}</td>"
                f"<th>{e(rt[0])}</th><td>{e(str(rt[1]))}</td></tr>"
            )
        out.append(
            "</table><table class='lawfit-params'><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr>"
        )
        for p, v, s, lo, hi in rows:
            out.append(
                f"<tr><th>{e(p)}</th><td>{v:.5g}</td><td>{s:.4g}</td>"
                f"<td>{lo:.5g}</td><td>{hi:.5g}</td></tr>"
            )
        out.append("</table>")
        out.append(f"<p>CI: {e(self.ci.attrs['method'])} at {self.ci.attrs['level']:.0%}.</p>")
        flags = self.result.flags
        if flags:
            out.append(
                "<ul class='lawfit-flags'>"
                + "".join(f"<li>{e(str(f))}</li>" for f in flags)
                + "</ul>"
            )
        return "\n".join(out)

    def _repr_html_(self) -> str:
        return self.as_html()

    def as_latex(self) -> str:
        """LaTeX ``tabular`` of the parameter table with the fit statistics as caption."""
        r = self.result
        head, rows = self._table()
        g = r.gof
        lines = [
            r"\begin{table}",
            r"\centering",
            rf"\caption{{${r.form_latex}$; $n={g['n_obs']}$, $R^2={g['r2']:.4f}$, "
            rf"RMSE ${g['rmse']:.3g}$; {self.ci.attrs['method']} "
            rf"{self.ci.attrs['level'] * 100:g}\% CI.}}",
            r"\begin{tabular}{lrrrr}",
            r"\hline",
            " & ".join(["", "coef", "std err", head[3].replace("[", "[\\,"), head[4]]) + r" \\",
            r"\hline",
        ]
        names = {"alpha": r"$\alpha$", "beta": r"$\beta$", "C": "$C$", "b": "$b$"}
        for p, v, s, lo, hi in rows:
            lines.append(
                f"{names.get(p, p.replace('_', chr(92) + '_'))} & {v:.4g} & {s:.3g} & "
                f"{lo:.4g} & {hi:.4g} \\\\"
            )
        lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines)
