"""One common check over every lawfit result type (as scikit-learn checks every estimator)."""

import concurrent.futures
import functools
import json
import multiprocessing
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lawfit
from lawfit.errors import LawfitError
from lawfit.information import information_bits
from lawfit.protocol import RESULT_FORMAT_VERSION, ResultRecord
from lawfit.result import Flag
from lawfit.testing import synthetic_dataset
from lawfit.testing.carriers import synthetic_carrier_dataset
from lawfit.testing.selection import synthetic_memft_dataset
from lawfit.testing.tokens import synthetic_token_dataset


def _budget_result():
    from tests.lawfit.test_budget import _sweep

    return lawfit.budget_sensitivity(
        _sweep(lambda r, ln: 250.0, noise=0.02), [200, 600], bootstrap=0, exclude=None
    )


def _carrier_sweep():
    from tests.lawfit.test_carrier_law import LENGTHS, TRUTH

    return synthetic_carrier_dataset(TRUTH, lengths=LENGTHS, tokens=True, rng=0)


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
        "FormSensitivity": lambda: lawfit.capacity_by_form(
            lawfit.compare(ds, ["power_law", "ratio_no_offset"], holdout=()),
            length=[512],
            target=0.5,
        ),
        "LackOfFit": lambda: lawfit.lack_of_fit(fit),
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
        "CarrierLaw": lambda: lawfit.carrier_law(_carrier_sweep()),
        "SharedExponents": lambda: lawfit.shared_exponents(
            synthetic_dataset(groups={"model": ["a", "b"]}, seeds=4, rng=1),
            space="log",
            cluster="seed",  # with the cluster-robust test's table
        ),
        "CarrierBits": lambda: lawfit.carrier_bits(_carrier_sweep(), bootstrap=50, rng=0),
        "CarrierCapacity": lambda: lawfit.carrier_bits(
            _carrier_sweep(), bootstrap=50, rng=0
        ).predict(1000.0),
        "TransferredLaw": lambda: lawfit.transfer_law(
            fit,
            synthetic_dataset(C=2.0, seeds=1, rng=5).sel(rank=[1, 4], length=[128]),
            cluster="seed",
        ),
    }


RESULTS = _results()


@functools.cache
def _result(name: str):
    """The result ``name``, computed once per session (results are frozen: tests share them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RESULTS[name]()


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_every_result_type_follows_the_protocol(name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _result(name)
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
    # save / load: the same type back, with equal tables, flags and summary
    res.save(tmp_path / "r.json")
    back = lawfit.load(tmp_path / "r.json")
    assert type(back) is type(res)
    assert back.flags == res.flags
    pd.testing.assert_frame_equal(back.to_dataframe(), df)
    assert str(back.summary()) == text


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_every_result_type_pickles(name):
    """Results cross process boundaries (multiprocessing, joblib): pickle keeps every table."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _result(name)
        back = pickle.loads(pickle.dumps(res))
    assert type(back) is type(res)
    assert back.flags == res.flags
    pd.testing.assert_frame_equal(back.to_dataframe(), res.to_dataframe())
    assert str(back.summary()) == str(res.summary())


def test_an_unpickled_fit_is_still_read_only_and_predicts_the_same():
    fit = _result("FitResult")
    back = pickle.loads(pickle.dumps(fit))
    with pytest.raises(TypeError):
        back.gof["r2"] = 1.0  # the mappings are frozen again on the way in
    with pytest.raises(ValueError):
        back.theta[0] = 0.0
    kw = dict(rank=[3.0, 48.0], length=[100.0, 900.0])
    pd.testing.assert_frame_equal(back.predict(**kw), fit.predict(**kw))
    pd.testing.assert_frame_equal(back.conf_int(), fit.conf_int())


def _params_in_a_worker(fit):
    return fit.params


def test_a_fit_crosses_a_process_boundary():
    fit = _result("FitResult")
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        assert pool.submit(_params_in_a_worker, fit).result(timeout=60) == fit.params


