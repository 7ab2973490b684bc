"""Figures comparing SFT with MemFT-OT and MemFT-SW."""

from __future__ import annotations

import numpy as np

from lawfit.errors import LawfitError
from lawfit.plotting._common import LN2, cells_frame, log_ticks, plain_log, require
from lawfit.plotting.style import (
    DL_LABEL,
    METHOD_COLORS,
    METHOD_LABELS,
    length_colors,
    new_figure,
    panel_labels,
    styled,
)

__all__ = ["plot_memft_paired", "plot_methods", "plot_trajectories"]

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def _method_frame(ds, variables):
    if "objective" not in ds.dims:
        raise LawfitError(
            "MemFT figures need an 'objective' dimension (sft, memft_ot, memft_sw); "
            f"the dataset has dims {dict(ds.sizes)}."
        )
    df = cells_frame(ds, variables)
    if "objective" not in df or df["objective"].nunique() < 2:
        got = sorted(df["objective"].unique()) if "objective" in df else []
        raise LawfitError(
            "MemFT figures need ok cells of at least two methods; got ok cells for "
            f"{got}. Collect the MemFT block of the sweep first."
        )
    return df


def _on_memft_targets(df, memft_cells):
    """Keep the rows on target sequences that MemFT cells were trained on.

    Sequences differ by more than MemFT's effect, so SFT drawn over every sequence next
    to MemFT on some of them would mix the two; with no ``data_seed`` column, ``df``.
    """
    if "data_seed" not in df or "data_seed" not in memft_cells:
        return df
    return df[df["data_seed"].isin(set(memft_cells["data_seed"]))]


def _order_methods(ms):
    pref = ["sft", "memft_ot", "memft_sw"]
    return [m for m in pref if m in ms] + sorted(m for m in ms if m not in pref)


