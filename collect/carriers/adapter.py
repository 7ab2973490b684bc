"""What attaching a carrier returns: an adapter that may be written without training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collect.adapters import Adapter


@dataclass
class CarrierAdapter(Adapter):
    """An attached carrier: an :class:`~collect.adapters.Adapter` that may be written untrained.

    ``n_params`` counts its trainable (or, for ``skv``, stored) scalars and ``n_bytes`` their
    bytes in the model's dtype, the precision the carrier is held in.

    ``write`` is None for carriers written by training. For a memory written without
    training (``skv``) it is a callable taking the cell's :class:`collect.probe.Batch`: it
    fills the memory from the batch's rows, after ``loss_before`` was measured and in place
    of the training steps.
    """

    write: Callable[[Any], None] | None = None
