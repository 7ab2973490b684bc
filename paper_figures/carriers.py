"""Bits stored and recalled per memory carrier, against parameters and bytes (issue 15).

A carrier is where a memory lives (DESIGN.md §1): a LoRA placement such as ``mlp_block@20``
sized by ``rank``, or a ``collect`` carrier spec sized by the spec itself (``memtok:m``,
``memtok:m@k``, ``kv:m@k``, ``skv:k@LAYERS``, at rank 1). In a contract dataset it is the
``modules`` coordinate; ``n_params`` and ``n_bytes`` give every size in scalars and in bytes
at storage precision (docs/CONVENTIONS.md).

:func:`carrier_cells`
    One row per ok cell: its carrier, size, ``n_params``, ``n_bytes``, steps and the three
    kinds of bits of :func:`lawfit.information.information_bits`.
:func:`carrier_points`
    Per carrier and size, the bits of each target length averaged over target sequences
    (``data_seed``; adapter seeds are averaged first), with their spread, and the length
    that stores the most: the carrier's demonstrated capacity at that size.
:func:`plot_carriers`
    The figure: bits stored and bits recalled against trainable parameters and against
    bytes, one series per carrier, one row of panels per task, with the 2 (Allen-Zhu & Li)
    and 3.6 (Morris et al. 2025) bits/parameter references.

Descriptive only: the per-carrier law with its intervals is ``lawfit.carriers``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from scipy import stats

from lawfit.capacity import ANCHORS_BITS_PER_PARAM
from lawfit.data import LN2
from lawfit.errors import LawfitError
from lawfit.information import information_bits
from lawfit.plotting._common import fig_ax
from lawfit.plotting.style import DOUBLE, OKABE_ITO, new_figure, styled

__all__ = [
    "BITS",
    "SIZES",
    "carrier_cells",
    "carrier_label",
    "carrier_points",
    "plot_carriers",
]

#: The bits drawn, and their axis labels.
BITS = {"bits_stored": "bits stored", "bits_recalled": "bits recalled exactly"}
#: The size axes, and their labels.
SIZES = {"n_params": "trainable parameters", "n_bytes": "bytes at storage precision"}
_PER = {"n_params": "parameters", "n_bytes": "bytes"}
#: The grouping of a carrier's cells into one setting (one row of panels).
SETTING = ["model", "task", "random_ratio", "objective"]
#: Carrier specs of ``collect`` (collect/carriers/spec.py): kind, size knob, placement.
_SPEC = re.compile(r"^(?P<kind>memtok|kv|skv):(?P<knob>[1-9]\d*)(@(?P<at>.+))?$")
#: Okabe-Ito colours per carrier, in order (yellow left out: too light on white).
CARRIER_COLORS = tuple(OKABE_ITO[i] for i in (5, 6, 3, 7, 1, 2, 0))
#: Legend text of the open marks: a memorized target (its bits are a lower bound of the
#: carrier's capacity) and a carrier that recalled or stored nothing (drawn at the floor).
HELD = "target memorized: a lower bound"
NONE = "zero (drawn at the axis floor)"
#: Markers per carrier (colour and marker both tell carriers apart).
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">")
#: Multiplicative dodge along x between carriers of equal size (matched sizes coincide).
DODGE = 1.06
#: Confidence level of the intervals over target sequences.
LEVEL = 0.95


def carrier_label(modules: str) -> tuple[str, str]:
    """Carrier label and size-knob name of a ``modules`` value.

    Labels follow ``lawfit.carriers.carrier_of``: the kind, and the placement after ``@``.

    Parameters
    ----------
    modules : str
        ``memtok:16``, ``memtok:16@20``, ``kv:8@27``, ``skv:4@27,28,29`` or a LoRA placement.

    Returns
    -------
    label, knob : str
        ``("memtok@20", "m")``, ``("skv@27,28,29", "k")``; a LoRA placement is its own label
        with knob ``"rank"``.

    Examples
    --------
    >>> carrier_label("kv:8@27")
    ('kv@27', 'm')
    >>> carrier_label("mlp_block@20")
    ('mlp_block@20', 'rank')
    """
    text = str(modules).strip()
    match = _SPEC.match(text)
    if match is None:
        return text, "rank"
    knob = "k" if match["kind"] == "skv" else "m"
    at = match["at"]
    return (match["kind"] if at is None else f"{match['kind']}@{at}"), knob


def _size_knob(modules: str, rank: int) -> int:
    """m or k of a carrier spec, the rank of a LoRA placement."""
    match = _SPEC.match(str(modules).strip())
    return int(match["knob"]) if match else int(rank)


def carrier_cells(ds, entropy=None) -> pd.DataFrame:
    """One row per ok cell with its carrier, size, bytes, steps and information bits.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset with ``modules``, ``n_params`` and the token variables
        ``p_after``, ``p_before``, ``greedy_correct`` (information bits need them).
    entropy : float or xarray.DataArray, optional
        Content entropy per token (default: recorded or derived, as
        :func:`lawfit.information.target_entropy`).

    Returns
    -------
    pandas.DataFrame
        The cell coordinates, ``carrier``, ``knob`` (its size knob's name), ``size`` (m, k
        or rank), ``n_params``, ``n_bytes`` (NaN where not recorded), ``bytes_per_param``,
        ``steps``, ``loss_after``, ``exact_match``, ``stop_reason``, ``first_exact_step``
        and ``first_exact`` (where recorded) and
        ``bits_stored``, ``bits_recalled``, ``bits_dl``, ``bits_content``,
        ``bits_stored_base``, ``entropy_known``.

    Raises
    ------
    LawfitError
        Without a ``modules`` dimension or ``n_params``.
    """
    if "modules" not in ds.dims or "n_params" not in ds:
        raise LawfitError(
            "the carrier comparison needs a 'modules' dimension (one value per carrier) and "
            f"'n_params'; the dataset has dims {sorted(ds.dims)} and variables "
            f"{sorted(ds.data_vars)}. Merge a carrier sweep with collect (docs/collect.md)."
        )
    cells = information_bits(ds, entropy).cells
    sizes = [v for v in ("n_params", "n_bytes") if v in ds]
    per_adapter = ds[sizes].to_dataframe().reset_index()
    keys = [d for d in ds["n_params"].dims if d in cells]
    cells = cells.merge(per_adapter[[*keys, *sizes]], on=keys, how="left")
    recorded = (
        "steps",
        "loss_after",
        "exact_match",
        "stop_reason",
        "first_exact_step",
        "first_exact",
    )
    extra = [v for v in recorded if v in ds]
    if extra:
        per_cell = ds[extra].to_dataframe().reset_index()
        on = [c for c in per_cell.columns if c in cells.columns and c not in extra]
        cells = cells.merge(per_cell[[*on, *extra]], on=on, how="left")
    if "n_bytes" not in cells:
        cells["n_bytes"] = np.nan
    for v in ("n_params", "n_bytes"):
        cells[v] = cells[v].astype(float).where(cells[v] > 0)
    cells["n_bytes"] = _derive_missing_bytes(cells, ds)
    labels = [carrier_label(m) for m in cells["modules"]]
    cells["carrier"] = [lab for lab, _ in labels]
    cells["knob"] = [knob for _, knob in labels]
    cells["size"] = [_size_knob(m, r) for m, r in zip(cells["modules"], cells["rank"], strict=True)]
    cells["bytes_per_param"] = cells["n_bytes"] / cells["n_params"]
    return cells.dropna(subset=["n_params"]).reset_index(drop=True)


def across_models(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells of several models as the series of one comparison.

    Each series is a model's carrier (``"gemma3-270m mlp_block@12"``): the setting rows of
    :func:`plot_carriers` no longer split by model, so every model shares one row of panels
    per task, on the same axes and references.

    Parameters
    ----------
    cells : pandas.DataFrame
        From :func:`carrier_cells` on a dataset of two or more models.

    Returns
    -------
    pandas.DataFrame
        ``cells`` with ``carrier`` prefixed by the model and no ``model`` column.
    """
    if "model" not in cells:
        raise LawfitError(f"no 'model' column to compare; carrier_cells gives {sorted(cells)}.")
    label = cells["model"].astype(str) + " " + cells["carrier"].astype(str)
    return cells.assign(carrier=label).drop(columns="model")


