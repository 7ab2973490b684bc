"""One capacity law across memory carriers: LoRA, memory tokens, KV memory.

A carrier is where a memory lives (DESIGN.md §1, "Carriers"). In the data contract it is the
``modules`` coordinate: a LoRA placement such as ``mlp_block@20`` sized by ``rank``, or a
carrier spec sized by the spec itself (``memtok:m``, ``kv:m@k``, ``skv:k@LAYERS``, at rank 1).
Every size counts as ``n_params`` (trainable or stored scalars) or ``n_bytes`` (those scalars
at storage precision; derived by :func:`lawfit.data.with_n_bytes` when not recorded).

:func:`carrier_law`
    Fits the law (default ΔL = C·N^α·ℓ^(−β) + b) per carrier against its size N, then once
    more with the exponents shared across carriers (each carrier keeps its own C and b), and
    compares the two by AICc, BIC and a likelihood-ratio test at level ``significance``.
:func:`carrier_bits`
    Bits per parameter and bits per byte per carrier, with bootstrap intervals, from the
    information bits of :func:`lawfit.bits_per_parameter`. :meth:`CarrierBits.predict` gives
    the smallest carrier of each kind that stores N bits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from lawfit import _validate as V
from lawfit.bootstrap import MIN_DISTINCT_DRAWS, cluster_column, cluster_index
from lawfit.budget import with_still_improving
from lawfit.capacity import beyond_known_capacity, bits_per_parameter, largest_bits
from lawfit.data import GROUP_DIMS, as_frame, load_data, with_n_bytes, with_runs
from lawfit.errors import LawfitError
from lawfit.forms import Form, get_form
from lawfit.information import BIT_KINDS
from lawfit.protocol import Flag, SummaryText
from lawfit.shared import (
    GROUP,
    SharedExponents,
    TableResult,
    _check_options,
    compare_shared,
    fit_options,
)
from lawfit.shared import _PerGroup as _PerCarrier  # noqa: F401  (laws saved before the move)

__all__ = [
    "SIZES",
    "CarrierBits",
    "CarrierCapacity",
    "CarrierLaw",
    "carrier_bits",
    "carrier_frame",
    "carrier_law",
    "carrier_of",
]

#: Size measures of a carrier, and the data variable of each.
SIZES = {"params": "n_params", "bytes": "n_bytes"}
#: Carrier specs of ``collect`` (collect/carriers.py): kind, size knob, placement.
_SPEC = re.compile(r"^(?P<kind>memtok|kv|skv):(?P<knob>[1-9]\d*)(@(?P<at>.+))?$")


def carrier_of(modules: str) -> tuple[str, str, str]:
    """Carrier label, size-knob name and spec template of a ``modules`` value.

    Parameters
    ----------
    modules : str
        A ``modules`` coordinate: ``memtok:16``, ``kv:8@20``, ``skv:64@all`` or a LoRA
        placement such as ``mlp_block@20``.

    Returns
    -------
    label, knob, template : str
        ``("memtok", "m", "memtok:{}")``, ``("kv@20", "m", "kv:{}@20")``,
        ``("skv@all", "k", "skv:{}@all")``; a LoRA placement is its own label with knob
        ``"rank"`` and template ``"<placement>, rank {}"``.

    Examples
    --------
    >>> carrier_of("kv:8@20")
    ('kv@20', 'm', 'kv:{}@20')
    >>> carrier_of("mlp_block@20")
    ('mlp_block@20', 'rank', 'mlp_block@20, rank {}')
    """
    text = str(modules).strip()
    match = _SPEC.match(text)
    if match is None:
        return text, "rank", f"{text}, rank {{}}"
    kind, at = match["kind"], match["at"]
    knob = "k" if kind == "skv" else "m"
    if at is None:
        return kind, knob, f"{kind}:{{}}"
    return f"{kind}@{at}", knob, f"{kind}:{{}}@{at}"


def knob_value(modules: str, rank: float) -> float:
    """Return the size knob of one cell: m or k from a carrier spec, else the LoRA rank.

    Examples
    --------
    >>> knob_value("kv:4@27", 1)
    4.0
    >>> knob_value("mlp_block@20", 2)
    2.0
    """
    match = _SPEC.match(str(modules).strip())
    return float(match["knob"]) if match else float(rank)


def _check_size(size: str) -> str:
    if size not in SIZES:
        raise LawfitError(
            f"size must be one of {sorted(SIZES)} (trainable parameters or bytes "
            f"at storage precision); got {size!r}."
        )
    return SIZES[size]


def _one_setting(data) -> None:
    """Refuse data with several settings other than carriers (select one first)."""
    if isinstance(data, pd.DataFrame):
        multi = [
            c
            for c in GROUP_DIMS
            if c != "modules" and c in data.columns and data[c].nunique(dropna=False) > 1
        ]
        has_modules = "modules" in data.columns
    else:
        multi = [d for d in GROUP_DIMS if d != "modules" and d in data.dims and data.sizes[d] > 1]
        has_modules = "modules" in data.dims or "modules" in data.coords
    if not has_modules:
        raise LawfitError(
            "the carriers are told apart by the 'modules' dim (e.g. "
            "'mlp_block@20', 'memtok:16', 'kv:8@20'); the data has none. Collect "
            "carriers with collect run --modules ..., or add a modules column."
        )
    if multi:
        raise LawfitError(
            f"one law across carriers is fitted within one setting; the data has "
            f"grouping dim(s) of size > 1 besides 'modules': {multi}. Select one "
            f"first, e.g. ds.sel({multi[0]}=...)."
        )


def carrier_frame(data, *, size: str = "params", dtype: str | None = None):
    """Usable cells of every carrier as a tidy frame, with their size.

    Parameters
    ----------
    data : xarray.Dataset, pandas.DataFrame or path
        One setting of a carrier sweep (a ``modules`` dim, ``n_params``).
    size : {"params", "bytes"}
        Size measure: ``n_params`` or ``n_bytes``.
    dtype : str, optional
        Storage dtype for deriving ``n_bytes`` when the data does not record it.

    Returns
    -------
    frame : pandas.DataFrame
        One row per usable cell with ``carrier``, ``knob``, the size column, ``length``,
        ``loss_reduction`` and what else the data has (``loss_after``, seeds, ...).
    notes : list of str
        How the size was obtained.
    """
    col = _check_size(size)
    data = load_data(data)
    _one_setting(data)
    notes = []
    if size == "bytes":
        data, note = with_n_bytes(data, dtype)
        notes += [note] if note else []
    frame, _ = as_frame(data, variables=("loss_reduction",), by="modules", inputs=(col, "length"))
    labels = frame["modules"].map(lambda m: carrier_of(m)[0])
    rank = frame["rank"] if "rank" in frame else pd.Series(1.0, index=frame.index)
    knob = [knob_value(m, r) for m, r in zip(frame["modules"], rank, strict=True)]
    return frame.assign(carrier=labels.to_numpy(), knob=knob), notes


# ----------------------------------------------------------------------- the law
def _sized_form(form, col: str) -> Form:
    """Return the form with its capacity input (``rank`` or ``n_params``) read from ``col``."""
    base = get_form(form)
    caps = [i for i in base.inputs if i in ("rank", "n_params", "n_bytes")]
    if len(caps) != 1:
        raise LawfitError(
            f"a carrier law needs a form with one capacity input (rank, n_params "
            f"or n_bytes); form {base.name!r} takes {base.inputs}."
        )
    return replace(base, inputs=tuple(col if i == caps[0] else i for i in base.inputs))


@dataclass(frozen=True)
class CarrierLaw(SharedExponents):
    """The law per carrier, the law with shared exponents, and their comparison.

    A :class:`~lawfit.shared.SharedExponents` over carriers, whose tables name the law
    ``model`` and the group ``carrier``.

    Attributes
    ----------
    exponents : pandas.DataFrame
        One row per (model, carrier, parameter): ``estimate``, ``low``, ``high`` (the fit's
        default interval), ``n_obs``. ``model`` is ``"separate"`` (one law per carrier) or
        ``"shared"`` (carrier ``"all"`` for a shared parameter).
    comparison : pandas.DataFrame
        Two rows (``model`` ``separate``, ``shared``), as in
        :class:`~lawfit.shared.SharedExponents`.
    fits : dict
        Carrier label → :class:`~lawfit.FitResult` of its own law.
    shared_fit : FitResult or None
        The law with shared exponents (None with fewer than two fitted carriers).
    size : str
        ``"params"`` or ``"bytes"``.
    shared, significance, verdict, notes, flags
        As in :class:`~lawfit.shared.SharedExponents` (flag ``carrier_skipped`` for a
        carrier without a law of its own).
    """

    _noun = "carrier"

    size: str = "params"

    def _title(self) -> str:
        return f"Capacity law across carriers (size in {SIZES[self.size]})"


def carrier_law(
    data,
    *,
    size: str = "params",
    form: str | Form = "power_law",
    shared: Sequence[str] = ("alpha", "beta"),
    exclude: str | float | None = "memorized",
    space: str = "linear",
    bootstrap: int = 0,
    unit: str = "cell",
    confidence_level: float = 0.95,
    significance: float = 0.05,
    dtype: str | None = None,
    rng: int | np.random.Generator | None = None,
    cluster: str | None = None,
) -> CarrierLaw:
    """Fit the law per carrier against its size, and test whether carriers share exponents.

    Parameters
    ----------
    data : xarray.Dataset, pandas.DataFrame or path
        One setting of a carrier sweep: ``loss_reduction`` over ``modules``, ``rank`` and
        ``length``, with ``n_params`` (and ``n_bytes`` or a recorded ``dtype``).
    size : {"params", "bytes"}
        The size the law is fitted against: ``n_params`` or ``n_bytes``.
    form : str or Form
        The law; its capacity input (``rank``) is read as the size. Default the paper's
        power law C·N^α·ℓ^(−β) + b.
    shared : sequence of str
        Parameters held common across carriers in the restricted law (default the two
        exponents); the others are fitted per carrier.
    exclude : {"memorized"} or float or None
        Passed to :func:`lawfit.fit` (depends on the data only: every law sees the same cells).
    space : {"linear", "log", "auto"}
        Fit ΔL or log ΔL, as in :func:`lawfit.fit` (``"auto"``: one scale for every law,
        chosen on the shared law as :func:`lawfit.shared_exponents` does). The
        likelihood-ratio test assumes one error variance on that scale: with multiplicative
        noise (a spread that grows with ΔL) fit in ``"log"``, or the test rejects shared
        exponents too often.
    bootstrap : int
        Bootstrap replicates of every law (intervals of ``exponents``).
    unit : str
        Resampling unit of the bootstrap (``"cell"``, ``"seed"``, ``"data_seed"``, ``"run"``,
        ``"residual"``, ``"wild"``), as in :func:`lawfit.fit`.
    confidence_level : float
        Level of the intervals.
    significance : float
        Level of the likelihood-ratio test of shared exponents.
    dtype : str, optional
        Storage dtype when ``n_bytes`` must be derived and the data does not record it.
    rng : int or numpy.random.Generator, optional
        Seed of the bootstrap.
    cluster : str, optional
        Give the intervals of ``exponents`` as cluster-robust ones over this column
        (``"data_seed"``: target sequences shared by the carriers; CR2 with
        Bell-McCaffrey dof, :mod:`lawfit.robust`), the interval calibrated for few
        sequences, and test shared exponents with the cluster-robust Wald test
        (:mod:`lawfit.cluster_wald`; it needs more sequences than restrictions).
        Default: the fits' own intervals (bootstrap if any, else Wald) and the F test.

    Returns
    -------
    CarrierLaw
        Parameters per carrier, the shared law, and their comparison.

    Raises
    ------
    LawfitError
        Bad options, data without carriers, or no carrier whose law can be fitted.
    """
    base, shared, significance = _check_options(form, shared, significance, space)
    frame, notes = carrier_frame(data, size=size, dtype=dtype)
    kw = fit_options(exclude, space, bootstrap, unit, confidence_level, rng)
    out = compare_shared(
        frame.rename(columns={"carrier": GROUP}),
        _sized_form(base, SIZES[size]),
        shared=shared,
        kw=kw,
        significance=significance,
        cluster=cluster,
        drop=("modules", "knob"),
        noun="carrier",
    )
    names = {"law": "model", GROUP: "carrier"}
    return CarrierLaw(
        **{
            **out,
            "exponents": out["exponents"].rename(columns=names),
            "comparison": out["comparison"].rename(columns=names),
            "notes": (*notes, *out["notes"]),
        },
        by=("modules",),
        size=size,
        shared=shared,
        significance=significance,
    )


# ----------------------------------------------------------------------- bits per size
@dataclass(frozen=True)
class CarrierBits(TableResult):
    """Bits per parameter and per byte of every carrier, with bootstrap intervals.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per carrier: ``bits_per_param`` and ``bits_per_byte`` with ``_low`` and
        ``_high``, ``n_sizes``, ``n_cells``, ``size_min``/``size_max`` (n_params),
        ``ratio_min``/``ratio_max`` (bits per parameter of its sizes, one by one: far apart,
        capacity is not proportional to size), ``params_per_knob`` (n_params per unit of
        rank, m or k), ``bytes_per_param``, ``lower_bound`` (a size reached its bits on a
        memorized target, or at the longest target collected for it),
        ``n_still_improving`` (capacity cells still gaining more than 1 % of their ΔL
        over their last 10 % of steps when they stopped, by
        :func:`lawfit.convergence`: their bits are lower bounds, flag ``not_converged``;
        NaN without trajectories) and ``bits_kind``.
    cells : pandas.DataFrame
        The capacity cells: per carrier and size, the cells at the length where the mean
        bits are largest (:func:`lawfit.bits_per_parameter`'s ``by_rank`` rule).
    bits : str
        ``"stored"``, ``"recalled"`` or ``"dl"``.
    confidence_level : float
        Level of the intervals.
    notes, flags
        Context and warnings.
    draws : numpy.ndarray or None
        Bits per parameter on every bootstrap draw, shape (carriers in ``table`` order, R).
    """

    table: pd.DataFrame
    cells: pd.DataFrame
    bits: str
    confidence_level: float
    notes: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    draws: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        SummaryText
            One line per carrier, then flags and notes.
        """
        pct = f"{100 * self.confidence_level:g} %"
        out = [
            f"Bits per parameter and per byte, by carrier ({self.bits} bits, {pct} CI)",
            "=" * 60,
        ]
        for r in self.table.itertuples():
            out.append(
                f"{r.carrier}: {r.bits_per_param:.3g} [{r.bits_per_param_low:.3g}, "
                f"{r.bits_per_param_high:.3g}] bits/param, {r.bits_per_byte:.3g} "
                f"[{r.bits_per_byte_low:.3g}, {r.bits_per_byte_high:.3g}] bits/byte over "
                f"{r.n_sizes} size(s)"
                + (" (lower bound)" if r.lower_bound else "")
                + (
                    f" ({r.n_still_improving:.0f} of {r.n_cells} cells still improving)"
                    if r.n_still_improving > 0
                    else ""
                )
            )
        out += [f"flag: {f}" for f in self.flags] + [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))

    def predict(self, bits) -> CarrierCapacity:
        """Smallest carrier of each kind that stores ``bits`` bits (see :func:`carrier_bits`).

        Parameters
        ----------
        bits : float or array_like
            Bits to store (of the kind this result counts).

        Returns
        -------
        CarrierCapacity
            Per carrier and target: the parameters and bytes needed with intervals, and
            the smallest size knob (rank, m or k) that holds them.
        """
        return _smallest_carriers(self, bits)


