"""Diagnostic flags of a :class:`~lawfit.result.FitResult`.

:class:`_FlagsMixin` gives the result its :attr:`~_FlagsMixin.flags`: those set while
fitting, plus the ones derived from the stored numbers here: parameters at a bound,
poorly identified parameters, collinear pairs, exponents on a ridge (with the
combination the cells do measure), open or zero-crossing profile intervals, too few
points, and :func:`_bootstrap_flags` (replicates at a bound, not converged,
unidentifiable, degenerate, too few clusters).
"""

from __future__ import annotations

import math

import numpy as np

from lawfit.bootstrap import BootstrapResult
from lawfit.protocol import Flag


class _FlagsMixin:
    """Diagnostic flags of :class:`~lawfit.result.FitResult` (it supplies the fields)."""

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
