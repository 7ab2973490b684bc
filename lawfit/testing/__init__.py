"""Synthetic data for tests, examples and calibration studies."""

from lawfit.testing.cells import synthetic_dataset

__all__ = ["synthetic_dataset"]