def carrier_bits(
    data,
    *,
    bits: str = "stored",
    bootstrap: int = 1000,
    unit: str = "cell",
    confidence_level: float = 0.95,
    dtype: str | None = None,
    entropy=None,
    rng: int | np.random.Generator | None = None,
) -> CarrierBits:
    """Bits per parameter and per byte of each carrier, with bootstrap intervals.

    For each carrier and size, the capacity cells are those of the length at which the mean
    bits (over replicates) are largest, the rule of :func:`lawfit.bits_per_parameter`'s
    ``by_rank``. A carrier's bits per parameter is the mean of bits / n_params over its
    capacity cells (bits per byte: of bits / n_bytes). The interval resamples the capacity
    cells (``unit="cell"``, within each carrier) or whole clusters (``"seed"``,
    ``"data_seed"``, ``"run"``: shared by every carrier), the chosen lengths held fixed, and
    is widened for few units (Hesterberg's expanded percentile interval).

    Parameters
    ----------
    data : xarray.Dataset or path
        One setting of a carrier sweep with per-token probabilities (for information bits),
        a ``modules`` dim and ``n_params``.
    bits : {"stored", "recalled", "dl"}
        Which bits (:mod:`lawfit.information`): information stored (default), the entropy of
        the entries recalled exactly, or ΔL bits (not information).
    bootstrap : int
        Bootstrap replicates (0: no interval).
    unit : {"cell", "seed", "data_seed", "run"}
        Resampling unit.
    confidence_level : float
        Level of the intervals.
    dtype : str, optional
        Storage dtype when ``n_bytes`` must be derived and the data does not record it.
    entropy : float or xarray.DataArray, optional
        Content entropy per token (bits), as in :func:`lawfit.bits_per_parameter`.
    rng : int or numpy.random.Generator, optional
        Seed.

    Returns
    -------
    CarrierBits
        The per-carrier table, the capacity cells and the draws.
    """
    if bits not in BIT_KINDS:
        raise LawfitError(f"bits must be one of {sorted(BIT_KINDS)}; got {bits!r}.")
    V.one_of(unit, "unit", ("cell", "seed", "data_seed", "run"))
    level = V.confidence_level(confidence_level)
    bootstrap = V.bootstrap_count(bootstrap)
    data = load_data(data)
    _one_setting(data)
    res = bits_per_parameter(data, kind=bits, entropy=entropy)
    notes, flags = list(res.notes), list(res.flags)
    if "n_params" not in res.cells:
        raise LawfitError(
            "bits per parameter need 'n_params' over (model, modules, rank); the "
            "data has none. Collect it (collect records it for every carrier)."
        )
    cells = _with_bytes(res.cells, data, dtype, notes)
    cells = _capacity_cells(with_still_improving(cells, data, notes))
    table, draws = _ratios(cells, bootstrap, unit, level, V.random_generator(rng), notes)
    no_interval = table.loc[table["bits_per_param_low"].isna(), "carrier"].tolist()
    if bootstrap and no_interval:
        flags.append(
            Flag(
                "bootstrap_degenerate",
                f"{', '.join(no_interval)}: every bootstrap draw gives the same mean "
                f"(capacity cells in one {unit} cluster, or one cell): no interval (NaN); "
                "collect the capacity sizes on more target sequences, or use unit='cell'",
            )
        )
    if table["n_still_improving"].gt(0).any():
        flags.append(_not_converged_flag(table))
    if table["lower_bound"].any():
        flags.append(
            Flag(
                "lower_bound",
                "some carriers reached their largest bits on a memorized target or at "
                "the longest target collected for a size: their bits per parameter are "
                "lower bounds (column lower_bound); collect longer targets",
            )
        )
    return CarrierBits(
        table=table,
        cells=cells,
        bits=bits,
        confidence_level=level,
        notes=tuple(dict.fromkeys(notes)),
        flags=tuple(flags),
        draws=draws,
    )


