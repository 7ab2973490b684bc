"""Figure of the step-budget sensitivity of the law (:mod:`lawfit.budget`)."""

from __future__ import annotations

import numpy as np

from lawfit.errors import LawfitError
from lawfit.plotting._common import log_ticks
from lawfit.plotting.style import OKABE_ITO, length_colors, new_figure, panel_labels, styled

__all__ = ["plot_budget_sensitivity"]

#: exponent → (label, colour, marker)
_EXPONENTS = {
    "alpha": ("α (rank exponent)", OKABE_ITO[5], "o"),
    "beta": ("β (length exponent)", OKABE_ITO[6], "s"),
}


def _level(result) -> float:
    fits = getattr(result, "fits", None) or {}
    for fit in fits.values():
        level = getattr(fit, "confidence_level", None)
        if level is not None:
            return float(level)
    return 0.95


def _draw_exponents(ax, result) -> None:
    t = result.table.sort_values("budget").reset_index(drop=True)
    params = [p for p in _EXPONENTS if p in t and f"{p}_low" in t and f"{p}_high" in t]
    if not len(t) or not params:
        raise LawfitError(
            "plot_budget_sensitivity needs a per-budget table with alpha and/or beta and their "
            f"intervals (alpha_low, alpha_high, ...); it has columns {list(t.columns)}. Fit a "
            "form with exponents (e.g. power_law)."
        )
    budgets = t["budget"].to_numpy(float)
    span = budgets.max() - budgets.min() if len(budgets) > 1 else budgets.max()
    dodge = 0.012 * span
    final = t.iloc[-1]
    for k, p in enumerate(params):
        lab, color, marker = _EXPONENTS[p]
        est, lo, hi = (t[c].to_numpy(float) for c in (p, f"{p}_low", f"{p}_high"))
        x = budgets + dodge * (k - (len(params) - 1) / 2)
        # the final budget's estimate: the reference every smaller budget is read against
        # (its interval is the error bar at the last budget)
        ax.axhline(final[p], color=color, ls="--", lw=0.7, alpha=0.8, zorder=1)
        yerr = np.clip(np.vstack([est - lo, hi - est]), 0, None)
        ax.errorbar(
            x,
            est,
            yerr=yerr,
            fmt=f"{marker}-",
            color=color,
            ms=3.5,
            lw=1.0,
            elinewidth=0.8,
            capsize=1.5,
            label=lab,
            zorder=3,
        )
    # each budget's tick says how many cells the law was fitted to there
    ax.set_xticks(
        budgets, [f"{int(b):,}\n{int(n)} cells" for b, n in zip(budgets, t["n_obs"], strict=True)]
    )
    pad = 0.08 * span if span > 0 else 0.5 * budgets.max()
    ax.set_xlim(budgets.min() - pad, budgets.max() + pad)
    lo_all = min(float(t[f"{p}_low"].min()) for p in params)
    hi_all = max(float(t[f"{p}_high"].max()) for p in params)
    rng = hi_all - lo_all if hi_all > lo_all else max(abs(hi_all), 1.0)
    # headroom above every interval for the legend, so that it never covers a bar
    ax.set_ylim(lo_all - 0.05 * rng, hi_all + 0.4 * rng)
    ax.set_xlabel("step budget (optimizer steps)")
    ax.set_ylabel(f"exponent estimate ({_level(result):.0%} CI)")
    from matplotlib.lines import Line2D

    h, lab = ax.get_legend_handles_labels()
    h.append(Line2D([], [], color="0.4", ls="--", lw=0.7))
    lab.append(f"final-budget estimate ({int(final['budget']):,} steps)")
    ax.legend(h, lab, loc="upper right")


def _draw_convergence(ax, result) -> None:
    """Draw each budget-stopped cell's last-window gain against length (or why there are none)."""
    conv = result.convergence
    attrs = getattr(conv, "attrs", {}) or {}
    window = attrs.get("window_text") or f"last {attrs.get('window', 100)} steps"
    tol = float(attrs.get("tol", 0.01))
    budget = attrs.get("max_steps")
    budget_txt = f"the {int(budget):,}-step budget" if budget is not None else "the budget"
    reasons = (
        conv["stop_reason"].value_counts().to_dict() if len(conv) and "stop_reason" in conv else {}
    )
    early = ", ".join(
        f"{k} {v}" for k, v in sorted(reasons.items()) if k not in ("budget", "converged")
    )
    gain = conv["rel_gain_last_window"].astype(float) if reasons else None
    ended = conv["stop_reason"].isin(["budget", "converged"]) if reasons else None
    hit = conv[ended & np.isfinite(gain)] if reasons else conv[:0]
    if not len(hit):
        _no_budget_cells(ax, budget_txt, len(conv), early)
        return
    handles = _draw_gain_points(ax, hit)
    _gain_axes(ax, hit, tol, window)
    n_imp = int(hit["still_improving"].sum())
    n_conv = int((hit["stop_reason"] == "converged").sum())
    ended = f"stopped at {budget_txt}" + (f" or converged ({n_conv})" if n_conv else "")
    note = f"{len(hit)} of {len(conv)} cells {ended}, {n_imp} still improving (> {tol:.0%})"
    if early:
        note += f"\nstopped early: {early}"
    ax.text(0.02, 0.985, note, transform=ax.transAxes, ha="left", va="top", fontsize=6.5)
    ax.legend(
        handles=handles,
        title="rank r",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        handletextpad=0.2,
    )


