"""The contract's constants: its dims, its token-level variables, its schema version.

``GROUP_DIMS`` name a setting (one law each), ``REPLICATE_DIMS`` the replicates of a
cell, ``CELL_DIMS`` a cell (one training run); ``_INNER_DIMS`` are the dims below a cell
(``token``, ``step``) and ``_INNER_VARS`` the variables that live on them.
``SCHEMA_MAJOR`` is the newest major ``schema_version`` this lawfit reads, ``LN2`` the
``loss_after`` at or below which a cell counts as memorized, and ``_NUMERIC_INPUTS`` the
inputs a law takes the logarithm of. See ``docs/CONVENTIONS.md``.
"""

from __future__ import annotations

import math

#: loss_after (nats/token) at or below which a cell counts as memorized: the target's
#: tokens have probability 1/2 on average (the contract's rule;
#: :func:`~lawfit.data.memorized_mask`).
LN2 = math.log(2.0)

#: Dims that identify a *setting*; size > 1 requires ``by=`` or ``.sel``.
GROUP_DIMS = ("model", "task", "random_ratio", "objective", "modules")
#: Replicate dims: the adapter's initialisation and the target content (which sequence).
REPLICATE_DIMS = ("seed", "data_seed")
#: Dims of a cell (one training run).
CELL_DIMS = GROUP_DIMS + ("rank", "length") + REPLICATE_DIMS
_INNER_DIMS = ("token", "step")
_NUMERIC_INPUTS = ("rank", "length", "n_params", "n_bytes")
#: Variables that live on the token or step dim (the rest are one value per cell).
_INNER_VARS = ("p_before", "p_after", "greedy_correct", "entry", "loss_curve", "frac_above_curve")


#: Newest major ``schema_version`` of the data contract this lawfit reads.
SCHEMA_MAJOR = 1
