"""Capacity planning from a fitted law: :func:`predict_capacity` and its result.

:func:`predict_capacity` inverts a fitted law (:mod:`lawfit.capacity.inversion`) on the
point estimate and every bootstrap draw: the rank (or parameter count) needed to reach a
target at a given length, or the longest target a given capacity can hold, as a
:class:`CapacityPrediction`. The helpers here read ``loss_before`` and parameters per rank
from the data and add the bits per parameter each answer implies
(:mod:`lawfit.capacity.bits`); :func:`prediction_capacity_use` does the same for
:meth:`FitResult.predict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit._tokens import load, ok_mask
from lawfit.capacity.bits import beyond_known_capacity, implied_bits_per_param
from lawfit.capacity.inversion import (
    _cluster_unit,
    _few_clusters_flag,
    _Inversion,
    _with_cluster_intervals,
)
from lawfit.errors import LawfitError
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

#: The capacity table's columns a reader is shown (the report, analysis/05).
SHOWN_COLUMNS = (
    "length",
    "loss_before",
    "target_dL",
    "estimate",
    "low",
    "high",
    "dof",
    "n_params_estimate",
    "n_unreachable",
    "extrapolated",
)


def prediction_capacity_use(fit, table: pd.DataFrame, entropy_bits=None):
    """Bits per parameter implied by :meth:`FitResult.predict`'s rows, and the flag.

    Used only for a law in ``n_params`` and ``length`` whose response is ΔL. ``loss_after``
    comes from the fit's cells (mean ``loss_before`` per length, interpolated) when
    ``entropy_bits`` is given.

    Returns
    -------
    bits_per_param : numpy.ndarray
    kind : str
    flags : tuple of Flag
    """
    la = None
    if entropy_bits is not None:
        pts = fit.points
        if {"loss_after", "length"} <= set(pts.columns):
            l0fn, _ = _loss_before_fn(
                None, pts.assign(loss_before=pts["loss_after"] + pts[fit.response])
            )
            la = l0fn(table["length"].to_numpy(float)) - table["mean"].to_numpy(float)
    bpp, kind = implied_bits_per_param(
        table["n_params"],
        table["length"],
        loss_reduction=table["mean"],
        loss_after=la,
        entropy_bits=entropy_bits,
    )
    flag = beyond_known_capacity(bpp, kind)
    return bpp, kind, (flag,) if flag else ()


@dataclass(frozen=True)
class CapacityPrediction(ResultProtocol):
    """Capacity needed for a target, from a fitted law inverted on every draw.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per query with ``estimate``, ``low``, ``high`` (bootstrap percentile
        over the draws, unreachable ones counted as infinite; or, for a cluster-robust
        interval, the delta method with its ``dof`` and the bootstrap's interval in
        ``low_bootstrap``/``high_bootstrap``), ``n_draws``,
        ``n_unreachable`` (draws on which no capacity reaches the target),
        ``unreachable`` (the point estimate cannot reach it), ``extrapolated`` (the
        answer lies outside the fitted range of ranks or lengths) and ``target_dL``
        (the target in ΔL units).
    quantity : str
        ``"rank"`` (or ``"n_params"``) needed, or ``"length"`` that can be held.
    level : float
        Confidence level.
    notes : tuple of str
        Assumptions and context.
    flags : tuple of Flag
        Warnings: ``unreachable``, ``unreachable_on_draws``, ``extrapolated``,
        ``few_clusters`` (a bootstrap interval over fewer than 10 clusters).
    draw_values : numpy.ndarray or None
        The answer on every converged bootstrap draw, shape (rows of ``table``, R):
        ``inf`` (capacity) or 0 (length) where unreachable.
    """

    table: pd.DataFrame
    quantity: str
    level: float
    notes: tuple[str, ...] = field(default=())
    draw_values: np.ndarray | None = field(default=None, repr=False)
    flags: tuple[Flag, ...] = field(default=())

    _main_table = "table"

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        str
            Multi-line text.
        """
        out = [f"Capacity prediction: {self.quantity}", "=" * 30]
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            out.append(self.table.to_string(index=False))
        out += [f"flag: {f}" for f in self.flags]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def _loss_before_fn(loss_before, data):
    """Return (callable length -> L0, description) or (None, reason)."""
    if loss_before is not None:
        if callable(loss_before):
            return loss_before, "given (callable)"
        v = float(loss_before)
        if not v > 0:
            raise LawfitError(
                f"loss_before must be a positive loss in nats per token; got {loss_before!r}."
            )
        return (lambda ell: np.full(np.shape(ell), v)), f"given ({v:.4g} nats)"
    if data is None:
        return None, "no loss_before given and no data"
    d = load(data) if not isinstance(data, pd.DataFrame) else data
    if isinstance(d, pd.DataFrame):
        if "loss_before" not in d.columns or "length" not in d.columns:
            return None, "data lacks loss_before/length"
        m = d.groupby("length")["loss_before"].mean()
    else:
        if "loss_before" not in d or "length" not in d.dims:
            return None, "data lacks loss_before over length"
        lb = d["loss_before"]
        dims = tuple(x for x in lb.dims)
        okm = ok_mask(d, dims)
        lb = lb.where(okm)
        m = lb.mean([x for x in lb.dims if x != "length"], skipna=True).to_series()
    m = m[np.isfinite(m.to_numpy(float))]
    if m.empty:
        return None, "data has no finite loss_before"
    x = np.log(m.index.to_numpy(float))
    y = m.to_numpy(float)

    def f(ell):
        # linear interpolation in log length; constant beyond the observed lengths
        return np.interp(np.log(np.asarray(ell, float)), x, y)

    return f, (
        f"from data: mean loss_before per length, interpolated in log length over "
        f"{int(m.index.min())}-{int(m.index.max())} (constant beyond)"
    )


