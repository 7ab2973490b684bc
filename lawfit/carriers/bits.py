"""Bits per parameter and per byte of every carrier: :func:`carrier_bits`.

It takes the information bits of :func:`lawfit.bits_per_parameter`, picks each carrier
size's capacity cells (the length with the most mean bits), adds ``n_bytes`` and the
convergence of the cells, and tabulates every carrier with
:mod:`~lawfit.carriers.bits_bootstrap`'s intervals in a :class:`CarrierBits`, whose
:meth:`CarrierBits.predict` gives the smallest carrier that stores a number of bits
(:mod:`~lawfit.carriers.smallest_carrier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit.budget import with_still_improving
from lawfit.capacity import bits_per_parameter, largest_bits
from lawfit.carriers.bits_bootstrap import _ratios, unbalanced_clusters
from lawfit.carriers.frame import _one_setting, carrier_of, knob_value
from lawfit.carriers.smallest_carrier import CarrierCapacity, _smallest_carriers
from lawfit.data import load_data, with_n_bytes
from lawfit.errors import LawfitError
from lawfit.information import BIT_KINDS
from lawfit.protocol import Flag, SummaryText
from lawfit.shared import TableResult


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
    is widened for few units (Hesterberg's expanded percentile interval). A cluster
    interval of a carrier some of whose sizes lack a cluster it has at others is flagged
    ``unbalanced_clusters``: it cannot see those sizes' spread between clusters.

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
    thin = unbalanced_clusters(cells, unit) if bootstrap else []
    if thin:
        flags.append(
            Flag(
                "unbalanced_clusters",
                f"{'; '.join(thin)}: the bootstrap resamples each size's cells only in the "
                "clusters it was collected in, so those carriers' intervals miss part of the "
                "spread between clusters and can be much too narrow; collect every capacity "
                "size on every cluster before quoting them",
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