def _with_bytes(cells: pd.DataFrame, data, dtype, notes) -> pd.DataFrame:
    """Add ``n_bytes`` to the bits table (NaN, with a note, when it cannot be had)."""
    try:
        data, note = with_n_bytes(data, dtype)
    except LawfitError as exc:
        notes.append(f"bits per byte not computed: {exc}")
        return cells.assign(n_bytes=np.nan)
    notes += [note] if note else []
    nb = data["n_bytes"]
    if isinstance(nb, pd.Series):
        return cells.assign(n_bytes=nb.to_numpy(float))
    nb = nb.to_dataframe(name="n_bytes").reset_index()
    keys = [c for c in nb.columns if c in cells.columns and c != "n_bytes"]
    return cells.merge(nb[[*keys, "n_bytes"]], on=keys, how="left")


def _not_converged_flag(table: pd.DataFrame) -> Flag:
    """Flag the carriers whose capacity cells were still learning when they stopped."""
    slow = table[table["n_still_improving"] > 0]
    which = ", ".join(
        f"{r.carrier} ({r.n_still_improving:.0f} of {r.n_cells})" for r in slow.itertuples()
    )
    return Flag(
        "not_converged",
        f"capacity cells still improving when they stopped (best ΔL grew by more than 1 % "
        f"over their last 10 % of steps): {which}. Their bits per parameter are lower "
        "bounds, and compare with converged carriers only as such; train them on "
        "(collect run --extend-from with [train] converge_from)",
    )


