"""Confidence intervals of a :class:`~lawfit.result.FitResult`'s parameters.

:class:`_IntervalsMixin` holds the interval methods of the result, computed from its
stored numbers (bootstrap draws, jackknife values, profile curves, covariance):
:meth:`~_IntervalsMixin.conf_int` (bootstrap percentile or BCa, profile likelihood, Wald,
cluster-robust CR2), :meth:`~_IntervalsMixin.profile_curve` (a parameter's profile for
plots), :meth:`~_IntervalsMixin.contrast` (a linear combination such as α − β, estimated
and tested) and :attr:`~_IntervalsMixin.exponent_correlation` (how far the exponents are
separately identified).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.bootstrap import cluster_column
from lawfit.errors import LawfitError
from lawfit.result._common import resolve_confidence_level


class _IntervalsMixin:
    """Interval methods of :class:`~lawfit.result.FitResult` (it supplies the fields)."""

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
        unit = cluster_column(self.points, unit)
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
