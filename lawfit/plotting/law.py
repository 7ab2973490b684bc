"""Figures of the law itself.

ΔL vs rank (paper Fig. 2a), predicted vs measured (Fig. 2b), loss/recall decoupling
(Fig. 2c).
"""

from __future__ import annotations

import numpy as np

from lawfit.plotting._common import LN2, cells_frame, fig_ax, log_ticks, plain_log, require
from lawfit.plotting.style import (
    DL_LABEL,
    OKABE_ITO,
    length_colors,
    new_figure,
    panel_labels,
    styled,
)

__all__ = [
    "plot_law_curves",
    "plot_predicted_vs_measured",
    "plot_loss_recall",
    "plot_sequence_offsets",
]


def _capacity_name(fit) -> str:
    return fit.inputs[0] if fit.inputs and fit.inputs[0] != "length" else "rank"


def _param_text(fit, names=("alpha", "beta")) -> str:
    """Exponents with the interval a table of the fit would quote (``preferred_interval``)."""
    from lawfit.robust import preferred_interval

    sym = {"alpha": "α", "beta": "β", "C": "C", "b": "b"}
    parts = []
    ci, method = None, None
    if fit.draws is not None and len(fit.draws):
        try:
            ci, method, _why = preferred_interval(fit)
        except Exception:  # noqa: BLE001 - fall back to the point estimate
            ci = None
    for n in names:
        if n not in fit.params:
            continue
        s = f"{sym.get(n, n)} = {fit.params[n]:.2f}"
        if ci is not None and n in ci.index:
            s += f" [{ci.loc[n, 'low']:.2f}, {ci.loc[n, 'high']:.2f}]"
        parts.append(s)
    parts.append(f"R² = {fit.r2:.3f}")
    text = ", ".join(parts)
    return f"{text}\n({method})" if ci is not None and method else text


#: Legend entry of the dotted ceiling lines drawn where the law is cut.
CEILING_LABEL = "ceiling: loss before\n(law stops there;\nΔL ≤ loss_before)"


def _loss_before_ceilings(fit, data=None) -> dict[float, float]:
    """Mean ``loss_before`` of the cells per length: the most ΔL can reach there.

    From ``data`` when it has ``loss_before``, else from the fit's own cells
    (fitted: ``loss_after + loss_reduction``; excluded: their ``loss_before``).
    Empty when neither is available (the law is then drawn uncut).
    """
    import pandas as pd

    if data is not None and "loss_before" in data:
        cells = cells_frame(data, ["loss_before"])
    else:
        parts = []
        res = fit.residuals
        if "loss_after" in res:
            parts.append(
                pd.DataFrame(
                    {
                        "length": res["length"],
                        "loss_before": res["loss_after"] + res["loss_reduction"],
                    }
                )
            )
        ex = fit.exclusions
        if ex is not None and {"length", "loss_before"} <= set(ex.columns):
            parts.append(ex[["length", "loss_before"]])
        cells = pd.concat(parts) if parts else pd.DataFrame(columns=["length", "loss_before"])
    cells = cells[np.isfinite(cells["loss_before"].to_numpy(float))]
    return {float(k): float(v) for k, v in cells.groupby("length")["loss_before"].mean().items()}


