"""Capacity planning from a fitted law, and bits stored per adapter parameter.

:func:`predict_capacity` inverts a fitted law on every bootstrap draw: the rank (or
parameter count) needed to reach a target at a given length, and the longest target a
given capacity can hold. :func:`bits_per_parameter` measures how many bits the adapters
stored, by default as information (:mod:`lawfit.information`: Σₜ max(0, Hₜ − CE_after,ₜ/ln 2),
with the ΔL bits Σₜ log₂ p_after − log₂ p_before and the bits recalled beside it), and compares
bits per trainable parameter with the ~2 (Allen-Zhu & Li) and ~3.6 (Morris et al. 2025)
anchors, which count information too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit._tokens import CELL_DIMS, load, ok_mask
from lawfit.data import LN2
from lawfit.errors import LawfitError
from lawfit.information import BIT_KINDS, with_information_bits
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

__all__ = [
    "ANCHORS_BITS_PER_PARAM",
    "BitsResult",
    "CapacityPrediction",
    "KNOWN_CAPACITY_BITS_PER_PARAM",
    "beyond_known_capacity",
    "bits_per_parameter",
    "predict_capacity",
]


#: Literature anchors of memorization capacity, bits per trainable parameter.
ANCHORS_BITS_PER_PARAM = {
    "Allen-Zhu & Li 2024 (Physics of LMs 3.3)": 2.0,
    "Morris et al. 2025 (How much do LMs memorize?)": 3.6,
}
#: Largest information capacity the literature reports (Morris et al. 2025), bits per
#: trainable parameter: a prediction implying more is beyond known capacity.
KNOWN_CAPACITY_BITS_PER_PARAM = max(ANCHORS_BITS_PER_PARAM.values())
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
_KIND_WORDS = {
    "stored": "information bits stored",
    "recalled": "information bits recalled",
    "dl": "ΔL bits (not information: they overstate it on random tokens)",
    "information lower bound": "information bits (a lower bound)",
}


def beyond_known_capacity(bits_per_param, kind: str = "stored") -> Flag | None:
    """Flag a prediction implying more than ~3.6 bits per parameter (None when it does not).

    Parameters
    ----------
    bits_per_param : float or array_like
        Bits per trainable parameter that the prediction implies (NaN ignored).
    kind : str
        What the bits count: ``"stored"``, ``"recalled"``, ``"information lower bound"``
        (all information: the flag is a ``"warning"``) or ``"dl"`` (ΔL bits, which
        overstate information in expectation: the flag is ``"info"``, a hint to pass the
        content's entropy).

    Returns
    -------
    Flag or None
        Code ``beyond_known_capacity`` when the largest value exceeds
        :data:`KNOWN_CAPACITY_BITS_PER_PARAM`.
    """
    v = np.asarray(bits_per_param, float)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.max() <= KNOWN_CAPACITY_BITS_PER_PARAM:
        return None
    hint = (
        " (pass entropy_bits=<the content's entropy per token> to check it in information)"
        if kind == "dl"
        else ""
    )
    return Flag(
        "beyond_known_capacity",
        f"a prediction implies up to {v.max():.3g} bits per parameter "
        f"({_KIND_WORDS.get(kind, kind)}), more than the ~{KNOWN_CAPACITY_BITS_PER_PARAM:g} "
        "bits/param of Morris et al. 2025 (and the ~2 of Allen-Zhu & Li): beyond known "
        f"capacity, an extrapolation the law cannot support{hint}",
        "info" if kind == "dl" else "warning",
    )


def implied_bits_per_param(
    n_params, length, *, loss_reduction, loss_after=None, entropy_bits=None
) -> tuple[np.ndarray, str]:
    """Bits per parameter that a predicted cell implies, and what they count.

    With the content's entropy H (bits per token) and the predicted ``loss_after`` L₁, the
    information stored is at least ℓ·max(0, H − L₁/ln 2) (the bits saved below the content's
    entropy, which the per-token floor of ``bits_stored`` only raises). Otherwise the ΔL bits
    ℓ·ΔL/ln 2, which overstate information in expectation (a base model's cross-entropy is at
    least the content's entropy).

    Parameters
    ----------
    n_params, length, loss_reduction : array_like
        Trainable parameters, target length and predicted ΔL (nats/token).
    loss_after : array_like, optional
        Predicted loss after training (nats/token).
    entropy_bits : float, optional
        Content entropy per target token, bits.

    Returns
    -------
    bits_per_param : numpy.ndarray
    kind : {"information lower bound", "dl"}
    """
    n, ell = np.asarray(n_params, float), np.asarray(length, float)
    with np.errstate(all="ignore"):
        if entropy_bits is not None and loss_after is not None:
            bits = ell * np.maximum(0.0, float(entropy_bits) - np.asarray(loss_after) / LN2)
            return bits / n, "information lower bound"
        return ell * np.asarray(loss_reduction, float) / LN2 / n, "dl"


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


# ------------------------------------------------------------------------ bits/param
@dataclass(frozen=True)
class BitsResult(ResultProtocol):
    """Bits stored by each adapter and bits per trainable parameter.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per ok cell: coordinates, ``bits`` (the kind asked for, see
        :func:`bits_per_parameter`), ``bits_kind`` (what ``bits`` holds in that row),
        ``bits_stored``, ``bits_recalled``, ``bits_dl`` (:mod:`lawfit.information`),
        ``bits_max`` (all a target can take: its content's entropy Σₜ Hₜ for information
        bits, Σₜ −log₂ p_before for ΔL bits), ``n_params`` and ``bits_per_param``;
        ``source`` says whether tokens or cell losses were used.
    by_rank : pandas.DataFrame
        Per capacity group (grouping dims + rank): the largest bits stored over lengths
        and its bits per parameter (the adapter's demonstrated capacity), with the
        length at which it was reached, whether that cell was saturated (mean
        loss_after <= ln 2, the paper's memorized rule) and whether that length is the
        longest collected for the group (``at_longest``): either way the capacity is
        only a lower bound.
    anchors : dict
        The literature anchors (bits per parameter).
    notes : tuple of str
        What was missing or assumed.
    flags : tuple of Flag
        Warnings (none set yet; the field completes the common result interface).
    """

    cells: pd.DataFrame
    by_rank: pd.DataFrame
    anchors: dict
    notes: tuple[str, ...]
    flags: tuple[Flag, ...] = ()

    @property
    def max_bits_per_param(self) -> float:
        """Largest bits per parameter demonstrated by any cell (NaN without n_params)."""
        v = self.cells.get("bits_per_param")
        return float(np.nanmax(v)) if v is not None and np.isfinite(v).any() else math.nan

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        str
            Multi-line text.
        """
        out = ["Bits stored per adapter parameter", "=" * 33]
        if "bits_per_param" in self.by_rank:
            varying = [  # the groups' other dims, named where they tell rows apart
                c
                for c in self.by_rank.columns
                if c in CELL_DIMS and c not in ("rank", "length") and self.by_rank[c].nunique() > 1
            ]
            for _, r in self.by_rank.iterrows():
                where = ", ".join(f"{c} {r[c]}" for c in varying)
                out.append(
                    f"rank {int(r['rank'])}{f' ({where})' if where else ''}: "
                    f"up to {r['bits']:.0f} bits "
                    f"({r['bits_per_param']:.3g} bits/param at length {int(r['length'])}"
                    + (", saturated: lower bound" if r["saturated"] else "")
                    + (
                        ", the longest length collected: lower bound"
                        if r.get("at_longest", False) and not r["saturated"]
                        else ""
                    )
                    + ")"
                )
        out += [f"anchor {k}: {v} bits/param" for k, v in self.anchors.items()]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def largest_bits(mean: pd.DataFrame, group: Sequence[str]) -> pd.DataFrame:
    """Return, per group, the row of the length with the most bits, and if it is the longest.

    Parameters
    ----------
    mean : pandas.DataFrame
        One row per group and ``length`` with a ``bits`` column (mean over replicates).
    group : sequence of str
        The columns naming a capacity group (e.g. the grouping dims and rank, or a carrier
        and its size).

    Returns
    -------
    pandas.DataFrame
        One row per group, with ``at_longest``: the most bits sit at the longest length
        collected for the group, so longer targets may hold more and the group's capacity
        is only a lower bound.
    """
    group = list(group)
    best = mean.loc[mean.groupby(group)["bits"].idxmax()].reset_index(drop=True)
    longest = mean.groupby(group, as_index=False)["length"].max()
    longest = best[group].merge(longest, on=group, how="left")["length"].to_numpy()
    return best.assign(at_longest=best["length"].to_numpy() == longest)


def bits_per_parameter(
    ds, *, recall_loss: float = LN2, kind: str = "stored", entropy=None
) -> BitsResult:
    """Bits stored by each adapter, and bits per trainable parameter.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset. Uses ``p_after``/``p_before`` over ``token`` when present
        (Σₜ log₂ p_after − log₂ p_before), otherwise ``loss_reduction × length / ln 2``
        (the same quantity from the cell means). ``n_params`` gives bits per parameter.
    recall_loss : float
        A cell whose ``loss_after`` is at or below this (default ln 2) is saturated: the
        target was memorized, so its bits are a lower bound of the adapter's capacity.
    kind : {"stored", "recalled", "dl"}
        What ``bits`` counts: information stored (default; Σₜ max(0, Hₜ − CE_after,ₜ/ln 2)),
        the entropy of the entries recalled exactly, or ΔL bits (not information). Cells
        whose content entropy is unknown (natural text) fall back to ΔL bits, flagged. All
        three are columns of ``cells`` whatever ``kind`` is.
    entropy : float or xarray.DataArray, optional
        Hₜ in bits per target token (:func:`lawfit.information.target_entropy`); default:
        the dataset's ``entropy_bits``, else derived from its task metadata.

    Returns
    -------
    BitsResult
        Per-cell and per-rank tables, with the anchors.

    Raises
    ------
    LawfitError
        If the dataset has neither token probabilities nor ``loss_reduction``.
    """
    ds = load(ds)
    if kind not in BIT_KINDS:
        raise LawfitError(f"kind must be one of {sorted(BIT_KINDS)}; got {kind!r}.")
    notes = []
    if "p_after" in ds and "p_before" in ds and "token" in ds["p_after"].dims:
        pa, pb = ds["p_after"], ds["p_before"].broadcast_like(ds["p_after"])
        bits = (np.log2(pa) - np.log2(pb)).sum("token", skipna=True)
        bmax = (-np.log2(pb)).sum("token", skipna=True)
        src = "tokens"
        if "step" in bits.dims:
            bits, bmax = bits.isel(step=-1), bmax.isel(step=-1)
    elif "loss_reduction" in ds and "length" in ds.dims:
        bits = ds["loss_reduction"] * ds["length"] / LN2
        bmax = ds["loss_before"] * ds["length"] / LN2 if "loss_before" in ds else None
        src = "cell losses"
        notes.append("no token probabilities: bits = loss_reduction × length / ln 2")
    else:
        raise LawfitError(
            "bits_per_parameter needs p_after and p_before over 'token', or loss_reduction "
            f"over 'length'; the dataset has {sorted(ds.data_vars)} with dims "
            f"{dict(ds.sizes)}. Collect one of them."
        )
    dims = tuple(d for d in bits.dims)
    df = bits.to_dataframe(name="bits").reset_index()
    df = df[[*dims, "bits"]]
    df["bits_max"] = (
        bmax.broadcast_like(bits).transpose(*dims).values.reshape(-1)
        if bmax is not None
        else np.nan
    )
    okm = ok_mask(ds, dims).reshape(-1)
    df = df[okm & np.isfinite(df["bits"].to_numpy())].reset_index(drop=True)
    # the token sum of a never-collected cell is 0, not NaN: drop those via status
    df["source"] = src
    flags: list[Flag] = []
    df = with_information_bits(df, ds, kind, entropy, notes, flags)
    if "loss_after" in ds:
        la = ds["loss_after"].broadcast_like(bits).to_dataframe(name="la").reset_index()
        df = df.merge(la[[*dims, "la"]], on=list(dims), how="left")
        df["saturated"] = df.pop("la") <= recall_loss
    else:
        df["saturated"] = False
    if "n_params" in ds:
        npar = ds["n_params"].to_dataframe(name="n_params").reset_index()
        keys = [c for c in npar.columns if c in df.columns and c != "n_params"]
        df = df.merge(npar[keys + ["n_params"]], on=keys, how="left")
        df["bits_per_param"] = df["bits"] / df["n_params"]
    else:
        notes.append(
            "no 'n_params' variable: bits per parameter not computed (add n_params, dims "
            "model, modules, rank: r times the summed in+out dims of the adapted matrices)"
        )
    group = [d for d in CELL_DIMS if d in df.columns and d not in ("length", "seed")]
    if "rank" in group and len(df):
        mean = df.groupby([*group, "length"], as_index=False).agg(
            bits=("bits", "mean"),
            **{c: (c, "mean") for c in BIT_KINDS.values() if c in df},
            saturated=("saturated", "all"),
            **({"n_params": ("n_params", "first")} if "n_params" in df else {}),
        )
        by_rank = largest_bits(mean, group)
        if "n_params" in by_rank:
            by_rank["bits_per_param"] = by_rank["bits"] / by_rank["n_params"]
        if by_rank["saturated"].any():
            notes.append(
                "some ranks reached their largest bits on a memorized target (mean "
                "loss_after <= ln 2): their capacity is a lower bound; collect longer targets"
            )
        if (by_rank["at_longest"] & ~by_rank["saturated"]).any():
            notes.append(
                "some ranks stored their most bits at the longest target collected for them "
                "(at_longest): longer targets may hold more, so their capacity is a lower "
                "bound; collect longer targets to see where bits stored stop growing"
            )
    else:
        by_rank = pd.DataFrame()
    return BitsResult(
        cells=df,
        by_rank=by_rank,
        anchors=dict(ANCHORS_BITS_PER_PARAM),
        notes=tuple(notes),
        flags=tuple(flags),
    )


# --------------------------------------------------------------- capacity prediction
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
    boot = getattr(fit, "boot", None)
    draws = boot.usable_draws() if boot is not None and not boot.degenerate else None
    notes = [f"loss_before: {l0desc}"] if need_l0 else []
    rows, dvals = [], []
    for q in queries:
        for t in targets:
            row, v = inv.answer(q, t, draws, notes)
            rows.append(row)
            if v is not None:
                dvals.append(v)
    table = pd.DataFrame(rows)
    unit = _cluster_unit(fit, interval, cluster)
    if unit is not None:
        table = _with_cluster_intervals(table, inv, unit, notes)
    per_rank = _params_per_rank(data) if cap == "rank" else None
    if per_rank is not None and mode == "capacity":
        for c in ("estimate", "low", "high"):
            table[f"n_params_{c}"] = table[c] * per_rank
        notes.append(
            f"n_params_* = rank × {per_rank:g} trainable parameters per rank (from the "
            "data's n_params)"
        )
    if draws is None and boot is not None and unit is None:
        notes.append(
            "the fit's bootstrap replicates are one estimate (flag bootstrap_degenerate): "
            "no interval"
        )
    elif draws is None and unit is None:
        notes.append("the fit has no bootstrap draws: no interval (refit with bootstrap=N)")
    if table["trivial"].any():
        notes.append(
            "some targets are already met at the smallest capacity searched (or at "
            "every length): estimate set to the search bound / inf"
        )
    flag = _capacity_use(table, inv, cap, mode, data, entropy_bits, notes)
    return CapacityPrediction(
        table=table,
        quantity=cap if mode == "capacity" else "length",
        level=level,
        notes=tuple(dict.fromkeys(notes)),
        flags=inv.flags(table) + ((flag,) if flag else ()) + _few_clusters_flag(fit, unit),
        draw_values=np.vstack(dvals) if dvals else None,
    )


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
