"""One common check over every lawfit result type (as scikit-learn checks every estimator)."""

import warnings

import pandas as pd
import pytest
import xarray as xr

import lawfit
from lawfit.information import information_bits
from lawfit.protocol import ResultRecord, SummaryText
from lawfit.result import Flag
from lawfit.testing import synthetic_dataset
from lawfit.testing.selection import synthetic_memft_dataset
from lawfit.testing.tokens import synthetic_token_dataset


def _budget_result():
    from tests.lawfit.test_budget import _sweep

    return lawfit.budget_sensitivity(
        _sweep(lambda r, ln: 250.0, noise=0.02), [200, 600], bootstrap=0, exclude=None
    )


def _results():
    ds = synthetic_dataset(seeds=2, rng=0)
    fit = lawfit.fit(ds, exclude=None, bootstrap=40, rng=0, profile=False)
    by = lawfit.fit(
        xr.concat([ds, ds], dim=pd.Index(["a", "b"], name="model")),
        by="model",
        exclude=None,
        profile=False,
    )
    tok = synthetic_token_dataset(entry_tokens=8, n_steps=12, methods=("sft", "memft_ot"), rng=0)
    return {
        "FitResult": lambda: fit,
        "FitResults": lambda: by,
        "ComparisonResult": lambda: lawfit.compare(
            ds, ["power_law", "ratio_no_offset"], holdout=()
        ),
        "CapacityPrediction": lambda: lawfit.predict_capacity(fit, length=[128, 8192], target=0.5),
        "BitsResult": lambda: lawfit.bits_per_parameter(
            synthetic_token_dataset(entry_tokens=8, rng=0)
        ),
        "InformationBits": lambda: information_bits(
            synthetic_token_dataset(entry_tokens=8, rng=0), entropy=8.0
        ),
        "GradientBudget": lambda: lawfit.gradient_budget(tok, bootstrap=20, rng=0),
        "MemftSavings": lambda: lawfit.memft_savings(
            synthetic_memft_dataset(rng=0),
            bootstrap=20,
            rng=0,
            target=1.0,
            target_kind="loss_reduction",
        ),
        "BudgetSensitivity": _budget_result,
        "PhaseTransitionResult": lambda: lawfit.phase_transition(
            tok.sel(objective=["sft"]), bootstrap=0
        ),
    }


RESULTS = _results()


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_every_result_type_follows_the_protocol(name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = RESULTS[name]()
    assert type(res).__name__ == name
    # flags: structured, never "FLAG:" text
    assert isinstance(res.flags, tuple)
    assert all(
        isinstance(f, Flag) and f.code and f.severity in ("info", "warning") for f in res.flags
    )
    # summary: text, HTML and LaTeX
    s = res.summary()
    text = str(s)
    assert text.strip() and "FLAG:" not in text
    assert "<table" in s.as_html()
    assert "tabular" in s.as_latex()
    # tables
    df = res.to_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) > 0
    ds = res.to_dataset()
    assert isinstance(ds, xr.Dataset) and len(ds.data_vars) > 0
    # save / load
    res.save(tmp_path / "r.json")
    back = lawfit.load(tmp_path / "r.json")
    assert back.flags == res.flags
    if isinstance(back, ResultRecord):
        assert back.result_type == name
        pd.testing.assert_frame_equal(
            back.to_dataframe(), df.reset_index(drop=True), check_dtype=False
        )
        assert isinstance(back.summary(), SummaryText) and str(back.summary()) == text
    else:
        pd.testing.assert_frame_equal(back.to_dataframe(), df)
