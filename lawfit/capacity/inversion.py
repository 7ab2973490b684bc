"""A fitted law inverted for capacity queries, and the intervals of its answers.

``_Inversion`` solves the law for the capacity (or the length) that reaches a target, by
vectorised bisection on log scale (``_bisect``) over the point estimate and every bootstrap
draw, with a percentile interval over the draws. The cluster-interval helpers choose and
compute the cluster-robust delta-method interval that replaces it when the bootstrap has
too few clusters. :func:`lawfit.capacity.predict_capacity` is the public entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError
from lawfit.result import Flag


@dataclass(frozen=True)
class _Inversion:
    """A fitted law inverted for one kind of query (what every query shares).

    ``mode == "capacity"``: the capacity that reaches the target at a given length;
    ``mode == "length"``: the longest length at which a given capacity reaches it.
    """

    fit: object
    cap: str
    mode: str
    target_kind: str
    l0fn: object
    need_l0: bool
    search: tuple
    level: float

    @property
    def ranges(self):
        """Fitted ranges of the capacity and of the length."""
        return self.fit.input_ranges[self.cap], self.fit.input_ranges["length"]

    def law(self, th, x, ell):
        """Evaluate the law at capacity ``x`` and length ``ell`` for parameter rows ``th``."""
        values = {self.cap: x, "length": ell}
        if "loss_before" in self.fit.inputs:
            values["loss_before"] = self.l0fn(ell)
        kw = {p: th[:, j : j + 1] for j, p in enumerate(self.fit.param_names)}
        with np.errstate(all="ignore"):
            return np.asarray(
                self.fit.form.func(*(values[c] for c in self.fit.inputs), **kw), float
            )

    def solve(self, th, q, t):
        """Answer per parameter row: (value, unreachable, trivial)."""
        rng_cap, rng_len = self.ranges
        rng = rng_cap if self.mode == "capacity" else rng_len
        lo, hi = rng[0] * self.search[0], rng[1] * self.search[1]

        def gap(x):  # the law minus the ΔL target; x (capacity or length) varies
            ell = np.full_like(x, q) if self.mode == "capacity" else x
            xx = x if self.mode == "capacity" else np.full_like(x, q)
            tgt = t if self.target_kind == "loss_reduction" else self.l0fn(ell) - t
            return self.law(th, xx, ell) - tgt

        root, glo, ghi = _bisect(gap, np.full((th.shape[0], 1), lo), np.full((th.shape[0], 1), hi))
        root, glo, ghi = root[:, 0], glo[:, 0], ghi[:, 0]
        # met already at the smallest capacity searched (capacity) / at every length
        trivial = np.isnan(root) & (glo >= 0) & (ghi >= 0)
        unreach = np.isnan(root) & ~trivial
        if self.mode == "capacity":
            val = np.where(trivial, lo, np.where(unreach, np.inf, root))
        else:
            val = np.where(trivial, np.inf, np.where(unreach, 0.0, root))
        return val, unreach, trivial

    def answer(self, q, t, draws, notes):
        """One row of the table (and the answer on every draw, or None)."""
        rng_cap, rng_len = self.ranges
        est, un0, tr0 = (v[0] for v in self.solve(np.asarray(self.fit.theta, float)[None, :], q, t))
        est = float(est)
        capacity = self.mode == "capacity"
        at_len = q if capacity else (est if np.isfinite(est) and est > 0 else rng_len[1])
        row = {
            ("length" if capacity else self.cap): q,
            "target": t,
            "target_kind": self.target_kind,
            "target_dL": t
            if self.target_kind == "loss_reduction"
            else float(self.l0fn(np.array([at_len]))[0]) - t,
            "estimate": est,
        }
        v = None
        if draws is not None and len(draws):
            v, un, _ = self.solve(draws, q, t)
            a = (1 - self.level) / 2
            # infinite/zero draws (unreachable) must not interpolate into NaN
            meth = "linear" if np.all(np.isfinite(v)) else "inverted_cdf"
            lo_q, hi_q = np.quantile(v, [a, 1 - a], method=meth)
            row.update(
                low=float(lo_q), high=float(hi_q), n_draws=int(v.size), n_unreachable=int(un.sum())
            )
        else:
            row.update(low=math.nan, high=math.nan, n_draws=0, n_unreachable=0)
        row["unreachable"], row["trivial"] = bool(un0), bool(tr0)
        given, answered = (rng_len, rng_cap) if capacity else (rng_cap, rng_len)
        row["extrapolated"] = bool(
            not (given[0] <= q <= given[1])
            or not (np.isfinite(est) and answered[0] <= est <= answered[1])
        )
        if self.need_l0 and capacity:
            row["loss_before"] = float(self.l0fn(np.array([q]))[0])
            if self.target_kind == "loss_reduction" and t >= row["loss_before"]:
                row["unreachable"] = True
                notes.append(
                    f"target ΔL {t:g} >= loss_before {row['loss_before']:.4g} at length "
                    f"{q:g}: a loss cannot fall below 0, unreachable whatever the law says"
                )
        return row, v

    def flags(self, table) -> tuple[Flag, ...]:
        """Unreachable targets (on the estimate or on draws) and extrapolation."""
        rng_cap, rng_len = self.ranges
        out = []
        if table["unreachable"].any():
            out.append(
                Flag(
                    "unreachable",
                    "some targets are unreachable under the point "
                    "estimate (estimate inf for capacity, 0 for length)",
                )
            )
        if (table.get("n_unreachable", pd.Series([0])) > 0).any():
            out.append(
                Flag(
                    "unreachable_on_draws",
                    "on some bootstrap draws the target is "
                    "unreachable; those draws count as infinite capacity / zero length "
                    "in the interval",
                )
            )
        if table["extrapolated"].any():
            out.append(
                Flag(
                    "extrapolated",
                    "extrapolating beyond the fitted ranges "
                    f"({self.cap} {rng_cap}, length {rng_len}) for rows marked "
                    "extrapolated",
                )
            )
        return tuple(out)


def _bisect(g, lo, hi, n_iter=200):
    """Vectorised bisection on log scale: g(x) (R, m) -> roots; NaN where no sign change."""
    a, b = np.log(lo), np.log(hi)
    ga, gb = g(np.exp(a)), g(np.exp(b))
    ok = np.isfinite(ga) & np.isfinite(gb) & (np.sign(ga) != np.sign(gb))
    a = np.broadcast_to(a, ga.shape).copy()
    b = np.broadcast_to(b, ga.shape).copy()
    for _ in range(n_iter):
        mid = 0.5 * (a + b)
        gm = g(np.exp(mid))
        left = np.sign(gm) == np.sign(ga)
        a = np.where(left, mid, a)
        ga = np.where(left, gm, ga)
        b = np.where(left, b, mid)
        if np.all(np.abs(b - a)[ok] < 1e-12):
            break
    root = np.exp(0.5 * (a + b))
    return np.where(ok, root, np.nan), ga, gb


def _bootstrap_cannot_cluster(fit) -> bool:
    """Whether the fit's bootstrap has too few clusters for an interval (or gave none)."""
    boot = getattr(fit, "boot", None)
    if boot is None:
        return False
    return boot.too_few_clusters or (boot.degenerate and boot.unit in fit.points.columns)