def _derive_missing_bytes(cells: pd.DataFrame, ds) -> pd.Series:
    """``n_bytes``, derived where a dataset predates it as ``collect merge`` does.

    :func:`collect.carriers.derived_n_bytes`: 4 bytes per parameter for a weight delta
    (float32 whatever the model), the recorded dtype's size for a carrier; left NaN
    without collect or a recorded dtype.
    """
    missing = cells["n_bytes"].isna() & cells["n_params"].notna()
    if not missing.any():
        return cells["n_bytes"]
    try:
        from collect.carriers import derived_n_bytes
    except ImportError:
        return cells["n_bytes"]
    dtypes = (
        ds["dtype"].to_dataframe().reset_index().merge(cells, how="right")["dtype"]
        if "dtype" in ds
        else pd.Series("", index=cells.index)
    )
    out = cells["n_bytes"].copy()
    for i in np.flatnonzero(missing.to_numpy()):
        got = derived_n_bytes(
            cells["modules"].iat[i], int(cells["n_params"].iat[i]), str(dtypes.iat[i] or "")
        )
        out.iat[i] = np.nan if got is None else float(got)
    return out


def _interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float, int]:
    """Mean, standard error and t-interval half-width of independent replicates."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    if n == 1:
        return float(v[0]), np.nan, np.nan, 1
    se = float(v.std(ddof=1) / np.sqrt(n))
    return float(v.mean()), se, float(stats.t.ppf(0.5 + level / 2, n - 1) * se), n


def format_interval(mean: float, half_width: float) -> str:
    """``"mean ± half-width"`` as the carrier tables print it (``"n/a"``, or the mean alone)."""
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(half_width):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {half_width:.3g}"


def paired_ratio(ratio: pd.Series, level: float = LEVEL) -> tuple[float, float, float]:
    """Geometric mean of per-sequence ratios and its paired t-interval (log scale).

    Each ratio compares two carriers on one target sequence, so the sequences are the
    replicates: the interval is the t-interval of the mean log ratio, exponentiated. With one
    sequence there is no interval (NaN bounds).
    """
    mean, _, half, n = _interval(np.log(ratio.to_numpy(float)), level)
    if n < 2:
        return float(np.exp(mean)), np.nan, np.nan
    return float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half))


def paired_ratio_text(ratio: pd.Series, winner: str) -> str:
    """Say a per-sequence ratio (above 1: ``winner`` wins there) sequence by sequence.

    Returns ``"ratio per sequence 2.00 (sequence 0), ...: WINNER on k of n"`` and, with two
    or more sequences, the geometric mean with its 95 % paired t-interval (:func:`paired_ratio`).
    """
    listed = ", ".join(f"{r:.2f} (sequence {int(seq)})" for seq, r in ratio.items())
    text = f"ratio per sequence {listed}: {winner} on {int((ratio > 1).sum())} of {len(ratio)}"
    geo, low, high = paired_ratio(ratio)
    if np.isfinite(low):
        text += f"; geometric mean {geo:.2f} [{low:.2g}, {high:.2g}] (95 % paired t-interval)"
    return text


def carrier_points(cells: pd.DataFrame, quantity: str = "bits_stored") -> pd.DataFrame:
    """Per carrier and size, the target length storing the most ``quantity``, over targets.

    Adapter seeds are averaged within each target sequence first; target sequences
    (``data_seed``) are the replicates: their mean, standard error and 95 % t-interval
    half-width are given per length. The row kept per (setting, carrier, size) is the
    length with the largest mean (the capacity a carrier of that size has shown: a shorter
    target may not fill it, a longer one may not be held); ``memorized`` marks a row whose
    every target was memorized by the rule the law and ``lawfit.carrier_bits`` use,
    ``loss_after`` at or below ln 2 (``exact_match`` of 1 where ``loss_after`` is absent):
    a lower bound, as a longer target could store more.

    Parameters
    ----------
    cells : pandas.DataFrame
        From :func:`carrier_cells`.
    quantity : str
        A bits column (``bits_stored``, ``bits_recalled``, ``bits_dl``).

    Returns
    -------
    pandas.DataFrame
        Setting columns, ``carrier``, ``modules``, ``size``, ``n_params``, ``n_bytes``,
        ``length``, ``mean``, ``se``, ``ci`` (half-width), ``n_targets``, ``memorized``.
    """
    if quantity not in cells:
        raise LawfitError(f"no column {quantity!r}; carrier_cells gives {sorted(cells)}.")
    setting = [c for c in SETTING if c in cells]
    size = ["carrier", "modules", "size", "n_params", "n_bytes"]
    per_target = (
        cells.assign(held=_memorized(cells))
        .groupby([*setting, *size, "length", "data_seed"], dropna=False)
        .agg(value=(quantity, "mean"), held=("held", "all"))
        .reset_index()
    )
    rows = []
    for key, grp in per_target.groupby([*setting, *size, "length"], dropna=False):
        mean, se, ci, n = _interval(grp["value"].to_numpy())
        rows.append((*key, mean, se, ci, n, bool(grp["held"].all())))
    cols = [*setting, *size, "length", "mean", "se", "ci", "n_targets", "memorized"]
    by_length = pd.DataFrame(rows, columns=cols)
    best = by_length.dropna(subset=["mean"]).sort_values("mean", kind="stable")
    best = best.groupby([*setting, "carrier", "modules", "size"], dropna=False).tail(1)
    return best.sort_values([*setting, "carrier", "n_params"]).reset_index(drop=True)


def _memorized(cells: pd.DataFrame) -> pd.Series:
    """Per cell, whether its target is memorized (``loss_after`` <= ln 2, as the law)."""
    if "loss_after" in cells:
        return cells["loss_after"] <= LN2
    return cells.get("exact_match", pd.Series(np.nan, index=cells.index)) >= 1


def _settings_of(points: pd.DataFrame) -> list[tuple]:
    setting = [c for c in SETTING if c in points]
    return [
        tuple(k) if isinstance(k, tuple) else (k,)
        for k in points.groupby(setting, dropna=False).groups
    ]


def _check_carriers(cells: pd.DataFrame) -> list[str]:
    carriers = sorted(cells["carrier"].unique()) if len(cells) else []
    if len(carriers) < 2:
        raise LawfitError(
            "the carrier figure compares carriers: it needs ok cells of at least two carriers "
            f"(modules) with n_params; found {carriers or 'none'}. Collect a carrier sweep "
            "(sweeps/carriers_cpu.toml)."
        )
    return carriers


def _reference_lines(ax, xlim, size: str, bytes_per_param: list[float]) -> None:
    """Draw the 2 and 3.6 bits/param references, per bytes/param ratio on the bytes axis."""
    x = np.geomspace(*xlim, 50)
    styles = dict(zip(ANCHORS_BITS_PER_PARAM.values(), ("--", ":"), strict=True))
    for val, ls in styles.items():
        if size == "n_params":
            ax.plot(
                x, val * x, ls=ls, color="0.35", lw=0.8, zorder=1, label=f"{val:g} bits/parameter"
            )
            continue
        for i, b in enumerate(sorted(bytes_per_param)):
            shade = str(0.35 + 0.3 * i / max(len(bytes_per_param) - 1, 1))
            ax.plot(
                x,
                val * x / b,
                ls=ls,
                color=shade,
                lw=0.8,
                zorder=1,
                label=f"{val:g} bits/parameter at {b:g} B/parameter",
            )


def _draw_panel(
    ax, points: pd.DataFrame, size: str, colors: dict, markers: dict, base: float = np.nan
) -> None:
    """One panel: every carrier's capacity points against ``size``, log-log.

    ``base``, where finite, is the untrained model's floor of the quantity, shaded.
    """
    carriers = list(colors)
    positive = points["mean"] > 0
    floor = points.loc[positive, "mean"].min() / 3 if positive.any() else 1.0
    xs = points[size].dropna()
    xlim = (xs.min() / 1.5, xs.max() * 1.5) if len(xs) else (1.0, 10.0)
    for i, carrier in enumerate(carriers):
        p = points[points["carrier"] == carrier].dropna(subset=[size]).sort_values(size)
        if not len(p):
            continue
        x = p[size].to_numpy(float) * DODGE ** (i - (len(carriers) - 1) / 2)
        y = p["mean"].to_numpy(float)
        err = p["se"].to_numpy(float)
        c, mk = colors[carrier], markers[carrier]
        up = y > 0
        ax.plot(x[up], y[up], "-", color=c, lw=0.9, zorder=2)
        ax.errorbar(
            x[up],
            y[up],
            yerr=np.where(np.isfinite(err[up]), err[up], 0),
            fmt=mk,
            color=c,
            ms=3.5,
            elinewidth=0.7,
            capsize=1.5,
            zorder=3,
            mfc=c,
            label=carrier,
        )
        held = up & p["memorized"].to_numpy(bool)
        if held.any():
            ax.plot(x[held], y[held] * 1.35, "^", color=c, ms=3, mfc="white", zorder=4, label=HELD)
        if (~up).any():
            ax.plot(
                x[~up],
                np.full((~up).sum(), floor),
                "v",
                color=c,
                mfc="white",
                ms=3.5,
                zorder=3,
                label=NONE,
            )
    bpp = sorted(points["n_bytes"].div(points["n_params"]).dropna().round(6).unique())
    _reference_lines(ax, xlim, size, bpp)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*xlim)
    # the references stay in view: the lowest 3.6 bits/parameter line at the left edge
    anchor = (
        max(ANCHORS_BITS_PER_PARAM.values())
        * xlim[0]
        / (max(bpp) if size == "n_bytes" and bpp else 1.0)
    )
    top = max(points["mean"].max() * 2 if positive.any() else 10.0, anchor * 1.5)
    ax.set_ylim(floor / 1.5, top)
    if np.isfinite(base) and base > 0:
        ax.axhspan(floor / 1.5, base, color="0.88", lw=0, zorder=0, label="untrained model's floor")
    _log_ticks(ax, "x")
    _log_ticks(ax, "y")


def _log_ticks(ax, axis: str) -> None:
    """Plain-number ticks on a log axis: 1-2-5 per decade over a short range, else decades.

    A range too narrow to hold two such ticks (one carrier size) gets a few evenly spaced
    round ticks instead of matplotlib's fallback, whose labels overlap on a narrow panel.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    subs = (1.0, 2.0, 5.0) if np.log10(hi / lo) <= 1.3 else (1.0,)
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    ticks = [m * 10.0**k for k in decades for m in subs if lo <= m * 10.0**k <= hi]
    if len(ticks) < 2:
        ticks = [
            t
            for t in MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
            if lo <= t <= hi
        ]
    a.set_major_locator(FixedLocator(ticks))
    a.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.10g}"))
    a.set_minor_formatter(NullFormatter())