def _params_per_rank(data) -> float | None:
    """Trainable parameters per unit of rank when n_params ∝ rank in ``data`` (else None)."""
    if data is None or isinstance(data, pd.DataFrame):
        if isinstance(data, pd.DataFrame) and {"n_params", "rank"} <= set(data.columns):
            ratio = (data["n_params"] / data["rank"]).to_numpy(float)
        else:
            return None
    else:
        d = load(data)
        if "n_params" not in d or "rank" not in d["n_params"].dims:
            return None
        ratio = (d["n_params"] / d["rank"]).values.ravel().astype(float)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if ratio.size == 0 or np.ptp(ratio) > 1e-9 * ratio.max():
        return None
    return float(ratio.max())


def predict_capacity(
    fit,
    *,
    length=None,
    rank=None,
    target,
    target_kind: str = "loss_reduction",
    loss_before=None,
    data=None,
    confidence_level: float | None = None,
    search: tuple[float, float] = (1e-3, 1e3),
    entropy_bits: float | None = None,
    interval: str = "auto",
    cluster: str | None = None,
) -> CapacityPrediction:
    """Invert a fitted law: capacity needed for a target, or the longest target held.

    Pass ``length`` to get the capacity (rank, or parameters for a law in
    ``n_params``) that reaches ``target`` at that length; pass ``rank`` (capacity)
    to get the longest length at which ``target`` is still reached. The inversion is
    done on the point estimate and on *every* bootstrap draw of ``fit``; draws on which
    the target cannot be reached are counted (``n_unreachable``) and enter the
    percentile interval as an infinite capacity (or a zero length), so the interval
    stays honest instead of silently dropping them.

    Parameters
    ----------
    fit : FitResult
        A law whose inputs are a capacity (``rank`` or ``n_params``), ``length`` and
        optionally ``loss_before``; bootstrap draws give the CI (else no CI).
    length : float or array_like, optional
        Target lengths (tokens) for the capacity needed.
    rank : float or array_like, optional
        Capacities (in the law's capacity unit) for the longest length held.
    target : float or array_like
        Target ΔL (``target_kind="loss_reduction"``) or target ``loss_after``
        (``target_kind="loss_after"``; ln 2 ≈ 0.693 is the recall threshold).
    target_kind : {"loss_reduction", "loss_after"}
        Meaning of ``target``. ``"loss_after"`` needs ``loss_before`` at each length:
        ΔL target = L₀(ℓ) − target.
    loss_before : float or callable, optional
        L₀ in nats per token (constant) or a function of length. Default: from ``data``.
    data : xarray.Dataset or pandas.DataFrame, optional
        Data to read ``loss_before`` from (mean per length, interpolated in log length)
        and, for a law in rank, ``n_params``: when it is proportional to rank the
        table gains ``n_params_estimate/low/high`` (the parameter count needed).
    confidence_level : float, optional
        Level of the percentile interval (default: the fit's).
    search : (float, float)
        Search range of the root as multiples of the fitted range (below its minimum,
        above its maximum); roots beyond count as unreachable.
    entropy_bits : float, optional
        Content entropy per target token (bits). Where the parameter count of an answer is
        known (a law in ``n_params``, or ``n_params`` ∝ rank in ``data``), the table gains
        ``bits_per_param``, the bits per parameter the answer implies: information (a lower
        bound, ℓ·max(0, H − L₁/ln 2)) when H and the loss after are known, else ΔL bits. H
        defaults to ``data``'s ``entropy_bits`` when it is one value for every token. More
        than ~3.6 bits/param is flagged ``beyond_known_capacity``.
    interval : {"auto", "bootstrap", "cluster"}
        ``"bootstrap"``: percentile interval of the answers on the fit's draws.
        ``"cluster"``: cluster-robust delta method on the log answer (CR2 sandwich,
        Bell-McCaffrey dof; :func:`lawfit.robust.log_delta_interval`), calibrated down to
        3 clusters; the bootstrap's interval, if any, moves to ``low_bootstrap`` and
        ``high_bootstrap``. ``"auto"`` (default): ``"cluster"`` when the fit's bootstrap
        clusters over fewer than 10 units (flag ``few_clusters``) or gave no interval over
        its clusters (``bootstrap_degenerate``), else ``"bootstrap"``.
    cluster : str, optional
        Column defining the clusters for ``interval="cluster"``; default the fit's
        bootstrap unit.

    Returns
    -------
    CapacityPrediction
        One row per (query, target) with estimate, interval, unreachable counts and
        the extrapolation flag.

    Raises
    ------
    LawfitError
        Neither or both of ``length`` and ``rank``; a loss_after target without
        loss_before; a law without a capacity or length input; bad values.
    """
    inv, queries, targets, l0desc = _checked_inversion(
        fit, length, rank, target, target_kind, loss_before, data, confidence_level, search
    )
    boot = getattr(fit, "boot", None)
    draws = boot.usable_draws() if boot is not None and not boot.degenerate else None
    notes = [f"loss_before: {l0desc}"] if inv.need_l0 else []
    table, dvals = _answers(inv, queries, targets, draws, notes)
    unit = _cluster_unit(fit, interval, cluster)
    if unit is not None:
        table = _with_cluster_intervals(table, inv, unit, notes)
    if inv.cap == "rank" and inv.mode == "capacity":
        table = _with_params_needed(table, data, notes)
    notes.extend(_missing_interval_notes(boot, draws, unit))
    if table["trivial"].any():
        notes.append(
            "some targets are already met at the smallest capacity searched (or at "
            "every length): estimate set to the search bound / inf"
        )
    flag = _capacity_use(table, inv, inv.cap, inv.mode, data, entropy_bits, notes)
    return CapacityPrediction(
        table=table,
        quantity=inv.cap if inv.mode == "capacity" else "length",
        level=inv.level,
        notes=tuple(dict.fromkeys(notes)),
        flags=inv.flags(table) + ((flag,) if flag else ()) + _few_clusters_flag(fit, unit),
        draw_values=np.vstack(dvals) if dvals else None,
    )