def _capacity_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Per carrier and size, the cells of the length with the most mean bits.

    ``at_longest`` marks a size whose most bits sit at the longest length collected for it
    (:func:`lawfit.capacity.largest_bits`): its capacity is only a lower bound.
    """
    rank = cells["rank"] if "rank" in cells else pd.Series(1.0, index=cells.index)
    cells = cells.assign(
        carrier=cells["modules"].map(lambda m: carrier_of(m)[0]).to_numpy(),
        knob=[knob_value(m, r) for m, r in zip(cells["modules"], rank, strict=True)],
    )
    sizes = ["carrier", "modules", "knob"]
    mean = cells.groupby([*sizes, "length"], as_index=False)["bits"].mean()
    best = largest_bits(mean, sizes)[[*sizes, "length", "at_longest"]]
    return cells.merge(best, on=[*sizes, "length"]).reset_index(drop=True)


def _ratio(b, denom, w, n, level) -> dict:
    """Mean of the per-cell ratios b / denom, with an expanded percentile interval.

    The interval is the bootstrap percentile interval of the weighted means (weights ``w``,
    one row per draw) widened about the estimate by t₍ₙ₋₁₎/z · √(n/(n−1)), with n the
    resampled units: Hesterberg's (2015) expanded percentile interval, which corrects the
    narrowness of the plain percentile interval of a mean over few cells. Draws that all
    give one mean (a carrier whose cells sit in one cluster) give no interval: NaN bounds
    and NaN draws (:data:`~lawfit.bootstrap.MIN_DISTINCT_DRAWS`).
    """
    with np.errstate(all="ignore"):
        r = b / denom
    est = float(r.mean()) if np.isfinite(r).all() else math.nan
    if w is None or not np.isfinite(est):
        return {"estimate": est, "low": math.nan, "high": math.nan, "draws": None}
    with np.errstate(all="ignore"):
        d = (w @ r) / w.sum(axis=1)
    d = d[np.isfinite(d)]  # a cluster draw that left the carrier out has no mean
    n = max(int(n), 2)
    q = 0.5 + level / 2
    widen = stats.t.ppf(q, n - 1) / stats.norm.ppf(q) * math.sqrt(n / (n - 1))
    d = est + widen * (d - est)
    if np.unique(d).size < MIN_DISTINCT_DRAWS:  # e.g. every capacity cell on one sequence
        return {
            "estimate": est,
            "low": math.nan,
            "high": math.nan,
            "draws": np.full_like(d, np.nan),
        }
    lo, hi = np.quantile(d, [1 - q, q])
    return {"estimate": est, "low": float(lo), "high": float(hi), "draws": d}


def _carrier_row(sub: pd.DataFrame, w, n, level) -> tuple[dict, np.ndarray | None]:
    """One carrier's bits per parameter and per byte, and what sizes it in knobs."""
    b = sub["bits"].to_numpy(float)
    npar, nby = sub["n_params"].to_numpy(float), sub["n_bytes"].to_numpy(float)
    per_param, per_byte = _ratio(b, npar, w, n, level), _ratio(b, nby, w, n, level)
    label, knob, template = carrier_of(sub["modules"].iloc[0])
    row = {"carrier": label}
    for name, r in (("bits_per_param", per_param), ("bits_per_byte", per_byte)):
        row.update({name: r["estimate"], f"{name}_low": r["low"], f"{name}_high": r["high"]})
    per_size = sub.groupby("knob")[["bits", "n_params"]].sum()
    ratio = per_size["bits"] / per_size["n_params"]
    ppk = npar / sub["knob"].to_numpy(float)
    bpp = nby / npar
    row.update(
        n_sizes=len(per_size),
        n_cells=len(sub),
        size_min=float(npar.min()),
        size_max=float(npar.max()),
        ratio_min=float(ratio.min()),
        ratio_max=float(ratio.max()),
        params_per_knob=_constant(ppk),
        bytes_per_param=_constant(bpp),
        knob=knob,
        template=template,
        lower_bound=bool(sub["saturated"].any() or sub["at_longest"].any()),
        n_still_improving=float(sub["still_improving"].sum(min_count=1)),
        bits_kind="/".join(sorted(set(sub["bits_kind"].astype(str)))),
        n_draws=0 if per_param["draws"] is None else int(per_param["draws"].size),
    )
    return row, per_param["draws"]


