import json

import numpy as np
import pytest
import xarray as xr

from lawfit.errors import LawfitError
from lawfit.testing import synthetic_dataset


def test_contract_shape():
    ds = synthetic_dataset(seeds=2, rng=0)
    for v in (
        "loss_before",
        "loss_after",
        "loss_reduction",
        "n_params",
        "status",
        "exact_match",
        "token_accuracy",
    ):
        assert v in ds
    assert ds.attrs["synthetic"] == "true"
    assert json.loads(ds.attrs["truth"]) == {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}
    assert np.allclose(ds.loss_before - ds.loss_after, ds.loss_reduction)
    assert ds["n_params"].dims == ("rank",)


def test_run_noise_is_correlated_within_seed():
    ds = synthetic_dataset(
        seeds=40,
        noise=0.1,
        noise_kind="run",
        run_effect={"logC": 0.2, "alpha": 0, "beta": 0},
        rng=1,
    )
    truth = 1.0 * ds["rank"] ** 0.6 * ds["length"] ** -0.5 + 0.02
    resid = np.log(ds.loss_reduction / truth)
    seed_means = resid.mean(("rank", "length"))
    assert float(seed_means.std()) > 0.1  # shared per-seed effect


def test_reproducible_and_netcdf(tmp_path):
    a = synthetic_dataset(rng=3)
    b = synthetic_dataset(rng=3)
    assert a.identical(b)
    assert not a.identical(synthetic_dataset(rng=4))  # the seed matters, so the check can fail
    a.to_netcdf(tmp_path / "s.nc")
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "s.nc"), a)


def test_bad_noise_kind():
    with pytest.raises(LawfitError, match="noise_kind"):
        synthetic_dataset(noise_kind="spatial")