def _checked_inversion(
    fit, length, rank, target, target_kind, loss_before, data, confidence_level, search
):
    """Check a :func:`predict_capacity` query before any work; return what it inverts.

    Returns ``(inversion, queries, targets, loss_before_description)``; raises
    :class:`LawfitError` naming the bad argument.
    """
    cap = _check_capacity_query(fit, length, rank, target_kind)
    level = V.confidence_level(
        fit.confidence_level if confidence_level is None else confidence_level
    )
    search = V.search_range(search)
    targets = np.atleast_1d(np.asarray(target, float))
    if not np.all(np.isfinite(targets)):
        raise LawfitError(f"target must be finite numbers; got {target!r}.")
    l0fn, l0desc = _loss_before_fn(loss_before, data)
    need_l0 = target_kind == "loss_after" or "loss_before" in fit.inputs
    if need_l0 and l0fn is None:
        raise LawfitError(
            f"{'target_kind=' + repr(target_kind) if target_kind == 'loss_after' else 'this law'}"
            f" needs loss_before at the queried lengths ({l0desc}). Pass loss_before=<nats> "
            "or data=<the dataset> (its mean loss_before per length is used)."
        )
    mode = "capacity" if length is not None else "length"
    queries = np.atleast_1d(np.asarray(length if mode == "capacity" else rank, float))
    if np.any(~np.isfinite(queries)) or np.any(queries <= 0):
        raise LawfitError(
            f"{'length' if mode == 'capacity' else 'rank'} must be positive numbers; got "
            f"{queries.tolist()}."
        )
    inv = _Inversion(
        fit=fit,
        cap=cap,
        mode=mode,
        target_kind=target_kind,
        l0fn=l0fn,
        need_l0=need_l0,
        search=tuple(search),
        level=level,
    )
    return inv, queries, targets, l0desc


