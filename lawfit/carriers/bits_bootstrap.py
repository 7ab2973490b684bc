"""Each carrier's row of :func:`~lawfit.carriers.carrier_bits`, with its bootstrap draws.

:func:`_ratios` gives, per carrier, the mean bits per parameter and per byte over its
capacity cells and what sizes it in knobs (:func:`_carrier_row`), with Hesterberg's
expanded percentile interval (:func:`_ratio`) over resampling weights that draw cells
within each carrier or clusters shared by every carrier (:func:`_bootstrap_weights`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.bootstrap import MIN_DISTINCT_DRAWS, cluster_column, cluster_index
from lawfit.carriers.frame import carrier_of
from lawfit.data import with_runs


def _ratio(b, denom, w, n, level) -> dict:
    """Mean of the per-cell ratios b / denom, with an expanded percentile interval.

    The interval is the bootstrap percentile interval of the weighted means (weights ``w``,
    one row per draw) widened about the estimate by t₍ₙ₋₁₎/z · √(n/(n−1)), with n the
    resampled units: Hesterberg's (2015) expanded percentile interval, which corrects the
    narrowness of the plain percentile interval of a mean over few cells. Draws that all
    give one mean (a carrier whose cells sit in one cluster) give no interval: NaN bounds
    and NaN draws (:data:`~lawfit.bootstrap.MIN_DISTINCT_DRAWS`).
    """
    with np.errstate(all="ignore"):
        r = b / denom
    est = float(r.mean()) if np.isfinite(r).all() else math.nan
    if w is None or not np.isfinite(est):
        return {"estimate": est, "low": math.nan, "high": math.nan, "draws": None}
    with np.errstate(all="ignore"):
        d = (w @ r) / w.sum(axis=1)
    d = d[np.isfinite(d)]  # a cluster draw that left the carrier out has no mean
    n = max(int(n), 2)
    q = 0.5 + level / 2
    widen = stats.t.ppf(q, n - 1) / stats.norm.ppf(q) * math.sqrt(n / (n - 1))
    d = est + widen * (d - est)
    if np.unique(d).size < MIN_DISTINCT_DRAWS:  # e.g. every capacity cell on one sequence
        return {
            "estimate": est,
            "low": math.nan,
            "high": math.nan,
            "draws": np.full_like(d, np.nan),
        }
    lo, hi = np.quantile(d, [1 - q, q])
    return {"estimate": est, "low": float(lo), "high": float(hi), "draws": d}


def _carrier_row(sub: pd.DataFrame, w, n, level) -> tuple[dict, np.ndarray | None]:
    """One carrier's bits per parameter and per byte, and what sizes it in knobs."""
    b = sub["bits"].to_numpy(float)
    npar, nby = sub["n_params"].to_numpy(float), sub["n_bytes"].to_numpy(float)
    per_param, per_byte = _ratio(b, npar, w, n, level), _ratio(b, nby, w, n, level)
    label, knob, template = carrier_of(sub["modules"].iloc[0])
    row = {"carrier": label}
    for name, r in (("bits_per_param", per_param), ("bits_per_byte", per_byte)):
        row.update({name: r["estimate"], f"{name}_low": r["low"], f"{name}_high": r["high"]})
    per_size = sub.groupby("knob")[["bits", "n_params"]].sum()
    ratio = per_size["bits"] / per_size["n_params"]
    ppk = npar / sub["knob"].to_numpy(float)
    bpp = nby / npar
    row.update(
        n_sizes=len(per_size),
        n_cells=len(sub),
        size_min=float(npar.min()),
        size_max=float(npar.max()),
        ratio_min=float(ratio.min()),
        ratio_max=float(ratio.max()),
        params_per_knob=_constant(ppk),
        bytes_per_param=_constant(bpp),
        knob=knob,
        template=template,
        lower_bound=bool(sub["saturated"].any() or sub["at_longest"].any()),
        n_still_improving=float(sub["still_improving"].sum(min_count=1)),
        bits_kind="/".join(sorted(set(sub["bits_kind"].astype(str)))),
        n_draws=0 if per_param["draws"] is None else int(per_param["draws"].size),
    )
    return row, per_param["draws"]


