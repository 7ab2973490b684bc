"""Capacity-planning figures: rank needed for recall, bits per parameter."""

from __future__ import annotations

import warnings

import numpy as np

from lawfit.plotting._common import LN2, cells_frame, fig_ax, log_ticks, plain_log
from lawfit.plotting.style import OKABE_ITO, styled

__all__ = ["plot_capacity", "plot_bits_per_parameter"]


def _draw_capacity_law(ax, lengths: np.ndarray, pc, hi_l: float) -> None:
    """Draw the law's rank needed and its interval band, dashed where it is extrapolated.

    Extrapolated: the table's ``extrapolated`` flag (a rank or a length outside the fitted
    ranges), else lengths beyond ``hi_l``. The dashed part starts at the last solid point,
    so that the line is unbroken.
    """
    t = pc.table
    est = t["estimate"].to_numpy(float)
    if "extrapolated" in t:
        extra = t["extrapolated"].to_numpy(bool)
    else:
        extra = lengths > hi_l * (1 + 1e-9)
    fin = np.isfinite(est) & (est > 0)
    c = OKABE_ITO[5]
    inside = fin & ~extra
    ax.plot(lengths[inside], est[inside], "-", color=c, lw=1.2, label="law (fitted range)")
    ext = fin & (extra | np.r_[extra[1:], False])
    if ext.any():
        ax.plot(lengths[ext], est[ext], "--", color=c, lw=1.2, label="law (extrapolated)")
    if "low" in t:
        lo = t["low"].to_numpy(float)
        hi = t["high"].to_numpy(float)
        top = np.nanmax(est[fin]) * 50 if fin.any() else 1e3
        hi = np.where(np.isfinite(hi), hi, top)
        ok = np.isfinite(lo)
        if ok.any():
            ax.fill_between(
                lengths[ok], lo[ok], hi[ok], color=c, alpha=0.2, lw=0, label=f"{pc.level:.0%} CI"
            )


def _draw_measured_capacity(ax, data, target: float) -> None:
    """Mark the smallest collected rank whose mean loss_after meets the target, per length."""
    df = cells_frame(data, ["loss_after"])
    if "objective" in df:
        df = df[df["objective"].astype(str) == "sft"]
    m = df.groupby(["length", "rank"])["loss_after"].mean().reset_index()
    rows, miss = [], []
    for L, g in m.groupby("length"):
        hit = g[g["loss_after"] <= target]
        (rows if len(hit) else miss).append((L, hit["rank"].min() if len(hit) else g["rank"].max()))
    if rows:
        a = np.array(rows, float)
        ax.plot(
            a[:, 0],
            a[:, 1],
            "o",
            color=OKABE_ITO[6],
            ms=4,
            mec="white",
            mew=0.4,
            label="smallest collected rank with\nloss ≤ ln 2 (grid: upper bound)",
            zorder=4,
        )
    if miss:  # a lower bound: an arrow up from the largest rank collected
        a = np.array(miss, float)
        ax.errorbar(
            a[:, 0],
            a[:, 1],
            yerr=[np.zeros(len(a)), a[:, 1] * 0.5],
            lolims=True,
            fmt="_",
            color=OKABE_ITO[6],
            ms=7,
            capsize=3,
            lw=1,
            label="not reached: needs more than\nthe largest rank collected",
            zorder=4,
        )