def _constant(values: np.ndarray) -> float:
    """Return the common value of an array (NaN when its values differ or are unknown)."""
    v = np.asarray(values, float)
    if v.size == 0 or not np.isfinite(v).all() or np.ptp(v) > 1e-9 * np.abs(v).max():
        return math.nan
    return float(v[0])


def _ratios(cells, bootstrap, unit, level, gen, notes):
    """Per-carrier mean bits per size, with the bootstrap draws of bits per parameter."""
    labels = sorted(cells["carrier"].unique())
    weights, units = _bootstrap_weights(cells, labels, bootstrap, unit, gen, notes)
    rows, draws = [], []
    for c in labels:
        sub = (cells["carrier"] == c).to_numpy()
        row, d = _carrier_row(
            cells.loc[sub],
            None if weights is None else weights[:, sub],
            np.unique(units[sub]).size,
            level,
        )
        rows.append(row)
        draws.append(d)
    notes.append(
        "bits per parameter = mean of bits / n_params over each carrier's capacity "
        "cells (per size, the length with the most mean bits), with an expanded "
        "percentile interval; predictions assume capacity proportional to size "
        "(compare ratio_min and ratio_max)"
    )
    if weights is None:
        return pd.DataFrame(rows), None
    width = max(d.size for d in draws)  # cluster draws without a carrier are left out
    padded = [np.pad(d, (0, width - d.size), constant_values=np.nan) for d in draws]
    return pd.DataFrame(rows), np.vstack(padded)