def _no_budget_cells(ax, budget_txt: str, n_cells: int, early: str) -> None:
    """Say in an empty panel that no cell stopped at the budget, and why the cells stopped."""
    ax.text(
        0.5,
        0.5,
        f"no cell stopped at {budget_txt}\n\nstop reasons over {n_cells} "
        f"ok cells:\n{early or 'none'}",
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=7.5,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)


def _draw_gain_points(ax, hit) -> list:
    """Draw the gains by rank, filled if still improving, hollow if not; return legend handles.

    The handles give one colour per rank and then what filled and hollow mean, so that a
    rank appears once in the legend whichever of its cells are still improving.
    """
    from matplotlib.lines import Line2D

    ranks = sorted(hit["rank"].unique())
    colors = length_colors(ranks)
    for i, r in enumerate(ranks):
        g = hit[hit["rank"] == r]
        # ranks dodged sideways (log axis) so that cells of one length stay visible
        x = g["length"].to_numpy(float) * np.exp(0.05 * (i - (len(ranks) - 1) / 2))
        y = g["rel_gain_last_window"].to_numpy(float)
        improving = g["still_improving"].to_numpy(bool)
        c = colors[float(r)]
        ax.plot(x[improving], y[improving], "o", color=c, ms=4, mec="white", mew=0.3, zorder=3)
        ax.plot(x[~improving], y[~improving], "o", mfc="none", mec=c, ms=4, mew=0.8, zorder=3)
    marker = {"ls": "none", "marker": "o", "ms": 4}
    handles = [Line2D([], [], color=colors[float(r)], label=f"{int(r)}", **marker) for r in ranks]
    handles += [
        Line2D([], [], color="0.35", label="still improving", **marker),
        Line2D([], [], mfc="none", mec="0.35", mew=0.8, label="plateaued", **marker),
    ]
    return handles


def _gain_axes(ax, hit, tol: float, window: str) -> None:
    """Draw the tolerance line, a log length axis and a percent gain axis."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    ax.axhline(tol, color="0.3", ls=":", lw=0.8, zorder=1)
    ax.text(
        0.99,
        tol,
        f" tolerance {tol:.0%}",
        transform=ax.get_yaxis_transform(),
        ha="right",
        va="bottom",
        fontsize=6.5,
        color="0.3",
    )
    ax.set_xscale("log")
    log_ticks(ax, "x", hit["length"].unique())
    ax.xaxis.set_minor_locator(NullLocator())
    lengths = hit["length"].to_numpy(float)
    ax.set_xlim(lengths.min() / 1.35, lengths.max() * 1.35)
    y_all = hit["rel_gain_last_window"].to_numpy(float)
    top = max(float(np.nanmax(y_all)), tol)
    bottom = min(float(np.nanmin(y_all)), 0.0)
    ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.3 * (top - bottom))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{100 * v:.3g}%"))
    ax.set_xlabel("target length ℓ (tokens)")
    ax.set_ylabel(f"relative ΔL gain over {window}")


@styled
def plot_budget_sensitivity(result, *, axes=None, title: str | None = None):
    """Plot how the fitted exponents depend on the step budget, and which cells hit it.

    Left: α and β refitted as if the sweep had been trained for at most each budget
    (:func:`lawfit.budget.budget_sensitivity`), with their intervals as error bars; the
    final budget's estimate (dashed) is the reference, and the number of cells fitted at
    each budget is written under its tick. Right: for every cell that stopped at the budget,
    its ΔL gain over the last ``window`` steps relative to ΔL, against target length (log
    axis), coloured by rank, with the tolerance above which a cell counts as still improving
    (hollow markers: below it); the counts of cells stopped early (memorized, plateau) are
    written in the corner. Without any budget-stopped cell the right panel only gives the
    stop-reason counts.

    Parameters
    ----------
    result : BudgetSensitivity
        From :func:`lawfit.budget.budget_sensitivity` (``table`` with ``budget``,
        ``n_obs`` and per exponent the estimate, ``_low`` and ``_high``; ``convergence``
        with ``rank``, ``length``, ``stop_reason``, ``rel_gain_last_window``,
        ``still_improving`` and ``attrs`` ``window``, ``tol``, ``max_steps``).
    axes : sequence of two Axes, optional
        Axes for the exponents and the convergence panel.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    LawfitError
        The per-budget table has neither alpha nor beta with intervals.
    """
    if axes is None:
        fig, axes = new_figure("double", 2.5, ncols=2)
    else:
        fig = axes[0].figure
    a1, a2 = axes
    _draw_exponents(a1, result)
    _draw_convergence(a2, result)
    panel_labels([a1, a2], x=-0.1)
    if title:
        fig.suptitle(title)
    return fig