def _base_floor(cells: pd.DataFrame, names: list[str], key: tuple) -> float:
    """The largest ``bits_stored_base`` of a setting's cells (NaN where not computed)."""
    if "bits_stored_base" not in cells:
        return np.nan
    sel = np.logical_and.reduce([cells[n] == v for n, v in zip(names, key, strict=True)])
    return float(cells.loc[sel, "bits_stored_base"].max())


def _setting_title(key: tuple, names: list[str]) -> str:
    parts = dict(zip(names, key, strict=True))
    title = str(parts.get("task", ""))
    if "random_ratio" in parts:
        title += f", random ratio {float(parts['random_ratio']):g}"
    if parts.get("objective") not in (None, "sft"):
        title += f", {parts['objective']}"
    return title


@styled
def plot_carriers(cells: pd.DataFrame, *, axes=None):
    """Bits stored and recalled against parameters and bytes, a series per carrier.

    One row of four panels per setting (task × random ratio): bits stored against trainable
    parameters and against bytes, then bits recalled exactly against both. Each point is a carrier
    of one size at the target length that stores the most (mean over target sequences, bars ±1
    standard error over them where there are several; :func:`carrier_points`); hollow up-triangles
    above a point: every target memorized (``loss_after`` <= ln 2, the law's rule; a lower bound);
    hollow down-triangles at the bottom: 0 bits; grey band on the bits-stored panels: the untrained
    model's floor (``bits_stored_base``, the largest over the setting's cells), what a carrier that
    stored nothing still shows. Carriers of equal size are dodged by a factor 1.06 along x so that
    matched sizes stay visible. References: 2 bits/parameter (dashed, Allen-Zhu & Li) and 3.6
    (dotted, Morris et al. 2025); on the bytes axes the same references are drawn at each
    bytes-per-parameter ratio present (float32 weight deltas 4 B, bf16 carriers 2 B; lighter = more
    bytes per parameter).

    Parameters
    ----------
    cells : pandas.DataFrame
        From :func:`carrier_cells` (≥ 2 carriers).
    axes : array of Axes, optional
        ``(n_settings, 4)`` axes to draw into.

    Returns
    -------
    matplotlib.figure.Figure
    """
    carriers = _check_carriers(cells)
    points = {q: carrier_points(cells, q) for q in BITS}
    names = [c for c in SETTING if c in cells]
    keys = _settings_of(points["bits_stored"])
    if axes is None:
        fig, axes = new_figure(
            DOUBLE, 1.9 * len(keys) + 0.5, nrows=len(keys), ncols=4, squeeze=False
        )
    else:
        axes = np.asarray(axes).reshape(len(keys), 4)
        fig, _ = fig_ax(axes[0, 0])
    colors = {c: CARRIER_COLORS[i % len(CARRIER_COLORS)] for i, c in enumerate(carriers)}
    markers = {c: _MARKERS[i % len(_MARKERS)] for i, c in enumerate(carriers)}
    for row, key in enumerate(keys):
        for col, (quantity, size) in enumerate((q, s) for q in BITS for s in SIZES):
            pts = points[quantity]
            sel = np.logical_and.reduce([pts[n] == v for n, v in zip(names, key, strict=True)])
            ax = axes[row, col]
            base = _base_floor(cells, names, key) if quantity == "bits_stored" else np.nan
            _draw_panel(ax, pts[sel], size, colors, markers, base)
            ax.set_xlabel(SIZES[size] if row == len(keys) - 1 else "")
            ax.set_ylabel(BITS[quantity] if col == 2 else "")
            if row == 0:
                ax.set_title(f"{BITS[quantity]} / {_PER[size]}", fontsize=7)
        axes[row, 0].set_ylabel(f"{_setting_title(key, names)}\n{BITS['bits_stored']}")
    handles = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    handles = {k: handles[k] for k in sorted(handles, key=lambda k: k not in colors)}
    for label, marker in ((HELD, "^"), (NONE, "v")):  # one grey key for every carrier's marks
        if label in handles:
            handles[label] = Line2D([], [], ls="", marker=marker, color="0.35", mfc="white", ms=4)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="outside lower center",
        ncol=min(4, len(handles)),
        fontsize=6.3,
    )
    return fig