def _cluster_unit(fit, interval: str, cluster: str | None) -> str | None:
    """Return the clusters of a cluster-robust interval, or None for the bootstrap's."""
    if interval not in ("auto", "bootstrap", "cluster"):
        raise LawfitError(f"interval must be 'auto', 'bootstrap' or 'cluster'; got {interval!r}.")
    if interval == "bootstrap" or (interval == "auto" and not _bootstrap_cannot_cluster(fit)):
        return None
    boot = getattr(fit, "boot", None)
    unit = cluster or (boot.unit if boot is not None and boot.unit != "cell" else None)
    if unit is None:
        raise LawfitError(
            "interval='cluster' needs clusters: pass cluster=<column of fit.points> "
            "(e.g. 'data_seed'), or fit with unit=<that column>."
        )
    return unit


def _with_cluster_intervals(table: pd.DataFrame, inv, unit: str, notes: list) -> pd.DataFrame:
    """Replace the table's interval by the cluster-robust delta-method one, row by row."""
    from lawfit.robust import log_delta_interval

    table = table.rename(columns={"low": "low_bootstrap", "high": "high_bootstrap"})
    key = "length" if inv.mode == "capacity" else inv.cap
    cis = [
        log_delta_interval(
            inv.fit,
            lambda th, q=q, t=t: inv.solve(th, q, t)[0],
            cluster=unit,
            level=inv.level,
        )
        if not (un or tr)
        else (math.nan, math.nan, math.nan)
        for q, t, un, tr in zip(
            table[key], table["target"], table["unreachable"], table["trivial"], strict=True
        )
    ]
    low, high, dof = (np.array(c, float) for c in zip(*cis, strict=True))
    at = table.columns.get_loc("estimate") + 1
    for name, col in (("dof", dof), ("high", high), ("low", low)):
        table.insert(at, name, col)
    notes.append(
        f"low/high: cluster-robust delta method over the {unit} clusters (CR2 sandwich, "
        "Bell-McCaffrey dof, on the log answer; calibrated down to 3 clusters, where a "
        "cluster bootstrap is too narrow); the bootstrap percentile interval is in "
        "low_bootstrap/high_bootstrap"
    )
    return table


def _few_clusters_flag(fit, unit: str | None) -> tuple[Flag, ...]:
    """Pass on the fit's ``few_clusters`` flag when the answers' intervals are its draws'."""
    boot = getattr(fit, "boot", None)
    if unit is not None or boot is None or not boot.too_few_clusters:
        return ()
    return (
        Flag(
            "few_clusters",
            f"the intervals come from the fit's bootstrap over only {fit.boot.n_clusters} "
            f"{fit.boot.unit} clusters, so they are too narrow (unreliable below ~10 "
            "clusters); read them as a lower bound on the uncertainty",
        ),
    )
