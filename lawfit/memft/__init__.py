"""What memorization-oriented finetuning (MemFT) saves over plain SFT.

Two questions, answered separately:

1. **Gradient budget** (:func:`gradient_budget`): plain SFT averages the loss over
   every target token, so at each step a share ``frac_above`` of its loss weight goes
   to tokens that already clear the p > 0.5 threshold (greedy decoding already
   reproduces them given an intact prefix). MemFT-OT gives those tokens weight 0: the
   share is what it would save. Integrated over the SFT trajectory
   (``frac_above_curve`` over ``step``), and as a snapshot at the end from the per-token
   ``p_after`` (loss-weight share and a gradient-magnitude proxy, |∂Lₜ/∂zₜ| ≈ 1 − pₜ).
2. **Capacity savings** (:func:`memft_savings`): laws fitted per method (SFT vs
   ``memft_*``) predict the rank and trainable parameters each needs for a fidelity
   target at new lengths; the ratio is the saving, with CIs from paired bootstrap
   draws, and it is checked against measured MemFT cells.

The modules: :mod:`~lawfit.memft.gradient_shares` (question 1),
:mod:`~lawfit.memft.savings` (question 2: one law per objective),
:mod:`~lawfit.memft.shared_exponents` (question 2 assuming MemFT changes only the
prefactor C of the SFT law), :mod:`~lawfit.memft.validation` (predictions against
measured cells) and ``_common`` (helpers both questions use).
"""

from __future__ import annotations

# THRESHOLD and xr_mask are re-exported: lawfit.memft had them when it was one module
from lawfit.memft._common import xr_mask  # noqa: F401
from lawfit.memft.gradient_shares import THRESHOLD, GradientBudget, gradient_budget  # noqa: F401
from lawfit.memft.savings import MemftSavings, memft_savings
from lawfit.protocol import saved_as

__all__ = ["GradientBudget", "MemftSavings", "gradient_budget", "memft_savings"]

# saved files keep naming these classes as this package's, as when it was one module
saved_as(__name__, GradientBudget, MemftSavings)
