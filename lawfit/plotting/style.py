"""One house style for every lawfit figure: sizes, fonts, palette, saving.

Sized for a two-column paper: a single column is 3.3 in wide, a full page width 7 in.
Fonts are 7-8 pt (readable when the PDF is printed at 100 %), the palette is
Okabe-Ito (colour-blind safe) for categories and a truncated *viridis* for ordered
values such as target length. matplotlib is imported lazily: ``import lawfit`` never
imports it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import numpy as np

from lawfit.data import LN2
from lawfit.errors import LawfitError

__all__ = [
    "SINGLE",
    "DOUBLE",
    "OKABE_ITO",
    "METHOD_COLORS",
    "METHOD_LABELS",
    "DL_LABEL",
    "LN2",
    "require_matplotlib",
    "paper_style",
    "rc_params",
    "new_figure",
    "styled",
    "panel_labels",
    "length_colors",
    "save_figure",
    "annotate_provenance",
    "data_status",
]

SINGLE = 3.3  #: width of one column of a two-column paper, inches
DOUBLE = 7.0  #: width of a full page (both columns), inches

#: Okabe & Ito (2008) colour-blind-safe qualitative palette (black first).
OKABE_ITO = (
    "#000000",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
)
METHOD_COLORS = {"sft": "#000000", "memft_ot": "#0072B2", "memft_sw": "#D55E00"}
METHOD_LABELS = {"sft": "SFT", "memft_ot": "MemFT-OT", "memft_sw": "MemFT-SW"}
DL_LABEL = r"loss reduction $\Delta L$ (nats/token)"


def require_matplotlib():
    """Import matplotlib (Agg-safe) or raise an error with the install hint.

    Returns
    -------
    module
        ``matplotlib.pyplot``.

    Raises
    ------
    LawfitError
        If matplotlib is not installed.
    """
    try:
        import matplotlib
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise LawfitError(
            "lawfit.plotting needs matplotlib (and optionally seaborn); it is not installed "
            f"({exc}). Install the plotting extra: pip install 'lawfit[plot]'."
        ) from exc
    del matplotlib
    return plt


def rc_params() -> dict:
    """Return the rcParams of the lawfit paper style.

    Returns
    -------
    dict
        matplotlib rcParams (fonts 7-8 pt, no top/right spines, thin lines, embedded
        TrueType fonts in PDF, tight bounding boxes).
    """
    return {
        "font.size": 7.5,
        "axes.titlesize": 8,
        "axes.labelsize": 7.5,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "legend.fontsize": 7,
        "legend.title_fontsize": 7,
        "figure.titlesize": 8.5,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        "mathtext.fontset": "dejavusans",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.linewidth": 0.6,
        "axes.prop_cycle": __import__("cycler").cycler(color=list(OKABE_ITO)),
        "axes.titlepad": 4.0,
        "axes.labelpad": 2.5,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.minor.width": 0.4,
        "ytick.minor.width": 0.4,
        "xtick.major.size": 2.5,
        "ytick.major.size": 2.5,
        "xtick.minor.size": 1.5,
        "ytick.minor.size": 1.5,
        "xtick.major.pad": 2.0,
        "ytick.major.pad": 2.0,
        "lines.linewidth": 1.1,
        "lines.markersize": 3.5,
        "patch.linewidth": 0.6,
        "legend.frameon": False,
        "legend.handlelength": 1.6,
        "legend.borderaxespad": 0.3,
        "legend.labelspacing": 0.3,
        "legend.columnspacing": 1.0,
        "figure.dpi": 150,
        "savefig.dpi": 300,
        "savefig.bbox": "tight",
        "savefig.pad_inches": 0.02,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "figure.constrained_layout.use": True,
        "figure.constrained_layout.h_pad": 0.02,
        "figure.constrained_layout.w_pad": 0.02,
        "image.cmap": "viridis",
    }


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Apply the lawfit paper style inside a ``with`` block.

    Yields
    ------
    None
        matplotlib rcParams are the house style inside the block and restored after.

    Examples
    --------
    >>> from lawfit.plotting.style import paper_style
    >>> with paper_style():  # doctest: +SKIP
    ...     fig = lawfit.plotting.plot_law_curves(res)
    """
    plt = require_matplotlib()
    with plt.rc_context(rc_params()):
        yield


def new_figure(
    width: str | float = "single",
    height: float | None = None,
    *,
    nrows: int = 1,
    ncols: int = 1,
    **kwargs,
):
    """Create a figure in the paper style.

    Parameters
    ----------
    width : {"single", "double"} or float
        3.3 in, 7 in or a width in inches.
    height : float, optional
        Height in inches (default: width × 0.75 for one panel per row, shorter for
        double-width rows).
    nrows, ncols : int
        Panel grid.
    **kwargs
        Passed to ``plt.subplots``.

    Returns
    -------
    (Figure, Axes or array of Axes)
    """
    plt = require_matplotlib()
    w = (
        {"single": SINGLE, "double": DOUBLE}.get(width, width)
        if isinstance(width, str)
        else float(width)
    )
    if isinstance(w, str):
        raise LawfitError(f"width must be 'single', 'double' or inches; got {width!r}.")
    if height is None:
        height = min(w * 0.75, 2.6) * nrows if ncols == 1 else 2.3 * nrows
    with plt.rc_context(rc_params()):
        fig, axes = plt.subplots(nrows, ncols, figsize=(w, height), **kwargs)
    return fig, axes