def _answers(inv, queries, targets, draws, notes: list[str]):
    """Invert every (query, target): the table's rows, and each answer's draw values."""
    rows, dvals = [], []
    for q in queries:
        for t in targets:
            row, v = inv.answer(q, t, draws, notes)
            rows.append(row)
            if v is not None:
                dvals.append(v)
    return pd.DataFrame(rows), dvals


def _with_params_needed(table: pd.DataFrame, data, notes: list[str]) -> pd.DataFrame:
    """Add ``n_params_estimate/low/high`` where ``n_params`` ∝ rank in ``data``."""
    per_rank = _params_per_rank(data)
    if per_rank is None:
        return table
    for c in ("estimate", "low", "high"):
        table[f"n_params_{c}"] = table[c] * per_rank
    notes.append(
        f"n_params_* = rank × {per_rank:g} trainable parameters per rank (from the data's n_params)"
    )
    return table


def _missing_interval_notes(boot, draws, unit) -> list[str]:
    """Why an answer has no interval: degenerate or absent bootstrap draws, no clusters."""
    if draws is not None or unit is not None:
        return []
    if boot is not None:
        return [
            "the fit's bootstrap replicates are one estimate (flag bootstrap_degenerate): "
            "no interval"
        ]
    return ["the fit has no bootstrap draws: no interval (refit with bootstrap=N)"]


def _constant_entropy(data) -> float | None:
    """Return the content entropy per token of ``data`` when it is one value everywhere."""
    if data is None or isinstance(data, pd.DataFrame):
        return None
    ds = load(data)
    if "entropy_bits" not in ds:
        return None
    v = np.asarray(ds["entropy_bits"].values, float)
    v = v[np.isfinite(v)]
    if v.size == 0 or np.ptp(v) > 1e-9 * v.max():
        return None
    return float(v[0])


def _capacity_use(table, inv, cap, mode, data, entropy_bits, notes) -> Flag | None:
    """Add ``bits_per_param`` (what each answer implies) to ``table``; flag > ~3.6."""
    per_param = 1.0 if cap == "n_params" else _params_per_rank(data)
    if per_param is None:
        return None
    if entropy_bits is None:
        entropy_bits = _constant_entropy(data)
    if mode == "capacity":
        n, ell = table["estimate"].to_numpy(float) * per_param, table["length"].to_numpy(float)
    else:
        n, ell = table[cap].to_numpy(float) * per_param, table["estimate"].to_numpy(float)
    dl = table["target_dL"].to_numpy(float)
    if inv.target_kind == "loss_after":
        la = table["target"].to_numpy(float)
    elif inv.l0fn is not None:
        la = inv.l0fn(ell) - dl
    else:
        la = None
    bpp, kind = implied_bits_per_param(
        n, ell, loss_reduction=dl, loss_after=la, entropy_bits=entropy_bits
    )
    known = np.isfinite(n) & (n > 0) & (ell > 0) & ~table["trivial"].to_numpy(bool)
    table["bits_per_param"] = np.where(known, bpp, np.nan)  # trivial: n is the search bound
    notes.append(
        f"bits_per_param: bits per parameter each answer implies ({kind}"
        + (
            f", content entropy {entropy_bits:.6g} bits/token"
            if kind != "dl"
            else "; pass entropy_bits= for information"
        )
        + ")"
    )
    return beyond_known_capacity(table["bits_per_param"], kind)


def _check_capacity_query(fit, length, rank, target_kind) -> str:
    """Validate what :func:`predict_capacity` is asked; return the law's capacity input."""
    if not hasattr(fit, "param_names") or not hasattr(fit, "inputs"):
        raise LawfitError(
            f"fit must be a FitResult from lawfit.fit; got {type(fit).__name__}. For grouped "
            "fits (by=...), pass one group: fits[key] or fits.sel(...)."
        )
    if (length is None) == (rank is None):
        raise LawfitError(
            "pass exactly one of length= (capacity needed at that length) or rank= (longest "
            f"length held at that capacity); got length={length!r}, rank={rank!r}."
        )
    if target_kind not in ("loss_reduction", "loss_after"):
        raise LawfitError(
            f"target_kind must be 'loss_reduction' or 'loss_after'; got {target_kind!r}."
        )
    inputs = tuple(fit.inputs)
    cap = next((c for c in inputs if c in ("rank", "n_params")), None)
    if cap is None or "length" not in inputs:
        raise LawfitError(
            f"predict_capacity needs a law in a capacity (rank or n_params) and length; this "
            f"law takes {inputs}. Fit a form with those inputs."
        )
    other = [c for c in inputs if c not in (cap, "length", "loss_before")]
    if other:
        raise LawfitError(
            f"predict_capacity can invert a law in {cap}, length and loss_before "
            f"only; this law also takes {other}."
        )
    return cap
