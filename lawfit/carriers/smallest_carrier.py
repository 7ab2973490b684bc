"""The smallest carrier of each kind that stores a number of bits.

:meth:`CarrierBits.predict <lawfit.carriers.CarrierBits.predict>` inverts bits = (bits per
parameter) × n_params for every carrier and target (:func:`_smallest_carriers`), on the
estimate and on every bootstrap draw, and rounds the size up to a whole knob: a
:class:`CarrierCapacity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lawfit.capacity import beyond_known_capacity
from lawfit.errors import LawfitError
from lawfit.protocol import Flag, SummaryText
from lawfit.shared import TableResult

if TYPE_CHECKING:
    from lawfit.carriers.bits import CarrierBits


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
