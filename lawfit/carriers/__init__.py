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

The modules: :mod:`~lawfit.carriers.frame` (:func:`carrier_of`, :func:`knob_value`,
:func:`carrier_frame`: a carrier's spec, size knob and size, and its cells),
:mod:`~lawfit.carriers.law` (:func:`carrier_law` and :class:`CarrierLaw`),
:mod:`~lawfit.carriers.bits` (:func:`carrier_bits` and :class:`CarrierBits`: the capacity
cells of each size), :mod:`~lawfit.carriers.bits_bootstrap` (each carrier's row of bits per
parameter and per byte, with its expanded percentile interval over the bootstrap draws) and
:mod:`~lawfit.carriers.smallest_carrier` (:class:`CarrierCapacity`: the smallest carrier
that stores N bits).
"""

from __future__ import annotations

# the names marked noqa are re-exported: other modules import them from lawfit.carriers,
# as when it was one module
from lawfit.carriers.bits import CarrierBits, carrier_bits
from lawfit.carriers.frame import SIZES, carrier_frame, carrier_of, knob_value  # noqa: F401
from lawfit.carriers.law import CarrierLaw, carrier_law
from lawfit.carriers.smallest_carrier import CarrierCapacity
from lawfit.protocol import saved_as
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

# saved files keep naming these classes as this package's, as when it was one module
saved_as(__name__, CarrierLaw, CarrierBits, CarrierCapacity)
