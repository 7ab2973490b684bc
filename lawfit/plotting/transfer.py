"""A law carried to another model (:func:`lawfit.transfer_law`): its curves and the cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lawfit.data import LN2
from lawfit.errors import LawfitError
from lawfit.plotting._common import fig_ax, plain_log
from lawfit.plotting.style import OKABE_ITO


def plot_transfer(law, cells=None, *, sizes=(), in_cluster=None, ax=None, title: str | None = None):
    """Plot ΔL against length per rank: the source's law, the law carried over, the cells.

    One colour per rank among the new model's cells: the source model's law (thin solid
    line), the law carried to the new model (dashed) with its 95 % prediction band for one
    new cell, the anchors the scale was fitted on (filled) and the new model's other cells
    (open), on log axes. A dotted line marks the anchors' loss_before − ln 2, where a cell
    would be memorized and ΔL saturates below any law.

    Parameters
    ----------
    law : TransferredLaw
        From :func:`lawfit.transfer_law` (a law in rank and length, optionally loss_before:
        then each curve reads the median loss_before of the cells it describes).
    cells : pandas.DataFrame, optional
        The new model's measured cells (the law's inputs and response), e.g. those it was
        not anchored on; the anchors are drawn in any case.
    sizes : sequence of float
        More ranks (or parameter counts) to draw the curves for, with no cell yet: the
        cells a user plans.
    in_cluster : optional
        The target sequence of the band (as :meth:`TransferredLaw.predict`); None: a new one.
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
        A law whose inputs are not rank (or n_params) and length.
    """
    src = law.source
    capacity = next((c for c in ("rank", "n_params") if c in src.inputs), None)
    if capacity is None or "length" not in src.inputs:
        raise LawfitError(
            f"plot_transfer draws a law in rank (or n_params) and length; this one takes "
            f"{list(src.inputs)}."
        )
    fig, ax = fig_ax(ax, 3.3, 2.6)
    measured = _measured(law, cells)
    grid = _length_grid(src, measured)
    palette = tuple(OKABE_ITO[i] for i in (1, 2, 3, 5, 6, 7))
    drawn = sorted({*measured[capacity].tolist(), *map(float, sizes)})
    for i, size in enumerate(drawn):
        color = palette[i % len(palette)]
        _curves(ax, law, capacity, size, grid, in_cluster, color)
        mine = measured[measured[capacity] == size]
        for anchor, fill in ((True, color), (False, "white")):
            sel = mine[mine["anchor"] == anchor]
            ax.plot(sel["length"], sel[src.response], "o", ms=4, color=color, mfc=fill, mew=0.9)
    _ceiling(ax, law)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log(ax, "x")
    plain_log(ax, "y")
    ax.set_xlabel("target length ℓ (tokens)")
    ax.set_ylabel(r"$\Delta L$ (nats/token)")
    handles = _legend_handles(capacity, drawn, palette, others=not measured["anchor"].all())
    ax.legend(handles=handles, fontsize=6, loc="best")
    if title:
        ax.set_title(title)
    return fig


def _measured(law, cells) -> pd.DataFrame:
    """Return the anchors and the given cells, one row each, ``anchor`` telling them apart.

    A given cell that is an anchor (same inputs and, where named, target sequence) is drawn
    once, as an anchor.
    """
    src = law.source
    frames = [law.anchors.assign(anchor=True)]
    if cells is not None:
        frames.append(pd.DataFrame(cells).assign(anchor=False))
    keys = [*src.inputs, src.response]
    same = [*src.inputs, *([law.cluster] if all(law.cluster in f for f in frames) else [])]
    out = pd.concat(frames, ignore_index=True)
    return out.drop_duplicates(subset=same, keep="first")[[*keys, "anchor"]]


def _length_grid(src, measured: pd.DataFrame) -> np.ndarray:
    lo, hi = src.input_ranges["length"]
    lo, hi = min(lo, measured["length"].min()), max(hi, measured["length"].max())
    return np.geomspace(lo, hi, 60)


def _curves(ax, law, capacity: str, size: float, grid, in_cluster, color) -> None:
    """Draw the source's law (solid) and the carried law with its band (dashed) at one size."""
    src = law.source
    extra = [c for c in src.inputs if c not in (capacity, "length")]
    at = {capacity: size, "length": grid}
    source_at = {**at, **{c: float(src.points[c].median()) for c in extra}}
    new_at = {**at, **{c: float(law.anchors[c].median()) for c in extra}}
    ax.plot(grid, src.predict(warn=False, **source_at)["mean"], color=color, lw=0.7, alpha=0.6)
    band = law.predict(in_cluster=in_cluster, **new_at)
    ax.plot(grid, band["predicted"], color=color, lw=1.2, ls="--")
    ax.fill_between(grid, band["low"], band["high"], color=color, alpha=0.15, lw=0)


def _ceiling(ax, law) -> None:
    """Draw a dotted line at the anchors' loss_before − ln 2 (memorized above it)."""
    if "loss_after" not in law.anchors:
        return
    before = law.anchors["loss_after"] + law.anchors[law.source.response]
    ax.axhline(float(before.median()) - LN2, color="0.4", lw=0.7, ls=":", zorder=0)


def _legend_handles(capacity: str, sizes, palette, *, others: bool) -> list:
    from matplotlib.lines import Line2D

    name = "rank" if capacity == "rank" else "params"
    handles = [
        Line2D([], [], color=palette[i % len(palette)], lw=1.2, label=f"{name} {s:g}")
        for i, s in enumerate(sizes)
    ]
    grey = dict(color="0.3")
    handles += [
        Line2D([], [], lw=0.7, alpha=0.6, label="source model's law", **grey),
        Line2D([], [], lw=1.2, ls="--", label="carried law, 95 % PI", **grey),
        Line2D([], [], ls="", marker="o", ms=4, label="anchors", **grey),
    ]
    if others:
        handles.append(
            Line2D([], [], ls="", marker="o", ms=4, mfc="white", label="other cells", **grey)
        )
    return handles + [Line2D([], [], lw=0.7, ls=":", label="loss_before − ln 2", color="0.4")]