def _constant(values: np.ndarray) -> float:
    """Return the common value of an array (NaN when its values differ or are unknown)."""
    v = np.asarray(values, float)
    if v.size == 0 or not np.isfinite(v).all() or np.ptp(v) > 1e-9 * np.abs(v).max():
        return math.nan
    return float(v[0])


def _ratios(cells, bootstrap, unit, level, gen, notes):
    """Per-carrier mean bits per size, with the bootstrap draws of bits per parameter."""
    labels = sorted(cells["carrier"].unique())
    weights, units = _bootstrap_weights(cells, labels, bootstrap, unit, gen, notes)
    rows, draws = [], []
    for c in labels:
        sub = (cells["carrier"] == c).to_numpy()
        row, d = _carrier_row(
            cells.loc[sub],
            None if weights is None else weights[:, sub],
            np.unique(units[sub]).size,
            level,
        )
        rows.append(row)
        draws.append(d)
    notes.append(
        "bits per parameter = mean of bits / n_params over each carrier's capacity "
        "cells (per size, the length with the most mean bits), with an expanded "
        "percentile interval; predictions assume capacity proportional to size "
        "(compare ratio_min and ratio_max)"
    )
    if weights is None:
        return pd.DataFrame(rows), None
    width = max(d.size for d in draws)  # cluster draws without a carrier are left out
    padded = [np.pad(d, (0, width - d.size), constant_values=np.nan) for d in draws]
    return pd.DataFrame(rows), np.vstack(padded)


def _bootstrap_weights(cells, labels, bootstrap, unit, gen, notes):
    """Resampling weights (R, cells) and each cell's unit.

    ``unit="cell"`` resamples cells within each carrier; a cluster unit resamples clusters
    shared by every carrier.
    """
    n = len(cells)
    if unit == "cell":
        units = np.arange(n)
        if not bootstrap:
            return None, units
        W = np.zeros((bootstrap, n))
        for c in labels:
            idx = np.flatnonzero(cells["carrier"].to_numpy() == c)
            W[:, idx] = gen.multinomial(idx.size, np.full(idx.size, 1 / idx.size), size=bootstrap)
        return W, units
    cells = with_runs(cells)  # a run is one (seed, data_seed) pair
    cl = cluster_index(cells, unit, fix="unit='cell'")
    g = int(cl.max()) + 1
    notes.append(
        f"bootstrap over {g} {cluster_column(cells, unit)} clusters, shared by every carrier"
    )
    if not bootstrap:
        return None, cl
    return gen.multinomial(g, np.full(g, 1 / g), size=bootstrap)[:, cl].astype(float), cl


def unbalanced_clusters(cells: pd.DataFrame, unit: str) -> list[str]:
    """Describe the carriers some of whose sizes lack a cluster they have at another size.

    A cluster bootstrap resamples such a size's cells only where they were collected, so
    it sees that size's spread between clusters in part or not at all: the interval can be
    much narrower than the uncertainty. Returns one description per such carrier (none for
    ``unit="cell"``).
    """
    if unit == "cell" or cells.empty:
        return []
    runs = with_runs(cells)
    cl = cluster_index(runs, unit, fix="unit='cell'")
    name = cluster_column(runs, unit)
    out = []
    for carrier, sub in cells.assign(_cluster=cl).groupby("carrier", sort=True):
        have = sub["_cluster"].nunique()
        per_size = sub.groupby("knob")["_cluster"].nunique()
        thin = int((per_size < have).sum())
        if thin:
            out.append(
                f"{carrier} ({thin} of {len(per_size)} sizes on fewer than its {have} "
                f"{name} clusters)"
            )
    return out