def styled(func):
    """Decorate a plotting function so that it draws inside :func:`paper_style`.

    Parameters
    ----------
    func : callable
        Function that creates matplotlib artists.

    Returns
    -------
    callable
        The same function, run with the house rcParams.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with paper_style():
            return func(*args, **kwargs)

    return wrapper


def length_colors(lengths: Sequence[float]) -> dict:
    """Map ordered lengths to colours of a truncated viridis (dark = short, light = long).

    Parameters
    ----------
    lengths : sequence of float
        Values to colour.

    Returns
    -------
    dict
        length → RGBA colour.
    """
    plt = require_matplotlib()
    vals = sorted({float(v) for v in lengths})
    cmap = plt.get_cmap("viridis")
    if len(vals) == 1:
        return {vals[0]: cmap(0.35)}
    return {v: cmap(0.05 + 0.8 * i / (len(vals) - 1)) for i, v in enumerate(vals)}


def data_status(ds) -> dict:
    """Count collected cells in a contract dataset (for 'partial data' notes).

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset (``status`` optional).

    Returns
    -------
    dict
        ``n_cells`` (grid size), ``n_ok``, ``n_not_run``, ``synthetic`` (bool) and
        ``partial`` (true when some cells are not collected yet).
    """
    synthetic = str(getattr(ds, "attrs", {}).get("synthetic", "")).lower() == "true"
    if ds is None or "status" not in ds:
        return {"n_cells": 0, "n_ok": 0, "n_not_run": 0, "synthetic": synthetic, "partial": False}
    st = np.asarray(ds["status"].values).astype(str).ravel()
    n_ok = int((st == "ok").sum())
    n_cells = int(st.size)
    attrs = getattr(ds, "attrs", {})
    if "n_cells" in attrs:  # collect's merge: the sweep's own cells, not the cartesian grid
        try:  # (a selection keeps the attrs: both counts are the whole sweep's)
            n_cells = int(attrs["n_cells"])
            n_ok = int(attrs.get("n_cells_done", n_ok))
        except (TypeError, ValueError):
            pass
    partial = n_ok < n_cells
    if str(attrs.get("complete", "")).lower() in ("true", "1"):
        partial = False
    return {
        "n_cells": n_cells,
        "n_ok": n_ok,
        "n_not_run": max(n_cells - n_ok, 0),
        "synthetic": synthetic,
        "partial": partial,
    }


def annotate_provenance(fig, ds=None, *, text: str | None = None) -> None:
    """Write a small grey note in the figure's bottom-right corner.

    Says "SYNTHETIC data" for synthetic datasets and "partial: k of n cells" when some
    cells of the grid are not collected yet, plus any extra ``text``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to annotate.
    ds : xarray.Dataset, optional
        Dataset the figure was drawn from.
    text : str, optional
        Extra note.
    """
    parts = []
    if ds is not None:
        s = data_status(ds)
        if s["synthetic"]:
            parts.append("SYNTHETIC data")
        if s["partial"]:
            parts.append(f"PARTIAL data: {s['n_ok']} of {s['n_cells']} cells collected")
    if text:
        parts.append(text)
    if parts:
        import textwrap

        # below the figure: savefig(bbox_inches="tight") grows the canvas to include it,
        # so the note never sits on an axis label; wrapped to the figure's width
        width = int(fig.get_size_inches()[0] * 72 / (6 * 0.56))
        note = "\n".join(textwrap.wrap("; ".join(parts), width=max(width, 30)))
        fig.text(
            0.995,
            _note_height(fig),
            note,
            ha="right",
            va="top" if not fig.legends else "bottom",
            fontsize=6,
            color="0.45",
            style="italic",
        )


def _note_height(fig) -> float:
    """Below the figure; above it when a figure legend sits at the bottom.

    A figure legend placed "outside lower center" by constrained layout moves down when the
    tight bounding box grows below the figure, onto a note there; above the figure nothing
    moves.
    """
    return 1.005 if fig.legends else -0.005


def save_figure(
    fig, stem: str | os.PathLike, *, formats: Sequence[str] = ("pdf", "png"), dpi: int = 300
) -> list[str]:
    """Save a figure as ``stem.pdf`` and ``stem.png`` (creating the folder).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to save (closed afterwards).
    stem : path
        Output path without extension.
    formats : sequence of str
        File formats.
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    list of str
        Paths written.
    """
    plt = require_matplotlib()
    stem = os.fspath(stem)
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    out = []
    with plt.rc_context(rc_params()):
        for fmt in formats:
            path = f"{stem}.{fmt}"
            fig.savefig(path, dpi=dpi, metadata=None if fmt != "pdf" else {"Creator": "lawfit"})
            out.append(path)
    plt.close(fig)
    return out


def panel_labels(axes, *, start: str = "a", x: float = -0.02, y: float = 1.02) -> None:
    """Write bold panel letters (a, b, ...) at the top-left corner of each axes.

    Parameters
    ----------
    axes : sequence of Axes
        Panels in reading order.
    start : str
        First letter.
    x, y : float
        Position in axes coordinates (right-aligned at ``x``, bottom at ``y``).
    """
    for i, ax in enumerate(np.asarray(axes).ravel()):
        ax.text(
            x,
            y,
            chr(ord(start) + i),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8.5,
            fontweight="bold",
        )