@styled
def plot_law_curves(
    fit,
    data=None,
    *,
    ax=None,
    level: float = 0.95,
    n_grid: int = 80,
    show_memorized: bool = True,
    title: str | None = None,
):
    """Plot ΔL against rank on log-log axes, one colour per target length (paper Fig. 2a).

    Points are the measured cells (filled: fitted; hollow: memorized cells with
    ``loss_after ≤ ln 2``, excluded from the fit), lines the fitted law, bands its
    confidence interval (bootstrap draws when the fit has them, else the delta method;
    cluster-robust when the bootstrap clusters over fewer than 10 units, flag
    ``few_clusters``).
    ΔL cannot exceed what there is to learn: each line stops where the law passes the
    mean ``loss_before`` of its length's cells, which is then drawn as a dotted line
    (named in the legend).

    Parameters
    ----------
    fit : FitResult
        A fit of a law in (rank or n_params, length), e.g. ``lawfit.fit(ds)``.
    data : xarray.Dataset, optional
        Dataset the law was fitted on; only used to show memorized cells (the fit's
        ``exclusions`` are used when it is omitted).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new single-column figure otherwise).
    level : float
        Level of the confidence band.
    n_grid : int
        Points per curve.
    show_memorized : bool
        Draw the excluded memorized cells as hollow markers.
    title : str, optional
        Axes title (default: the fitted exponents with CIs and R²).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = fig_ax(ax, 3.3, 2.6)
    cap = _capacity_name(fit)
    res = fit.residuals
    memo = _memorized_cells(fit) if show_memorized else None
    lengths = sorted(set(res["length"]) | (set(memo["length"]) if memo is not None else set()))
    colors = length_colors(lengths)
    grid = np.geomspace(*fit.input_ranges[cap], n_grid)
    ceilings = _loss_before_ceilings(fit, data)
    clipped, curve_max = False, 0.0
    fitted = set(res["length"])
    for L in lengths:
        c = colors[float(L)]
        _draw_cells(ax, res, memo, cap, L, c)
        if L in fitted:
            ceiling = ceilings.get(float(L), np.inf)
            hit, top = _draw_law_at(ax, fit, cap, grid, L, c, ceiling, level)
            clipped, curve_max = clipped or hit, max(curve_max, top)
        else:  # memorized cells only: no law line, but the colour still gets its length
            ax.plot([], [], "o", mfc="none", mec=c, ms=3.2, mew=0.7, label=f"{int(L)}")
    _law_axes(ax, res, memo, cap, curve_max)
    _law_legend(ax, memo, clipped)
    ax.set_title(title if title is not None else _param_text(fit), fontsize=7)
    return fig


def _memorized_cells(fit):
    """Return the cells excluded as memorized (None when the fit has no exclusions)."""
    ex = fit.exclusions
    if ex is not None and len(ex) and "reason" in ex:
        return ex[ex["reason"].astype(str).str.startswith("memorized")]
    return None


def _draw_cells(ax, res, memo, cap: str, length, color) -> None:
    """Draw one length's fitted cells (filled) and memorized ones (hollow)."""
    pts = res[res["length"] == length]
    ax.plot(
        pts[cap],
        pts["loss_reduction"],
        "o",
        color=color,
        ms=3.2,
        alpha=0.85,
        mec="white",
        mew=0.3,
        zorder=3,
    )
    if memo is not None and len(memo) and cap in memo:
        m = memo[memo["length"] == length]
        ax.plot(m[cap], m["loss_reduction"], "o", mfc="none", mec=color, ms=3.2, mew=0.7, zorder=3)


def _draw_law_at(ax, fit, cap, grid, length, color, ceiling, level) -> tuple[bool, float]:
    """Draw the law and its band at one length, cut at loss_before; return (cut, top)."""
    pr = _law_band(fit, {cap: grid, "length": float(length)}, level)
    mean = pr["mean"].to_numpy()
    ok = (mean > 0) & (mean <= ceiling)  # ΔL cannot exceed loss_before: stop there
    clipped = bool(np.isfinite(ceiling) and (mean > ceiling).any())
    if clipped:
        ax.axhline(ceiling, color=color, ls=":", lw=0.7, zorder=1)
    ax.plot(grid[ok], mean[ok], "-", color=color, lw=1.1, zorder=2, label=f"{int(length)}")
    lo = np.clip(pr["low"].to_numpy(), 1e-12, None)
    hi = np.minimum(pr["high"].to_numpy(), ceiling)
    ax.fill_between(grid[ok], lo[ok], hi[ok], color=color, alpha=0.2, lw=0, zorder=1)
    return clipped, float(mean[ok].max()) if ok.any() else 0.0


def _law_band(fit, inputs: dict, level: float):
    """Return the law and the interval of its mean at ``inputs``, as the fit's tables would.

    The fit's own (bootstrap or delta) confidence interval, unless its bootstrap clusters
    over too few units (flag ``few_clusters``): then the cluster-robust one
    (:func:`lawfit.robust.law_mean_interval`), as :func:`lawfit.robust.preferred_interval`
    does for the exponents in the title.
    """
    if fit.few_clusters:
        from lawfit.robust import law_mean_interval

        return law_mean_interval(fit, cluster=fit.boot.unit, level=level, **inputs)
    return fit.predict(**inputs, interval="confidence", confidence_level=level)


def _law_axes(ax, res, memo, cap: str, curve_max: float) -> None:
    """Set log axes, the y range from the measured cells (a law diving to 0 cannot stretch it)."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    yv = res["loss_reduction"].to_numpy(float)
    if memo is not None and len(memo):
        yv = np.concatenate([yv, memo["loss_reduction"].to_numpy(float)])
    yv = yv[np.isfinite(yv) & (yv > 0)]
    if yv.size:
        ax.set_ylim(yv.min() / 2.5, max(yv.max() * 2.0, curve_max * 1.3))
    if cap == "rank":
        held = set(memo[cap]) if memo is not None and len(memo) else set()
        log_ticks(ax, "x", sorted(set(res[cap]) | held))
        ax.set_xlabel("LoRA rank $r$")
    else:
        ax.set_xlabel("trainable parameters $N$")
    ax.set_ylabel(DL_LABEL)
    plain_log(ax, "y")


def _law_legend(ax, memo, clipped: bool) -> None:
    """Draw the length legend, with the memorized marker and loss_before ceiling if shown."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if memo is not None and len(memo):
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec="0.3", ms=3.2))
        labels.append("memorized\n(not fitted)")
    if clipped:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=0.7))
        labels.append(CEILING_LABEL)
    ax.legend(
        handles, labels, title="length ℓ\n(tokens)", loc="center left", bbox_to_anchor=(1.0, 0.5)
    )


