"""Figures of the p > 0.5 phase transition.

Token histograms, recall vs p, phase diagram, cascade.
"""

from __future__ import annotations

import numpy as np

from lawfit._tokens import fails_before, logit, sigmoid, token_arrays
from lawfit.plotting._common import LN2, cells_frame, fig_ax, log_ticks, plain_log, require
from lawfit.plotting.style import OKABE_ITO, styled

__all__ = ["plot_token_histograms", "plot_recall_curve", "plot_phase_diagram", "plot_cascade"]


@styled
def plot_token_histograms(
    ds, *, ax=None, bins: int = 40, result=None, scale: str = "auto", title: str | None = None
):
    """Histogram of the correct token's probability before and after training.

    Training pushes tokens to the two ends (p → 0 or p → 1): the bimodality behind the
    phase transition. Pooled over every ok run of the dataset; log-count axis.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset with ``p_before`` and ``p_after`` over ``token``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    bins : int
        Number of bins.
    result : PhaseTransitionResult, optional
        If given, its bimodality coefficients are written in the legend.
    scale : {"auto", "linear", "logit"}
        Axis of p: ``"linear"`` (equal bins on [0, 1], as in the paper) or ``"logit"``
        (equal bins in log-odds: resolves p near 0 and 1, e.g. random-token targets whose
        base-model p is ~1e-5). ``"auto"`` picks logit when more than half of the
        tokens before training fall into the first linear bin.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(ds, ["p_before", "p_after"], "plot_token_histograms")
    ta = token_arrays(ds, need_greedy=False)
    fig, ax = fig_ax(ax, 3.3, 2.3)
    pb = ta.p_before[ta.valid] if ta.p_before is not None else np.array([])
    pb = pb[np.isfinite(pb)]
    if scale == "auto":
        scale = "logit" if pb.size and np.mean(pb < 1.0 / bins) > 0.5 else "linear"
    if scale == "logit":
        allp = np.concatenate([pb, ta.p_after[ta.valid]])
        z = logit(np.clip(allp[np.isfinite(allp)], 1e-12, 1 - 1e-12))
        zlo, zhi = np.floor(min(z.min(), -1.0)), np.ceil(max(z.max(), 1.0))
        edges = sigmoid(np.linspace(zlo, zhi, bins + 1))
        ax.set_xscale("logit")
    else:
        edges = np.linspace(0, 1, bins + 1)
    bc = {}
    if result is not None and result.bimodality is not None:
        bc = dict(zip(result.bimodality["when"], result.bimodality["bc_pooled"], strict=False))
    for when, arr, col, hatch in (
        ("before", ta.p_before, OKABE_ITO[5], None),
        ("after", ta.p_after, OKABE_ITO[6], None),
    ):
        v = arr[ta.valid]
        v = v[np.isfinite(v)]
        lab = f"{when} training"
        if when in bc:
            lab += f" (BC = {bc[when]:.2f})"
        ax.hist(v, bins=edges, histtype="stepfilled", alpha=0.35, color=col, hatch=hatch)
        ax.hist(v, bins=edges, histtype="step", color=col, lw=1.0, label=lab)
    ax.axvline(0.5, color="0.3", ls=":", lw=0.8)
    ax.set_yscale("log")
    plain_log(ax, "y")
    if scale == "logit":
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        lo_e, hi_e = float(edges[0]), float(edges[-1])
        span = float(logit(np.array(hi_e)) - logit(np.array(lo_e)))
        step = 2 if span < 25 else 4 if span < 50 else 6
        ks = range(step, 17, step)
        ticks = sorted([10.0**-k for k in ks] + [0.5] + [1 - 10.0**-k for k in ks])
        ticks = [t for t in ticks if lo_e <= t <= hi_e and 0 < t < 1]
        ax.set_xlim(lo_e, hi_e)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(
            FuncFormatter(
                lambda v, _p: f"1−{1 - v:.0e}".replace("e-0", "e-") if v > 0.99 else f"{v:g}"
            )
        )
        ax.xaxis.set_minor_locator(NullLocator())
        xlabel = "probability of the correct token $p$ (logit scale)"
    else:
        ax.set_xlim(0, 1)
        xlabel = "probability of the correct token $p$ (teacher forcing)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tokens")
    ax.set_ylim(0.6, ax.get_ylim()[1] * 1.5)
    what = title or f"{int(ta.valid.sum()):,} target tokens, {len(ta.runs)} " + (
        "run" if len(ta.runs) == 1 else "runs"
    )
    ax.legend(
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=2,
        columnspacing=0.8,
        handlelength=1.2,
        title=what,
    )
    return fig


def _binned_recall(ds, n_bins: int = 14):
    ta = token_arrays(ds)
    intact = fails_before(ta.greedy, ta.entry, ta.valid) == 0
    m = ta.valid & intact
    p = np.clip(ta.p_after[m], 1e-6, 1 - 1e-6)
    y = ta.greedy[m]
    z = logit(p)
    qs = np.unique(np.quantile(z, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(qs, z, side="right") - 1, 0, len(qs) - 2)
    rows = []
    for k in range(len(qs) - 1):
        s = idx == k
        n = int(s.sum())
        if n == 0:
            continue
        k1 = float(y[s].sum())
        ph = k1 / n
        # Wilson 95 % interval
        zq = 1.96
        den = 1 + zq**2 / n
        cen = (ph + zq**2 / (2 * n)) / den
        half = zq * np.sqrt(ph * (1 - ph) / n + zq**2 / (4 * n * n)) / den
        rows.append((float(sigmoid(np.median(z[s]))), ph, cen - half, cen + half, n))
    return np.array(rows), int(m.sum()), p, y


def _recall_axis_range(rows, p_tok, y_tok, tf) -> tuple[float, float]:
    """Return the p range of the recall curve: its bins, (nearly) every token, p* and CI."""
    pmin = max(1e-4, float(rows[:, 0].min()) / 2) if len(rows) else 1e-3
    pmax = min(1 - 1e-4, 1 - (1 - float(rows[:, 0].max())) / 2) if len(rows) else 1 - 1e-3
    if p_tok.size:  # the rug below shows every token: the axis covers them all
        low = float(p_tok[y_tok == 0].min()) if (y_tok == 0).any() else 1.0
        pmin = max(1e-6, min(pmin, float(np.quantile(p_tok, 0.005)), low / 1.5))
        pmax = min(1 - 1e-6, max(pmax, float(np.quantile(p_tok, 0.995))))
    lo, hi = tf.ci
    marks = [v for v in (lo, hi, tf.threshold, tf.threshold_isotonic) if np.isfinite(v)]
    if marks:  # p* and its CI always inside the axis
        pmin = max(1e-6, min(pmin, min(marks) / 2))
        pmax = min(1 - 1e-6, max(pmax, 1 - (1 - max(marks)) / 2))
    return pmin, pmax


def _draw_thresholds(ax, tf) -> None:
    """Draw the logistic p* with its CI shaded, the isotonic 50 % crossing and p = 0.5."""
    lo, hi = tf.ci
    ax.axvspan(lo, hi, color=OKABE_ITO[2], alpha=0.3, lw=0)
    ax.axvline(
        tf.threshold,
        color=OKABE_ITO[5],
        lw=1.0,
        label=f"logistic p* = {tf.threshold:.3f} [{lo:.3f}, {hi:.3f}]",
    )
    if np.isfinite(tf.threshold_isotonic):
        ax.axvline(
            tf.threshold_isotonic,
            color=OKABE_ITO[6],
            lw=1.0,
            ls="--",
            label=f"isotonic 50 % crossing = {tf.threshold_isotonic:.3f}",
        )
    ax.axvline(0.5, color="0.3", ls=":", lw=0.8)


def _draw_recall_points(ax, rows, p_tok, y_tok) -> None:
    """Draw binned recall with Wilson intervals and a rug of every token (top: recalled)."""
    if len(rows):
        yerr = np.clip([rows[:, 1] - rows[:, 2], rows[:, 3] - rows[:, 1]], 0, None)
        ax.errorbar(
            rows[:, 0],
            rows[:, 1],
            yerr=yerr,
            fmt="o",
            color="0.15",
            mfc="white",
            ms=3.2,
            elinewidth=0.6,
            capsize=0,
            label="binned tokens (95 % CI)",
        )
    if not p_tok.size:
        return
    for val, yy in ((1, 1.045), (0, -0.045)):
        sel = y_tok == val
        ax.plot(
            p_tok[sel],
            np.full(sel.sum(), yy),
            "|",
            color="0.25",
            ms=4,
            mew=0.4,
            alpha=0.35 if sel.sum() > 50 else 0.7,
            label="each token (top: recalled)" if val == 1 else None,
        )


def _logit_ticks(ax, pmin: float, pmax: float) -> None:
    """Put plain-number ticks on a logit axis, sparser when it spans many decades."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    wide = float(logit(np.array(pmax)) - logit(np.array(pmin))) > 12
    cand = (
        (1e-6, 1e-4, 0.01, 0.5, 0.99, 0.9999)
        if wide
        else (1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
    )
    ax.xaxis.set_major_locator(FixedLocator([t for t in cand if pmin <= t <= pmax]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


@styled
def plot_recall_curve(result, ds, *, ax=None, n_bins: int = 14, title: str | None = None):
    """Plot greedy recall against p_after with the logistic fit, p* and its CI.

    Points: share of tokens reproduced by greedy decoding in quantile bins of
    ``p_after`` (tokens with an intact prefix, as in the fit), with Wilson 95 %
    intervals; rugs: every token (top: recalled, bottom: missed). Line: the fitted
    logistic in logit(p); vertical lines: the logistic threshold p* (shaded CI) and the
    model-free isotonic 50 % crossing; dotted: 0.5.

    Parameters
    ----------
    result : PhaseTransitionResult
        From ``lawfit.phase_transition(ds)`` (needs its ``token_fit``).
    ds : xarray.Dataset
        The same dataset (token variables ``p_after``, ``greedy_correct``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    n_bins : int
        Quantile bins of logit(p_after).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from lawfit.errors import LawfitError

    tf = result.token_fit
    if tf is None:
        raise LawfitError(
            "plot_recall_curve needs result.token_fit (the token-level "
            "logistic fit); this result has none: " + "; ".join(result.notes)
        )
    fig, ax = fig_ax(ax, 3.3, 2.5)
    rows, n_tok, p_tok, y_tok = _binned_recall(ds, n_bins)
    ax.set_xscale("logit")
    pmin, pmax = _recall_axis_range(rows, p_tok, y_tok, tf)
    _draw_thresholds(ax, tf)
    grid = sigmoid(np.linspace(logit(np.array(pmin)), logit(np.array(pmax)), 200))
    ax.plot(
        grid,
        sigmoid(tf.intercept + tf.slope * logit(grid)),
        color="0.15",
        lw=1.1,
        label="logistic fit",
    )
    _draw_recall_points(ax, rows, p_tok, y_tok)
    ax.set_xlim(pmin, pmax)
    _logit_ticks(ax, pmin, pmax)
    ax.set_ylim(-0.07, 1.07)
    ax.set_xlabel(r"$p_{\mathrm{after}}$ of the correct token (logit scale)")
    ax.set_ylabel("greedy recall")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=2, fontsize=6.3)
    ax.set_title(title or f"{n_tok:,} tokens with an intact prefix, {tf.n_runs} runs", fontsize=7)
    caveats = threshold_caveats(result)
    if caveats:
        # lower right: above p = 0.5 recall is 1 (sufficiency), so that corner is empty
        ax.text(
            0.98,
            0.1,
            "\n".join(caveats),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=6,
            color=OKABE_ITO[5],
            bbox=dict(facecolor="white", edgecolor=OKABE_ITO[5], lw=0.5, alpha=0.9),
        )
    return fig


def threshold_caveats(result) -> list[str]:
    """Short warnings for the recall figure, one per threshold flag of ``result``.

    Parameters
    ----------
    result : PhaseTransitionResult
        From :func:`lawfit.phase_transition`; its ``flags`` are read by code.

    Returns
    -------
    list of str
        One short text per flag ``few_informative_runs``, ``threshold_not_logistic`` or
        ``one_miss_per_run`` (the same caveats the report gives for p*); empty when none is
        raised.
    """
    codes = {f.code for f in result.flags}
    tf = result.token_fit
    out = []
    if "few_informative_runs" in codes:
        out.append(
            f"p* interval unreliable: only\n{tf.n_runs_informative} of {tf.n_runs} runs informative"
        )
    if "threshold_not_logistic" in codes:
        out.append("recall not logistic in logit(p):\nprefer the isotonic crossing")
    if "one_miss_per_run" in codes:
        out.append(f"p* {tf.ci_method} interval\ntoo narrow: one miss per run")
    return out


_PHASE_LABELS = {
    "exact_match": "exact-match recall",
    "token_accuracy": "token accuracy",
    "frac_above": "share of tokens with p > 0.5",
}


def _phase_cells(ds, order: str):
    """Per-run values of ``order`` for the phase diagram.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting, one method.
    order : str
        Cell variable, or ``"frac_above"`` (share of tokens with p_after > 0.5).

    Returns
    -------
    pandas.DataFrame
        One row per ok run with ``rank``, ``length`` and ``order``.

    Raises
    ------
    LawfitError
        If ``ds`` lacks the variable or has no ok cell with it.
    """
    from lawfit.errors import LawfitError

    if order == "frac_above":
        require(ds, ["p_after"], "plot_phase_diagram(order='frac_above')")
        ta = token_arrays(ds, need_greedy=False)
        df = ta.runs.copy()
        df["frac_above"] = [np.mean(p[v] > 0.5) for p, v in zip(ta.p_after, ta.valid, strict=True)]
    else:
        require(ds, [order], "plot_phase_diagram")
        df = cells_frame(ds, [order])
    if not len(df):
        raise LawfitError(f"plot_phase_diagram: no ok cell with {order!r}.")
    return df


def _phase_grid(df, order: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of ``order`` over seeds on the (length, rank) grid.

    Parameters
    ----------
    df : pandas.DataFrame
        From :func:`_phase_cells`.
    order : str
        Column to average.

    Returns
    -------
    ranks, lengths : numpy.ndarray
        Sorted grid coordinates.
    Z : numpy.ndarray
        Shape ``(length, rank)``, NaN where no run.
    """
    ranks = np.array(sorted(df["rank"].unique()), float)
    lengths = np.array(sorted(df["length"].unique()), float)
    mean = df.groupby(["length", "rank"])[order].mean()
    Z = np.full((len(lengths), len(ranks)), np.nan)
    for (L, r), v in mean.items():
        Z[np.searchsorted(lengths, L), np.searchsorted(ranks, r)] = v
    return ranks, lengths, Z


def _log_edges(v: np.ndarray) -> np.ndarray:
    """Cell edges of log-spaced centres ``v`` (midpoints in log, one unit for one centre).

    Parameters
    ----------
    v : numpy.ndarray
        Sorted positive centres.

    Returns
    -------
    numpy.ndarray
        ``len(v) + 1`` edges.
    """
    lv = np.log(v)
    if len(v) == 1:
        return np.exp([lv[0] - 0.5, lv[0] + 0.5])
    mid = (lv[1:] + lv[:-1]) / 2
    return np.exp(np.concatenate([[2 * lv[0] - mid[0]], mid, [2 * lv[-1] - mid[-1]]]))


def _label_cells(ax, Z: np.ndarray, lengths: np.ndarray, ranks: np.ndarray) -> None:
    """Write each cell's value (two decimals, ``1`` when full) on the map.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes of the map.
    Z : numpy.ndarray
        Values, shape ``(length, rank)``.
    lengths, ranks : numpy.ndarray
        Cell centres.
    """
    for i, L in enumerate(lengths):
        for j, r in enumerate(ranks):
            if np.isfinite(Z[i, j]) and Z[i, j] >= 0.005:
                txt = "1" if Z[i, j] >= 0.995 else f"{Z[i, j]:.2f}".lstrip("0")
                ax.text(
                    L,
                    r,
                    txt,
                    zorder=5,
                    ha="center",
                    va="center",
                    fontsize=5.5,
                    color="white" if Z[i, j] < 0.6 else "black",
                )


def _draw_capacity_boundary(ax, fit, ds, loss_before, xe: np.ndarray, ye: np.ndarray) -> None:
    """Draw the rank where the law predicts ``loss_after = ln 2``, with its band.

    Nothing is drawn when the prediction fails (a :class:`LawfitError`).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes of the map.
    fit : FitResult
        Fitted law in (rank, length).
    ds : xarray.Dataset
        Source of ``loss_before`` when ``loss_before`` is None.
    loss_before : float or callable or None
        Base-model loss.
    xe, ye : numpy.ndarray
        Length and rank edges of the map (the band is clipped to them).
    """
    import warnings

    from lawfit.capacity import predict_capacity
    from lawfit.errors import LawfitError

    grid = np.geomspace(xe[0], xe[-1], 40)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pc = predict_capacity(
                fit,
                length=grid,
                target=LN2,
                target_kind="loss_after",
                loss_before=loss_before,
                data=None if loss_before is not None else ds,
            )
        t = pc.table
        est = t["estimate"].to_numpy(float)
        ok = np.isfinite(est) & (est > 0)
        ax.plot(grid[ok], est[ok], color=OKABE_ITO[1], lw=1.4, label="law: loss$_{after}$ = ln 2")
        if "low" in t and np.isfinite(t["low"]).any():
            lo = np.clip(t["low"].to_numpy(float), ye[0], ye[-1])
            hi = np.clip(t["high"].to_numpy(float), ye[0], ye[-1])
            ax.fill_between(grid, lo, hi, color=OKABE_ITO[1], alpha=0.25, lw=0)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=6.5)
    except LawfitError:
        pass


def _phase_axes(
    ax, xe: np.ndarray, ye: np.ndarray, lengths: np.ndarray, ranks: np.ndarray, title: str | None
) -> None:
    """Limits, log ticks at the grid values, labels and title of the phase map.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes of the map.
    xe, ye : numpy.ndarray
        Length and rank edges.
    lengths, ranks : numpy.ndarray
        Tick positions.
    title : str or None
        Axes title.
    """
    from matplotlib.ticker import NullLocator

    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    log_ticks(ax, "x", lengths)
    log_ticks(ax, "y", ranks)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlabel("target length ℓ (tokens)")
    ax.set_ylabel("LoRA rank $r$")
    if title:
        ax.set_title(title, fontsize=7)


@styled
def plot_phase_diagram(
    ds, fit=None, *, order: str = "exact_match", ax=None, loss_before=None, title: str | None = None
):
    """Rank × length map of recall, with the law's predicted recall boundary.

    Cells are coloured by the mean over seeds of ``order`` (``exact_match``,
    ``token_accuracy`` or ``frac_above``: the share of tokens with p_after > 0.5).
    The line is the rank at which the fitted law predicts ``loss_after = ln 2``
    (from ``fit`` and ``loss_before``; :func:`lawfit.predict_capacity`), with its
    bootstrap band; cells above it are predicted to be recalled.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting, one method: cells over ``rank`` and ``length``.
    fit : FitResult, optional
        Fitted law in (rank, length); no boundary without it.
    order : str
        Cell variable to colour by.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    loss_before : float or callable, optional
        Base-model loss for the boundary (default: read from ``ds``).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ranks, lengths, Z = _phase_grid(_phase_cells(ds, order), order)
    fig, ax = fig_ax(ax, 3.3, 2.6)
    xe, ye = _log_edges(lengths), _log_edges(ranks)
    mesh = ax.pcolormesh(
        xe,
        ye,
        np.ma.masked_invalid(Z.T),
        cmap="viridis",
        vmin=0,
        vmax=1,
        edgecolors="white",
        linewidth=0.5,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_cells(ax, Z, lengths, ranks)
    cb = fig.colorbar(mesh, ax=ax, pad=0.02, fraction=0.06)
    cb.set_label(_PHASE_LABELS.get(order, order))
    cb.outline.set_linewidth(0.4)
    if fit is not None:
        _draw_capacity_boundary(ax, fit, ds, loss_before, xe, ye)
    _phase_axes(ax, xe, ye, lengths, ranks, title)
    return fig


@styled
def plot_cascade(result, *, ax=None, title: str | None = None):
    """Earliest sub-threshold position against the first greedy error, with Spearman ρ.

    Each point is one run (or entry): the first token with p_after < 0.5 under teacher
    forcing (x) against the first token greedy decoding got wrong (y). By sufficiency
    no point can lie below the identity line. Censored units (an event missing, placed
    at the unit's end) are drawn hollow.

    Parameters
    ----------
    result : PhaseTransitionResult
        From ``lawfit.phase_transition`` (needs its ``cascade``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from lawfit.errors import LawfitError

    c = result.cascade
    if c is None:
        raise LawfitError(
            "plot_cascade needs result.cascade; this result has none: " + "; ".join(result.notes)
        )
    pos = c.positions
    fig, ax = fig_ax(ax, 3.0, 2.7)
    x = pos["earliest_subthreshold"].to_numpy(float)
    y = pos["first_error"].to_numpy(float)
    cens = np.zeros(len(pos), bool)
    if "unit_length" in pos:
        ul = pos["unit_length"].to_numpy(float)
        cens = (x >= ul) | (y >= ul)
    xs, ys = x + 1, y + 1  # positions start at 0: plot position + 1 on log axes
    import pandas as pd

    pts = pd.DataFrame({"x": xs, "y": ys, "c": cens}).value_counts().reset_index(name="n")
    for flag, kw, lab in (
        (False, dict(color=OKABE_ITO[5], alpha=0.65, edgecolors="none"), "run"),
        (
            True,
            dict(facecolors="none", edgecolors=OKABE_ITO[5], linewidths=0.6),
            "censored (event at end)",
        ),
    ):
        g = pts[pts["c"] == flag]
        if len(g):
            ax.scatter(g["x"], g["y"], s=6 + 6 * g["n"], label=lab, zorder=3, **kw)
    hi = max(xs.max(), ys.max()) * 1.3
    ax.plot([1, hi], [1, hi], "--", color="0.4", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.8, hi)
    ax.set_ylim(0.8, hi)
    ax.set_aspect("equal", adjustable="box")
    plain_log(ax, "x")
    plain_log(ax, "y")
    ax.set_xlabel("earliest token with $p_{after}$ < 0.5\n(position + 1)")
    ax.set_ylabel("first greedy error (position + 1)")
    from matplotlib.lines import Line2D

    h = [Line2D([], [], ls="none", marker="o", ms=4, color=OKABE_ITO[5], alpha=0.65)]
    lab = ["run (area ∝ number of runs)"]
    if cens.any():
        h.append(Line2D([], [], ls="none", marker="o", ms=4, mfc="none", mec=OKABE_ITO[5]))
        lab.append("censored (event at end)")
    h.append(Line2D([], [], ls="--", color="0.4", lw=0.8))
    lab.append("identity")
    ax.legend(h, lab, loc="lower right", fontsize=6.3)
    ax.set_title(
        title or f"Spearman ρ = {c.rho:.3f} [{c.ci[0]:.3f}, {c.ci[1]:.3f}], {c.n_units} {c.unit}s",
        fontsize=7,
    )
    return fig
