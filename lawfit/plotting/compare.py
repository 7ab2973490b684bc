"""Figure of model selection: information criteria and held-out extrapolation error."""

from __future__ import annotations

import numpy as np

from lawfit.plotting.style import OKABE_ITO, new_figure, panel_labels, styled

__all__ = ["plot_model_comparison"]


@styled
def plot_model_comparison(
    cmp, *, axes=None, criterion: str | None = None, title: str | None = None
):
    """Plot ΔAICc (or ΔBIC) with Akaike weights and held-out extrapolation RMSE per form.

    Left: criterion difference to the best form (bars; the weight written at the bar's
    end). Right: RMSE (nats/token) when the largest rank (circles) or the largest
    length (squares) is held out and predicted from the rest.

    Parameters
    ----------
    cmp : ComparisonResult
        From ``lawfit.compare``.
    axes : sequence of two Axes, optional
        Axes to draw on.
    criterion : {"aicc", "bic"}, optional
        Default: the criterion ``compare`` ranked by.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    crit = (criterion or getattr(cmp, "criterion", "aicc") or "aicc").lower()
    t = cmp.table.copy()
    t = t[np.isfinite(t[f"delta_{crit}"].astype(float))]
    t = t.sort_values(f"delta_{crit}", ascending=False)
    if axes is None:
        fig, axes = new_figure("double", 0.45 + 0.22 * len(t) + 0.5, ncols=2, sharey=True)
    else:
        fig = axes[0].figure
    a1, a2 = axes
    y = np.arange(len(t))
    d = t[f"delta_{crit}"].to_numpy(float)
    w = t[f"weight_{crit}"].to_numpy(float)
    dplot = np.maximum(d, 0.0)
    a1.barh(y, dplot, color=[OKABE_ITO[5] if v == 0 else "0.65" for v in d], height=0.6)
    for yi, di, wi in zip(y, dplot, w, strict=True):
        a1.text(
            di * 1.15 + 0.1,
            yi,
            f"w = {wi:.2f}" if wi >= 0.005 else "w < 0.01",
            va="center",
            fontsize=6.5,
        )
    a1.set_xscale("symlog", linthresh=1.0, linscale=0.6)
    a1.set_xlim(0, max(dplot.max(), 10) * 12)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    a1.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    a1.xaxis.set_minor_formatter(NullFormatter())
    a1.set_yticks(y, t["form"].str.replace("_", " "))
    name = {"aicc": "AICc", "bic": "BIC"}.get(crit, crit)
    a1.set_xlabel(f"Δ{name} to the best form (symmetric log scale)")
    for col, mk, lab, c in (
        ("extrap_rank_rmse", "o", "largest rank held out", OKABE_ITO[6]),
        ("extrap_length_rmse", "s", "largest length held out", OKABE_ITO[2]),
    ):
        if col in t:
            v = t[col].to_numpy(float)
            a2.plot(v, y, mk, color=c, ms=4, label=lab, ls="none")
    a2.set_xscale("log")
    from lawfit.plotting._common import plain_log

    plain_log(a2, "x")
    a2.set_xlabel("held-out RMSE of ΔL (nats/token)")
    a2.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, fontsize=6.5)
    a2.grid(axis="x", which="major", color="0.9", lw=0.5)
    a2.tick_params(axis="y", left=False)
    panel_labels([a1, a2], x=-0.01, y=1.03)
    if title:
        fig.suptitle(title)
    return fig