@styled
def plot_predicted_vs_measured(fit, *, ax=None, log: bool | None = None, title: str | None = None):
    """Plot measured ΔL against the law's prediction, with the identity line and R² (Fig. 2b).

    Parameters
    ----------
    fit : FitResult
        Fitted law.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    log : bool, optional
        Log-log axes (default: when every measured and fitted value is positive).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = fig_ax(ax, 3.3, 2.7)
    res = fit.residuals
    obs, fitted = res["loss_reduction"].to_numpy(), res["fitted"].to_numpy()
    if log is None:
        log = bool((obs > 0).all() and (fitted > 0).all())
    colors = length_colors(res["length"])
    for L, g in res.groupby("length"):
        ax.plot(
            g["fitted"],
            g["loss_reduction"],
            "o",
            color=colors[float(L)],
            ms=3.2,
            alpha=0.85,
            mec="white",
            mew=0.3,
            label=f"{int(L)}",
        )
    both = np.concatenate([obs, fitted])
    lo, hi = (both[both > 0].min(), both.max()) if log else (both.min(), both.max())
    pad = (hi / lo) ** 0.05 if log else 0.05 * (hi - lo)
    lim = (lo / pad, hi * pad) if log else (lo - pad, hi + pad)
    ax.plot(lim, lim, "--", color="0.4", lw=0.8, zorder=0, label="identity")
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log(ax, "x")
        plain_log(ax, "y")
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(r"predicted $\Delta L$ (nats/token)")
    ax.set_ylabel(r"measured $\Delta L$ (nats/token)")
    ax.text(
        0.04,
        0.96,
        f"$R^2$ = {fit.r2:.3f}\nRMSE = {fit.rmse:.3g} nats/token\nn = {fit.n_obs} cells",
        transform=ax.transAxes,
        va="top",
        ha="left",
        fontsize=7,
    )
    ax.legend(title="length ℓ", loc="lower right", handletextpad=0.2, markerscale=1.0)
    if title:
        ax.set_title(title)
    return fig


@styled
def plot_loss_recall(ds, *, axes=None, show_token_accuracy: bool = True, title: str | None = None):
    """Plot loss after training and exact-match recall against rank, per length (Fig. 2c).

    The top panel shows ``loss_after`` with the recall threshold ln 2 (p = 0.5 per
    token); the bottom one ``exact_match`` (solid) and ``token_accuracy`` (dashed),
    with lengths dodged sideways by a few percent so that coinciding values stay visible.
    Mean loss keeps falling smoothly while recall switches on abruptly: the loss/recall
    decoupling. Points are means over seeds; error bars their range.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting of a contract dataset (one method), with ``loss_after`` and
        ``exact_match`` over ``rank`` and ``length``.
    axes : sequence of two Axes, optional
        Axes to draw on (top, bottom).
    show_token_accuracy : bool
        Also draw ``token_accuracy`` (dashed).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(ds, ["loss_after", "exact_match"], "plot_loss_recall")
    df = cells_frame(ds, ["loss_after", "exact_match", "token_accuracy"])
    if axes is None:
        fig, axes = new_figure(3.3, 3.7, nrows=2, sharex=True)
    else:
        fig = axes[0].figure
    top, bot = axes
    colors = length_colors(df["length"])
    vars_ = [v for v in ("loss_after", "exact_match", "token_accuracy") if v in df]
    agg = df.groupby(["length", "rank"])[vars_].agg(["mean", "min", "max"]).reset_index()
    n_len = agg["length"].nunique()
    for i, (L, g) in enumerate(agg.groupby("length")):
        c = colors[float(L)]
        r = g["rank"].to_numpy(float)
        # recall values pile up at 0 and 1: dodge lengths sideways (log axis) so that
        # no series hides another one
        rd = r * np.exp(0.045 * (i - (n_len - 1) / 2))
        for axx, var, x, lab in (
            (top, "loss_after", r, f"{int(L)}"),
            (bot, "exact_match", rd, None),
        ):
            m, lo, hi = (g[(var, k)].to_numpy() for k in ("mean", "min", "max"))
            axx.errorbar(
                x,
                m,
                yerr=np.clip([m - lo, hi - m], 0, None),
                fmt="o-",
                color=c,
                ms=3,
                lw=1.0,
                elinewidth=0.6,
                capsize=0,
                label=lab,
            )
        if show_token_accuracy and ("token_accuracy", "mean") in g:
            bot.plot(rd, g[("token_accuracy", "mean")], "--", color=c, lw=0.8, alpha=0.9)
    top.axhline(LN2, color="0.3", ls=":", lw=0.8, label="ln 2 (p = 0.5)")
    top.set_yscale("log")
    lo_mean = agg[("loss_after", "mean")].to_numpy(float)
    lo_mean = lo_mean[lo_mean > 0]
    if lo_mean.size:
        top.set_ylim(bottom=max(lo_mean.min() / 2, 1e-3))
    plain_log(top, "y")
    top.set_ylabel("loss after training\n(nats/token)")
    bot.set_ylabel("exact-match recall")
    bot.set_ylim(-0.04, 1.04)
    bot.set_xscale("log")
    log_ticks(bot, "x", df["rank"].unique())
    bot.set_xlabel("LoRA rank $r$")
    h, lab = top.get_legend_handles_labels()
    k = lab.index("ln 2 (p = 0.5)")
    h.append(h.pop(k))
    lab.append(lab.pop(k))
    top.legend(h, lab, title="length ℓ (tokens)", loc="center left", bbox_to_anchor=(1.0, 0.5))
    if show_token_accuracy:
        from matplotlib.lines import Line2D

        bot.legend(
            [
                Line2D([], [], color="0.3", ls="-", marker="o", ms=3),
                Line2D([], [], color="0.3", ls="--"),
            ],
            ["exact match", "token accuracy\n(teacher forced)"],
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
        )
    panel_labels([top, bot], x=-0.2)
    if title:
        fig.suptitle(title)
    return fig


