"""Capacity planning from a fitted law, and bits stored per adapter parameter.

:func:`predict_capacity` inverts a fitted law on every bootstrap draw: the rank (or
parameter count) needed to reach a target at a given length, and the longest target a
given capacity can hold. :func:`bits_per_parameter` measures how many bits the adapters
stored, by default as information (:mod:`lawfit.information`: Σₜ max(0, Hₜ − CE_after,ₜ/ln 2),
with the ΔL bits Σₜ log₂ p_after − log₂ p_before and the bits recalled beside it), and compares
bits per trainable parameter with the ~2 (Allen-Zhu & Li) and ~3.6 (Morris et al. 2025)
anchors, which count information too.

The modules: :mod:`~lawfit.capacity.bits` (bits stored per parameter, the literature
anchors and the beyond-known-capacity flag), :mod:`~lawfit.capacity.prediction`
(:func:`predict_capacity`, its result and the bits per parameter its answers imply) and
:mod:`~lawfit.capacity.inversion` (the law inverted on every draw, and the intervals of
its answers).
"""

from __future__ import annotations

# the names marked noqa are re-exported: other modules import them from lawfit.capacity,
# as when it was one module
from lawfit.capacity.bits import (
    ANCHORS_BITS_PER_PARAM,
    KNOWN_CAPACITY_BITS_PER_PARAM,
    BitsResult,
    beyond_known_capacity,
    bits_per_parameter,
    implied_bits_per_param,  # noqa: F401
    largest_bits,  # noqa: F401
)
from lawfit.capacity.prediction import (
    SHOWN_COLUMNS,  # noqa: F401
    CapacityPrediction,
    _loss_before_fn,  # noqa: F401
    predict_capacity,
    prediction_capacity_use,  # noqa: F401
)
from lawfit.protocol import saved_as

__all__ = [
    "ANCHORS_BITS_PER_PARAM",
    "BitsResult",
    "CapacityPrediction",
    "KNOWN_CAPACITY_BITS_PER_PARAM",
    "beyond_known_capacity",
    "bits_per_parameter",
    "predict_capacity",
]

# saved files keep naming these classes as this package's, as when it was one module
saved_as(__name__, BitsResult, CapacityPrediction)
