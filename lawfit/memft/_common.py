"""Helpers both MemFT analyses share: option checks, the laws' fit space, a cell mask.

:func:`_check_common` validates the options :func:`~lawfit.gradient_budget` and
:func:`~lawfit.memft_savings` share, ``_SPACE`` is the fit space of every law the savings
fit (also the held-out refit of the validation), and :func:`xr_mask` wraps a numpy mask
over the ``loss_reduction`` dims as a DataArray.
"""

from __future__ import annotations

from lawfit import _validate as V

#: fit space of every law memft_savings fits: one space for all objectives, so that the
#: savings compare laws fitted alike (linear, as its tests validate; lawfit.fit's default
#: "auto" could pick another space per objective)
_SPACE = "linear"


def _check_common(bootstrap, confidence_level):
    V.bootstrap_count(bootstrap)
    V.confidence_level(confidence_level)


def xr_mask(sub, okm):
    """Wrap a numpy mask over the loss_reduction dims as a DataArray."""
    import xarray as xr

    return xr.DataArray(
        okm,
        dims=sub["loss_reduction"].dims,
        coords={d: sub[d] for d in sub["loss_reduction"].dims if d in sub.coords},
    )