@styled
def plot_sequence_offsets(fit, *, cluster: str = "data_seed", ax=None, title: str | None = None):
    """Plot each cell's deviation from the law, by target sequence (are some easier?).

    The measured ΔL over the law's, in percent, against the law's ΔL, a colour per sequence,
    with each sequence's offset as a line (its cells' mean log residual, as a percentage:
    :func:`lawfit.robust.sequence_offsets`, the report's table); the text gives the variance
    components of :func:`lawfit.robust.variance_components`: how much the law's level differs
    between sequences (σ_between) and how far cells scatter around their sequence's law
    (σ_within), the two parts a new cell's interval adds to the law's.

    Parameters
    ----------
    fit : FitResult
        A least-squares fit of a positive law on cells of several sequences.
    cluster : str
        Column of ``fit.points`` naming the sequences (default ``"data_seed"``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    LawfitError
        No such column, fewer than 2 sequences, or too few cells (see
        :func:`lawfit.robust.variance_components`).
    """
    from lawfit.robust import sequence_offsets, variance_components

    vc = variance_components(fit, cluster=cluster)
    offsets = sequence_offsets(fit, cluster=cluster)["percent"]
    fig, ax = fig_ax(ax, 3.3, 2.5)
    pts = fit.points
    law = pts["fitted"].to_numpy(float)
    dev = 100 * (pts[fit.response].to_numpy(float) / law - 1)
    groups = pts[cluster].to_numpy()
    palette = tuple(OKABE_ITO[i] for i in (1, 2, 3, 5, 6, 7))  # black: the zero line; no yellow
    for i, g in enumerate(sorted(set(groups.tolist()))):
        mine = groups == g
        color = palette[i % len(palette)]
        label = f"{g} ({int(mine.sum())})"
        ax.plot(law[mine], dev[mine], "o", ms=3.5, color=color, mec="white", mew=0.3, label=label)
        ax.axhline(offsets.loc[g], color=color, lw=0.8, ls="--", zorder=0)
    ax.axhline(0, color="black", lw=0.6, zorder=0)
    ax.set_xscale("log")
    plain_log(ax, "x")
    ax.set_xlabel(r"the law's $\Delta L$ (nats/token)")
    ax.set_ylabel("measured / law − 1 (%)")
    ax.text(
        0.03,
        0.97,
        f"σ between {cluster}s {100 * vc['sd_between']:.2g} %\n"
        f"σ within {100 * vc['sd_within']:.2g} %  "
        f"({vc['df_between']:.0f} and {vc['df_within']:.0f} dof)",
        transform=ax.transAxes,
        va="top",
        ha="left",
        fontsize=7,
    )
    ax.legend(title=f"{cluster} (cells)", loc="best", fontsize=6, title_fontsize=6)
    if title:
        ax.set_title(title)
    return fig
