"""Predictions of a :class:`~lawfit.result.FitResult` with their intervals.

:class:`_PredictionMixin` holds :meth:`~_PredictionMixin.predict` (the response at new
inputs with a confidence or prediction interval: bootstrap draws, delta method, or the
cluster-robust intervals) and its helpers: gathering and broadcasting the inputs,
evaluating the law at many parameter vectors at once, and flagging (and warning about)
points outside the fitted input ranges.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.errors import LawfitError
from lawfit.protocol import Flag
from lawfit.result._common import ExtrapolationWarning, resolve_confidence_level


class _PredictionMixin:
    """Prediction methods of :class:`~lawfit.result.FitResult` (it supplies the fields)."""

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
        mean = self._eval(self.theta[None, :], X)[0]
        bootstrap = self.boot is not None and not self.boot.degenerate
        band = self._bootstrap_band if bootstrap else self._delta_band
        lo, hi = band(X, mean, interval, level)
        extra = self._extrapolated(cols, warn)
        out = pd.DataFrame({c: cols[c] for c in self.inputs})
        out["mean"], out["low"], out["high"], out["extrapolated"] = mean, lo, hi, extra
        out.attrs.update(
            {
                "interval": interval,
                "confidence_level": level,
                "level": level,
                "method": "bootstrap" if bootstrap else "delta",
                "flags": self._few_clusters_flags(interval),
            }
        )
        if {"n_params", "length"} <= set(self.inputs) and self.response == "loss_reduction":
            from lawfit.capacity import prediction_capacity_use

            out["bits_per_param"], kind, flags = prediction_capacity_use(self, out, entropy_bits)
            out.attrs.update(bits_kind=kind, flags=tuple(out.attrs["flags"]) + tuple(flags))
        return out

    def _bootstrap_band(self, X, mean, interval: str, level: float):
        """Percentile band of the law over the bootstrap draws at the inputs ``X``.

        A prediction band adds a resampled residual to each draw (on the log scale for a
        law fitted in log space), from a fixed generator so that it is reproducible.
        """
        a = (1 - level) / 2
        P = self._eval(self._good_draws(), X)  # (R, m)
        if interval == "prediction":
            rng = np.random.default_rng(0)
            e = np.asarray(self.boot.resid, float)
            e = e[rng.integers(0, e.size, size=P.shape)]
            with np.errstate(all="ignore"):
                P = np.exp(np.log(P) + e) if self.space == "log" else P + e
        with np.errstate(all="ignore"):
            return np.nanquantile(P, a, axis=0), np.nanquantile(P, 1 - a, axis=0)

    def _delta_band(self, X, mean, interval: str, level: float):
        """Delta-method band (t quantile on the fit's dof), multiplicative in log space."""
        theta = self.theta[None, :]
        log = self.space == "log"
        G = np.empty((mean.size, theta.shape[1]))
        for j in range(theta.shape[1]):  # forward differences of the law in each parameter
            h = 1e-6 * max(1.0, abs(self.theta[j]))
            t2 = theta.copy()
            t2[0, j] += h
            G[:, j] = (self._eval(t2, X)[0] - mean) / h
        if log:
            G = G / mean[:, None]
        var = np.einsum("mi,ij,mj->m", G, self.cov_matrix, G)
        if interval == "prediction":
            var = var + self.sigma2
        t = stats.t.ppf(1 - (1 - level) / 2, self.gof["dof"])
        sd = np.sqrt(np.clip(var, 0, None))
        if log:
            with np.errstate(all="ignore"):
                return mean * np.exp(-t * sd), mean * np.exp(t * sd)
        return mean - t * sd, mean + t * sd

    def _few_clusters_flags(self, interval: str) -> tuple[Flag, ...]:
        """Return the ``few_clusters`` flag (none or one), naming the calibrated interval."""
        if not self.few_clusters:
            return ()
        better = {
            "confidence": "law_mean_interval) gives the mean law's",
            "prediction": "law_prediction_interval) gives a new cell's",
        }[interval]
        return (
            Flag(
                "few_clusters",
                f"the interval comes from a bootstrap over {self.boot.n_clusters} "
                "clusters, too narrow (docs/lawfit.md, calibration); "
                f"predict(..., cluster={self.boot.unit!r}) (lawfit.robust.{better} "
                "interval, calibrated down to 3 clusters",
            ),
        )

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