def _bootstrap_weights(cells, labels, bootstrap, unit, gen, notes):
    """Resampling weights (R, cells) and each cell's unit.

    ``unit="cell"`` resamples cells within each carrier; a cluster unit resamples clusters
    shared by every carrier.
    """
    n = len(cells)
    if unit == "cell":
        units = np.arange(n)
        if not bootstrap:
            return None, units
        W = np.zeros((bootstrap, n))
        for c in labels:
            idx = np.flatnonzero(cells["carrier"].to_numpy() == c)
            W[:, idx] = gen.multinomial(idx.size, np.full(idx.size, 1 / idx.size), size=bootstrap)
        return W, units
    cells = with_runs(cells)  # a run is one (seed, data_seed) pair
    cl = cluster_index(cells, unit, fix="unit='cell'")
    g = int(cl.max()) + 1
    notes.append(
        f"bootstrap over {g} {cluster_column(cells, unit)} clusters, shared by every carrier"
    )
    if not bootstrap:
        return None, cl
    return gen.multinomial(g, np.full(g, 1 / g), size=bootstrap)[:, cl].astype(float), cl


# ----------------------------------------------------------------------- predictions
@dataclass(frozen=True)
class CarrierCapacity(TableResult):
    """The smallest carrier of each kind that stores a number of bits.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (carrier, target): ``bits`` (the target), ``n_params_estimate``,
        ``_low``, ``_high`` (parameters needed: target / bits per parameter, on the estimate
        and on every draw), the same for ``n_bytes``, ``knob`` (``rank``, ``m`` or ``k``),
        ``knob_estimate``/``_low``/``_high`` (the smallest whole knob holding the target),
        ``spec`` (e.g. ``memtok:12``), ``bits_per_param`` (what the answer's size must
        store), ``extrapolated`` (outside the sizes measured) and ``beyond_known_capacity``.
    bits : str
        Which bits the targets count.
    confidence_level : float
        Level of the intervals.
    notes, flags
        Context and warnings (``extrapolated``, ``beyond_known_capacity``, ``lower_bound``).
    """

    table: pd.DataFrame
    bits: str
    confidence_level: float
    notes: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()

    def summary(self) -> SummaryText:
        """Plain-text summary.

        Returns
        -------
        SummaryText
            The table, flags and notes.
        """
        out = [f"Smallest carrier that stores the target ({self.bits} bits)", "=" * 50]
        cols = [
            "carrier",
            "bits",
            "spec",
            "n_params_estimate",
            "n_params_low",
            "n_params_high",
            "n_bytes_estimate",
            "extrapolated",
            "beyond_known_capacity",
        ]
        with pd.option_context(
            "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format
        ):
            out.append(self.table[[c for c in cols if c in self.table]].to_string(index=False))
        out += [f"flag: {f}" for f in self.flags] + [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def _smallest_carriers(res: CarrierBits, bits) -> CarrierCapacity:
    """Invert bits = (bits per parameter) × n_params for every carrier and target."""
    targets = np.atleast_1d(np.asarray(bits, float))
    if targets.size == 0 or not np.all(np.isfinite(targets) & (targets > 0)):
        raise LawfitError(f"bits must be positive numbers of bits to store; got {bits!r}.")
    rows = []
    for i, r in enumerate(res.table.itertuples()):
        d = None if res.draws is None else res.draws[i]
        for t in targets:
            rows.append(_smallest_row(r, t, d))
    table = pd.DataFrame(rows)
    flags = [f for f in res.flags if f.code == "lower_bound"]
    if table["extrapolated"].any():
        flags.append(
            Flag(
                "extrapolated",
                "some answers lie outside the sizes measured for "
                "their carrier (column extrapolated): capacity is assumed "
                "proportional to size there",
            )
        )
    if table["beyond_known_capacity"].any():
        flags.append(beyond_known_capacity(table["bits_per_param"], res.bits))
    notes = [
        "n_params needed = bits / (bits per parameter); interval from the bootstrap draws "
        "of bits per parameter; the knob is rounded up to a whole rank, m or k"
    ]
    return CarrierCapacity(
        table=table,
        bits=res.bits,
        confidence_level=res.confidence_level,
        notes=tuple(notes),
        flags=tuple(flags),
    )


def _needed(target: float, rate: float) -> float:
    """Return the parameters that store ``target`` bits at ``rate`` bits each (NaN: unknown)."""
    if not np.isfinite(rate):
        return math.nan
    return target / rate if rate > 0 else math.inf


def _smallest_row(r, target: float, draws) -> dict:
    """One carrier, one target: parameters, bytes and knob needed, with intervals."""
    from lawfit.capacity import KNOWN_CAPACITY_BITS_PER_PARAM

    est, lo, hi = (
        _needed(target, rate)
        for rate in (r.bits_per_param, r.bits_per_param_high, r.bits_per_param_low)
    )
    if draws is None:
        lo = hi = math.nan
    ppk = r.params_per_knob

    def knob(n):
        return float(math.ceil(n / ppk - 1e-9)) if np.isfinite(n) and np.isfinite(ppk) else n

    k_est = knob(est)
    spec = r.template.format(int(k_est)) if np.isfinite(k_est) and np.isfinite(ppk) else ""
    return {
        "carrier": r.carrier,
        "bits": target,
        "n_params_estimate": est,
        "n_params_low": lo,
        "n_params_high": hi,
        "n_bytes_estimate": est * r.bytes_per_param,
        "n_bytes_low": lo * r.bytes_per_param,
        "n_bytes_high": hi * r.bytes_per_param,
        "knob": r.knob,
        "knob_estimate": k_est,
        "knob_low": knob(lo),
        "knob_high": knob(hi),
        "spec": spec,
        "bits_per_param": r.bits_per_param,
        "extrapolated": bool(not (r.size_min <= est <= r.size_max)),
        "beyond_known_capacity": bool(r.bits_per_param > KNOWN_CAPACITY_BITS_PER_PARAM),
    }