def _saved(tmp_path, name="GradientBudget"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _result(name)
    res.save(tmp_path / "r.json")
    return res, json.loads((tmp_path / "r.json").read_text())


def test_a_result_from_a_newer_format_version_is_refused(tmp_path):
    _, d = _saved(tmp_path)
    d["format_version"] = RESULT_FORMAT_VERSION + 1
    (tmp_path / "r.json").write_text(json.dumps(d))
    with pytest.raises(LawfitError, match="newer than this lawfit reads"):
        lawfit.load(tmp_path / "r.json")


@pytest.mark.parametrize(
    "result_type, msg",
    [
        ("lawfit.memft:NoSuchResult", "unknown result type"),
        ("lawfit.nosuchmodule:GradientBudget", "unknown result type"),
        ("os:system", "not a lawfit type"),
        ("lawfit.result:Summary", "not a lawfit result type"),
    ],
)
def test_a_result_of_an_unknown_type_is_refused(tmp_path, result_type, msg):
    _, d = _saved(tmp_path)
    d["result_type"] = result_type
    (tmp_path / "r.json").write_text(json.dumps(d))
    with pytest.raises(LawfitError, match=msg):
        lawfit.load(tmp_path / "r.json")


def test_a_saved_field_this_lawfit_lacks_is_refused(tmp_path):
    _, d = _saved(tmp_path)
    d["fields"]["from_the_future"] = 1
    (tmp_path / "r.json").write_text(json.dumps(d))
    with pytest.raises(LawfitError, match="from_the_future"):
        lawfit.load(tmp_path / "r.json")


def test_nested_results_come_back_as_their_types(tmp_path):
    res, _ = _saved(tmp_path, "MemftSavings")
    back = lawfit.load(tmp_path / "r.json")
    assert type(back.budget) is type(res.budget)
    assert set(back.fits) == set(res.fits)
    for k, fit in res.fits.items():
        assert type(back.fits[k]) is type(fit)
        np.testing.assert_array_equal(back.fits[k].theta, fit.theta)


def test_record_files_of_the_earlier_format_still_load(tmp_path):
    res, _ = _saved(tmp_path)
    res.to_record().save(tmp_path / "old.json")
    back = lawfit.load(tmp_path / "old.json")
    assert isinstance(back, ResultRecord) and back.result_type == "GradientBudget"
    pd.testing.assert_frame_equal(
        back.to_dataframe(), res.to_dataframe().reset_index(drop=True), check_dtype=False
    )


@pytest.mark.parametrize(
    "value",
    [
        (1, 2.5, float("nan"), float("-inf"), None, "x", True),
        {("a", 1): [1, 2], 3: {"b": np.int64(4)}},
        np.array([[1.0, np.nan], [np.inf, 2.0]]),
        np.array(["sft", "memft_ot"]),
        pd.DataFrame(
            {"a": [1, 2], "b": ["x", None], "c": [True, False], "d": [0.5, np.nan]},
            index=pd.Index(["p", "q"], name="param"),
        ),
    ],
)
def test_encode_decode_round_trips_values(value):
    from lawfit.protocol import decode, encode

    back = decode(json.loads(json.dumps(encode(value), allow_nan=False)))
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value)
    elif isinstance(value, np.ndarray):
        assert back.dtype == value.dtype
        np.testing.assert_array_equal(back, value)
    elif isinstance(value, dict):
        assert back == value  # numpy scalars come back as python numbers
    else:
        assert repr(back) == repr(value)  # NaN != NaN: compare the text


@pytest.mark.parametrize(
    "name, saved_as",
    [
        ("FitResult", "lawfit.result:FitResult"),
        ("FitResults", "lawfit.result:FitResults"),
        ("PhaseTransitionResult", "lawfit.transition:PhaseTransitionResult"),
        ("MemftSavings", "lawfit.memft:MemftSavings"),
        ("GradientBudget", "lawfit.memft:GradientBudget"),
        ("ComparisonResult", "lawfit.compare:ComparisonResult"),
        ("SharedExponents", "lawfit.shared:SharedExponents"),
        ("CarrierLaw", "lawfit.carriers:CarrierLaw"),
        ("CarrierBits", "lawfit.carriers:CarrierBits"),
        ("CarrierCapacity", "lawfit.carriers:CarrierCapacity"),
        ("BudgetSensitivity", "lawfit.budget:BudgetSensitivity"),
    ],
)
def test_results_of_split_modules_keep_their_saved_type_names(name, saved_as):
    """Files name the public module, as before it became a package (older lawfits read them)."""
    from lawfit.protocol import _resolve_type, _type_path

    cls = type(_result(name))
    assert _type_path(cls) == saved_as
    assert _resolve_type(saved_as) is cls


def test_a_saved_shared_law_names_its_function_as_before_the_split():
    """The shared law's function saves as ``lawfit.shared:_PerGroup`` (older lawfits read it)."""
    from lawfit.forms import import_reference

    form = _result("SharedExponents").shared_fit.form
    assert form.to_spec()["func"]["class"] == "lawfit.shared:_PerGroup"
    assert import_reference("lawfit.shared:_PerGroup") is type(form.func)


def test_carrier_laws_saved_before_the_shared_move_still_name_their_function():
    """Laws saved when the per-carrier function lived in lawfit.carriers still rebuild it."""
    from lawfit.forms import import_reference

    form = _result("CarrierLaw").shared_fit.form
    assert import_reference("lawfit.carriers:_PerCarrier") is type(form.func)
