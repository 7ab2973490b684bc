"""Synthetic data for tests, examples and calibration studies."""

from lawfit.testing.cells import synthetic_dataset
from lawfit.testing.tokens import synthetic_token_dataset
from lawfit.testing.transfer import transfer_replicate, transfer_sweep

__all__ = ["synthetic_dataset", "synthetic_token_dataset", "transfer_replicate", "transfer_sweep"]