@styled
def plot_methods(ds, *, axes=None, lengths=None, title: str | None = None):
    """Plot exact-match recall and ΔL against rank for SFT and MemFT, per length.

    Only lengths at which a MemFT method has ok cells are drawn (SFT on the same
    lengths and target sequences, over all its ranks, for reference). Colour: method;
    line style and marker: length. Points are means over seeds.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting with a ``method`` dim holding ``sft`` and at least one MemFT method.
    axes : sequence of two Axes, optional
        Axes for recall and ΔL.
    lengths : sequence of int, optional
        Lengths to draw (default: those with MemFT cells).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(ds, ["loss_reduction", "exact_match"], "plot_methods")
    df = _method_frame(ds, ["loss_reduction", "exact_match"])
    if lengths is None:
        lengths = sorted(df.loc[df["objective"] != "sft", "length"].unique())
    df = _on_memft_targets(df[df["length"].isin(lengths)], df[df["objective"] != "sft"])
    if axes is None:
        fig, axes = new_figure("double", 2.35, ncols=2)
    else:
        fig = axes[0].figure
    a1, a2 = axes
    methods = _order_methods(df["objective"].unique())
    agg = df.groupby(["objective", "length", "rank"])[["loss_reduction", "exact_match"]].mean()
    agg = agg.reset_index()
    for m in methods:
        for i, L in enumerate(lengths):
            g = agg[(agg["objective"] == m) & (agg["length"] == L)].sort_values("rank")
            if not len(g):
                continue
            kw = dict(
                color=METHOD_COLORS.get(m, "0.5"),
                ls=_LINESTYLES[i % 4],
                marker=_MARKERS[i % 6],
                ms=3.2,
                lw=1.0,
                mfc="white" if m == "sft" else None,
            )
            a1.plot(g["rank"], g["exact_match"], **kw)
            pos = g["loss_reduction"] > 0
            a2.plot(g["rank"][pos], g["loss_reduction"][pos], **kw)
    for a in axes:
        a.set_xscale("log")
        log_ticks(a, "x", df["rank"].unique())
        a.set_xlabel("LoRA rank $r$")
    a1.set_ylim(-0.04, 1.04)
    a1.set_ylabel("exact-match recall")
    a2.set_yscale("log")
    plain_log(a2, "y")
    a2.set_ylabel(DL_LABEL)
    from matplotlib.lines import Line2D

    h = [Line2D([], [], color=METHOD_COLORS.get(m, "0.5"), lw=1.4) for m in methods]
    lab = [METHOD_LABELS.get(m, m) for m in methods]
    h += [
        Line2D([], [], color="0.35", ls=_LINESTYLES[i % 4], marker=_MARKERS[i % 6], ms=3)
        for i in range(len(lengths))
    ]
    lab += [f"ℓ = {int(L):,}" for L in lengths]
    a2.legend(h, lab, loc="center left", bbox_to_anchor=(1.0, 0.5))
    panel_labels(axes, x=-0.12)
    if title:
        fig.suptitle(title)
    return fig


@styled
def plot_trajectories(ds, *, axes=None, ranks=None, lengths=None, title: str | None = None):
    """Training trajectories per method: mean target loss and share of tokens above p = 0.5.

    Rows: ``loss_curve`` (log axis, with ln 2) and ``frac_above_curve``; columns: target
    lengths with MemFT cells. Colour: method; line style: rank (at most 3 ranks, the
    smallest, a middle and the largest with MemFT cells). Means over seeds, on the target
    sequences with MemFT cells. With a single
    method (SFT only, e.g. before the MemFT block is collected) every rank is drawn,
    coloured by rank, at up to 4 lengths.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting with ``loss_curve`` and ``frac_above_curve`` over ``step`` and a
        ``method`` dim.
    axes : 2-D array of Axes, optional
        Axes grid (2 rows × number of lengths).
    ranks, lengths : sequence of int, optional
        Ranks and lengths to draw.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(ds, ["loss_curve", "frac_above_curve"], "plot_trajectories")
    if "step" not in ds.dims:
        raise LawfitError("plot_trajectories needs a 'step' dimension on the curves.")
    base = cells_frame(ds, ["loss_reduction"])
    if not len(base):
        raise LawfitError("plot_trajectories: no ok cell in the dataset.")
    if "objective" not in base:
        base["objective"] = "sft"
    methods = _order_methods(base["objective"].unique())
    single = len(methods) == 1
    memft = base if single else base[base["objective"] != "sft"]
    if lengths is None:
        lengths = sorted(memft["length"].unique())[: 4 if single else 3]
    if ranks is None:
        rr = sorted(memft["rank"].unique())
        ranks = rr if single or len(rr) <= 3 else [rr[0], rr[len(rr) // 2], rr[-1]]
    rank_colors = length_colors(ranks) if single else {}
    cur = ds[["loss_curve", "frac_above_curve"]]
    if "status" in ds:
        cur = cur.where(ds["status"] == "ok")
    df = cur.to_dataframe().reset_index().dropna(subset=["loss_curve"])
    if "objective" not in df:
        df["objective"] = methods[0]
    df = _on_memft_targets(df, memft)
    if axes is None:
        width = "single" if len(lengths) == 1 else "double"
        fig, axes = new_figure(
            width, 3.6, nrows=2, ncols=len(lengths), sharex="col", sharey="row", squeeze=False
        )
    else:
        fig = np.asarray(axes).ravel()[0].figure
    axes = np.asarray(axes).reshape(2, -1)
    for j, L in enumerate(lengths):
        for m in methods:
            for k, r in enumerate(ranks):
                g = df[(df["objective"] == m) & (df["length"] == L) & (df["rank"] == r)]
                if not len(g):
                    continue
                g = g.groupby("step")[["loss_curve", "frac_above_curve"]].mean().reset_index()
                kw = (
                    dict(color=rank_colors[float(r)], ls="-", lw=1.0)
                    if single
                    else dict(color=METHOD_COLORS.get(m, "0.5"), ls=_LINESTYLES[k % 4], lw=1.0)
                )
                axes[0, j].plot(g["step"], g["loss_curve"], **kw)
                axes[1, j].plot(g["step"], g["frac_above_curve"], **kw)
        axes[0, j].set_title(f"ℓ = {int(L):,} tokens", fontsize=7.5)
        axes[0, j].axhline(LN2, color="0.5", ls=":", lw=0.7)
        axes[0, j].set_yscale("log")
        plain_log(axes[0, j], "y")
        axes[1, j].set_ylim(-0.03, 1.03)
        axes[1, j].set_xlabel("optimizer step")
    axes[0, 0].set_ylabel("mean target loss\n(nats/token)")
    axes[1, 0].set_ylabel("share of tokens\nwith p > 0.5")
    from matplotlib.lines import Line2D

    if single:
        h = [Line2D([], [], color=rank_colors[float(r)], lw=1.4) for r in ranks]
        lab = [f"r = {int(r)}" for r in ranks]
        ltitle = METHOD_LABELS.get(methods[0], methods[0])
    else:
        h = [Line2D([], [], color=METHOD_COLORS.get(m, "0.5"), lw=1.4) for m in methods]
        lab = [METHOD_LABELS.get(m, m) for m in methods]
        h += [Line2D([], [], color="0.35", ls=_LINESTYLES[k % 4]) for k in range(len(ranks))]
        lab += [f"r = {int(r)}" for r in ranks]
        ltitle = None
    h.append(Line2D([], [], color="0.5", ls=":", lw=0.7))
    lab.append("ln 2 (p = 0.5)")
    axes[0, -1].legend(h, lab, loc="upper left", bbox_to_anchor=(1.0, 1.0), title=ltitle)
    if title:
        fig.suptitle(title)
    return fig


@styled
def plot_memft_paired(ds, *, rank=None, length=None, axes=None, title: str | None = None):
    """Plot each MemFT method against SFT on the same targets, one point per target.

    Three panels at one (rank, length): MemFT's ΔL over SFT's (log axis, 1 = no change),
    MemFT's token accuracy minus SFT's (points), and the tokens greedy decoding recalls
    before its first error, SFT's and MemFT's joined per target. Bars: the mean over targets
    (geometric for the ratio) and its 95 % t interval (:func:`lawfit.memft.paired.paired_ratios`).

    Parameters
    ----------
    ds : xarray.Dataset
        One setting with an ``objective`` dim holding ``sft`` and MemFT methods.
    rank, length : float, optional
        The point; default the one with the most target sequences.
    axes : sequence of three Axes, optional
        Axes for the three panels.
    title : str, optional
        Figure title (default: the point and its number of targets).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    LawfitError
        No MemFT method, or no unmemorized pair at the point.
    """
    from lawfit.memft.paired import paired_cells, summarize_pairs

    memfts = [
        m
        for m in _order_methods(_method_frame(ds, ["loss_reduction"])["objective"].unique())
        if m != "sft"
    ]
    every_pair = paired_cells(ds, memfts)
    summary = summarize_pairs(every_pair)
    if not len(summary):
        raise LawfitError("plot_memft_paired found no unmemorized MemFT/SFT pair of cells.")
    if rank is None or length is None:
        order = summary.sort_values(["sequences", "length"], ascending=[False, True], kind="stable")
        best = order.iloc[0]
        rank, length = best["rank"], best["length"]
    pairs = _at_point(every_pair, rank, length)
    summary = _at_point(summary, rank, length)
    if not len(pairs):
        raise LawfitError(f"plot_memft_paired: no unmemorized pair at rank {rank}, ℓ = {length}.")
    if axes is None:
        fig, axes = new_figure("double", 2.3, ncols=3)
    fig = axes[0].figure
    methods = [m for m in memfts if m in set(pairs["objective"])]
    for i, m in enumerate(methods):
        mine, row = pairs[pairs["objective"] == m], summary[summary["objective"] == m].iloc[0]
        ratio = [row["ratio"], row["low"], row["high"]]
        _paired_panel(axes[0], i, mine["memft"] / mine["sft"], ratio, m)
        if "acc_memft" in mine:
            gain = [100 * row[f"accuracy_gain{end}"] for end in ("", "_low", "_high")]
            _paired_panel(axes[1], i, 100 * (mine["acc_memft"] - mine["acc_sft"]), gain, m)
        if "rec_memft" in mine:
            _recalled_panel(axes[2], i, mine, m)
    _finish_paired(axes, methods)
    n = int(summary["sequences"].max())
    fig.suptitle(
        title or f"MemFT against SFT on the same {n} targets (rank {rank:g}, ℓ = {length:g})"
    )
    return fig


def _paired_panel(ax, i, values, mean, method) -> None:
    """Draw one method's per-target values at x = i, and ``mean`` = (centre, low, high)."""
    color = METHOD_COLORS.get(method, "0.5")
    x = i + np.linspace(-0.08, 0.08, len(values)) if len(values) > 1 else np.array([i])
    ax.plot(x, values, "o", ms=3.5, color=color, mfc="white", mew=1.0, zorder=3)
    centre, low, high = mean
    ax.plot([i - 0.2, i + 0.2], [centre, centre], color=color, lw=1.6)
    if np.isfinite(low) and np.isfinite(high):
        ax.plot([i, i], [low, high], color=color, lw=1.0)


def _at_point(frame, rank, length):
    """Return the rows of ``frame`` at one (rank, length)."""
    return frame[(frame["rank"] == rank) & (frame["length"] == length)]


def _recalled_panel(ax, i, pairs, method) -> None:
    """Draw SFT's and MemFT's recalled tokens per target, joined, beside x = i."""
    color = METHOD_COLORS.get(method, "0.5")
    for sft, memft in zip(pairs["rec_sft"], pairs["rec_memft"], strict=True):
        ax.plot([i - 0.15, i + 0.15], [sft, memft], color="0.6", lw=0.8, zorder=1)
    ax.plot(
        np.full(len(pairs), i - 0.15),
        pairs["rec_sft"],
        "o",
        ms=3.5,
        color=METHOD_COLORS.get("sft", "k"),
        mfc="white",
        zorder=3,
    )
    ax.plot(np.full(len(pairs), i + 0.15), pairs["rec_memft"], "o", ms=3.5, color=color, zorder=3)


def _finish_paired(axes, methods) -> None:
    """Label the three panels, their reference lines and the methods on x."""
    labels = [METHOD_LABELS.get(m, m) for m in methods]
    a1, a2, a3 = axes
    a1.axhline(1.0, color="0.5", lw=0.7, ls="--", zorder=0)
    a1.set_yscale("log")
    plain_log(a1, "y")
    a1.set_ylabel(r"$\Delta L$ MemFT / $\Delta L$ SFT")
    a2.axhline(0.0, color="0.5", lw=0.7, ls="--", zorder=0)
    a2.set_ylabel("token accuracy − SFT's (points)")
    a3.set_ylim(-0.05 * max(1.0, a3.get_ylim()[1]), None)  # zero counts stay visible
    a3.set_ylabel("tokens recalled greedily\n(SFT left, MemFT right)")
    for a in axes:
        a.set_xticks(range(len(methods)), labels)
        a.set_xlim(-0.6, len(methods) - 0.4)
    panel_labels(axes, x=-0.22)