@styled
def plot_capacity(
    fit,
    data=None,
    *,
    lengths=None,
    target: float = LN2,
    target_kind: str = "loss_after",
    loss_before=None,
    ax=None,
    extend: float = 4.0,
    title: str | None = None,
):
    """Plot the rank the law needs to reach a target against target length, with CI band.

    By default the target is recall (``loss_after = ln 2``): the line is
    :func:`lawfit.predict_capacity` on a grid of lengths up to ``extend`` × the
    longest fitted length (dashed where the answer is extrapolated: a rank or a length
    outside the fitted ranges), the band its interval. Markers: the smallest *measured*
    rank whose mean ``loss_after`` over seeds is ≤ ln 2 at each length (an arrow up from
    the largest collected rank where no collected rank reaches it: a lower bound).

    Parameters
    ----------
    fit : FitResult
        Fitted law in (rank, length); bootstrap draws give the band.
    data : xarray.Dataset, optional
        Dataset for ``loss_before`` and the measured markers.
    lengths : array-like, optional
        Grid of lengths (default: geometric from the shortest fitted length to
        ``extend`` × the longest).
    target, target_kind, loss_before
        Passed to :func:`lawfit.predict_capacity`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    extend : float
        How far beyond the longest fitted length the default grid goes.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from lawfit.capacity import predict_capacity

    fig, ax = fig_ax(ax, 3.3, 2.5)
    lo_l, hi_l = fit.input_ranges["length"]
    if lengths is None:
        lengths = np.geomspace(lo_l, hi_l * extend, 50)
    lengths = np.asarray(lengths, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = predict_capacity(
            fit,
            length=lengths,
            target=target,
            target_kind=target_kind,
            loss_before=loss_before,
            data=data if loss_before is None else None,
        )
    _draw_capacity_law(ax, lengths, pc, hi_l)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if data is not None and target_kind == "loss_after" and "loss_after" in data:
        _draw_measured_capacity(ax, data, target)
    plain_log(ax, "x")
    plain_log(ax, "y")
    ax.set_xlabel("target length ℓ (tokens)")
    ylab = {"loss_after": "rank needed for recall\n(loss$_{after}$ ≤ ln 2)"}
    ax.set_ylabel(ylab.get(target_kind, f"rank needed for ΔL = {target:g}"))
    ax.legend(loc="upper left", fontsize=6.3)
    if pc.table.get("n_unreachable") is not None and int(pc.table["n_unreachable"].max()) > 0:
        ax.text(
            0.98,
            0.03,
            "some bootstrap draws never reach the target:\nband open above",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=6,
            color="0.4",
        )
    if title:
        ax.set_title(title, fontsize=7)
    return fig


@styled
def plot_bits_per_parameter(bits, *, ax=None, title: str | None = None):
    """Plot bits stored per adapter parameter against rank, with the 2 and 3.6 anchors.

    One point per rank and group (e.g. target sequence): the largest over lengths
    (:func:`lawfit.bits_per_parameter`), in the bits it counted (information stored by
    default: the anchors count information). Up-triangles mark values from a memorized
    target or from the longest target collected (a lower bound: a longer target could
    store more). The line joins each rank's mean over its groups. Grey crosses: the same
    cells' ΔL bits per parameter, which are not information (on random tokens they include
    what the adapter gains by learning that the tokens are uniform). Horizontal lines:
    2 bits/param (Allen-Zhu & Li) and 3.6 bits/param (Morris et al. 2025).

    Parameters
    ----------
    bits : BitsResult
        From ``lawfit.bits_per_parameter(ds)``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from lawfit.errors import LawfitError

    br = bits.by_rank
    if br is None or not len(br) or "bits_per_param" not in br:
        raise LawfitError(
            "plot_bits_per_parameter needs bits.by_rank with bits_per_param "
            "(n_params in the dataset); " + "; ".join(bits.notes)
        )
    fig, ax = fig_ax(ax, 3.3, 2.4)
    r = br["rank"].to_numpy(float)
    v = br["bits_per_param"].to_numpy(float)
    sat = br["saturated"].to_numpy(bool) if "saturated" in br else np.zeros(len(br), bool)
    longest = br["at_longest"].to_numpy(bool) if "at_longest" in br else np.zeros(len(br), bool)
    bound = sat | longest
    c = OKABE_ITO[5]
    ranks = np.unique(r)  # one line through the groups' mean per rank
    ax.plot(ranks, [v[r == k].mean() for k in ranks], "-", color=c, lw=1.0)
    if (~bound).any():
        ax.plot(r[~bound], v[~bound], "o", color=c, ms=4, label="largest over lengths")
    if bound.any():
        why = [
            w for w, m in (("target memorized", sat), ("at the longest target", longest)) if m.any()
        ]
        ax.plot(
            r[bound],
            v[bound],
            "^",
            color=c,
            mfc="white",
            ms=4.5,
            label=f"lower bound ({' or '.join(why)})",
        )
    kinds = set(bits.cells["bits_kind"]) if "bits_kind" in bits.cells else {"dl"}
    if "bits_dl" in br and kinds & {"stored", "recalled"}:
        dl = br["bits_dl"].to_numpy(float) / br["n_params"].to_numpy(float)
        ax.plot(r, dl, "x", color="0.55", ms=3.5, label="ΔL bits (not information)")
        v = np.concatenate([v, dl])
    styles = ("--", ":")
    for (name, val), ls in zip(bits.anchors.items(), styles, strict=False):
        short = name.split("(")[0].strip()
        ax.axhline(val, color="0.35", ls=ls, lw=0.8)
        ax.annotate(
            f"{val:g} bits/param ({short})",
            xy=(1.0, val),
            xycoords=("axes fraction", "data"),
            xytext=(-2, 2),
            textcoords="offset points",
            fontsize=6,
            color="0.3",
            va="bottom",
            ha="right",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_ticks(ax, "x", r)
    top = max(np.nanmax(v), max(bits.anchors.values())) * 2
    ax.set_ylim(min(np.nanmin(v[v > 0]) / 2, 0.5) if (v > 0).any() else 1e-3, top)
    plain_log(ax, "y")
    ax.set_xlabel("LoRA rank $r$")
    what = {"stored": "information bits stored", "recalled": "bits recalled exactly"}
    ax.set_ylabel(
        f"{what.get(next(iter(kinds)), 'ΔL bits') if len(kinds) == 1 else 'bits'}"
        " per\nadapter parameter"
    )
    ax.legend(loc="lower right", fontsize=6.3)
    if title:
        ax.set_title(title, fontsize=7)
    return fig
