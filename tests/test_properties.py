"""Property-based tests (hypothesis) over lawfit's public entry points (issue 14).

Any input gives either a documented :class:`lawfit.LawfitError` or a result whose flags
explain it; never an unflagged result that breaks a stated invariant:

- every usable point has 0 <= ΔL and loss_after >= 0 (ΔL <= loss_before);
- with the memorized-cell exclusion on, every fitted point has loss_after above it;
- Wald and profile intervals contain their estimate, or the result flags the parameter
  (poorly identified, open profile, at a bound);
- options outside their documented range are refused before any work.

Bounded ``max_examples`` and ``derandomize`` keep the suite fast and reproducible.
"""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lawfit
from lawfit import _validate as V
from lawfit.data import load_data
from lawfit.errors import LawfitError
from lawfit.testing import synthetic_token_dataset

FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LN2 = math.log(2.0)
ODD_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
LOSSES = st.one_of(
    st.floats(min_value=-1.0, max_value=8.0),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]),
)


@st.composite
def sweeps(draw):
    """A tidy frame of cells: sometimes sound, sometimes with any kind of bad value."""
    ranks = draw(
        st.lists(st.sampled_from([1, 2, 4, 8, 16, 32]), min_size=1, max_size=5, unique=True)
    )
    lengths = draw(
        st.lists(st.sampled_from([64, 128, 256, 512, 1024]), min_size=1, max_size=4, unique=True)
    )
    r, ell = np.meshgrid(np.array(ranks, float), np.array(lengths, float), indexing="ij")
    r, ell = r.ravel(), ell.ravel()
    n = r.size
    clean = 2.0 * r**0.6 * ell**-0.5 + 0.02
    noise = np.array(draw(st.lists(st.floats(-0.05, 0.05), min_size=n, max_size=n)))
    dl = clean * (1 + noise)
    before = np.full(n, draw(st.floats(0.5, 6.0)))
    for i in draw(st.lists(st.integers(0, n - 1), max_size=2)):  # plant bad values
        dl[i] = draw(LOSSES)
    for i in draw(st.lists(st.integers(0, n - 1), max_size=1)):
        before[i] = draw(LOSSES)
    with np.errstate(invalid="ignore"):
        after = before - dl
    if draw(st.sampled_from([False, False, True])):  # inconsistent: ΔL != before - after
        after = after + np.array(
            draw(st.lists(st.sampled_from([0.0, 0.0, 0.3, np.nan]), min_size=n, max_size=n))
        )
    status = draw(st.lists(st.sampled_from(["ok"] * 5 + ["failed"]), min_size=n, max_size=n))
    df = pd.DataFrame(
        {
            "rank": r,
            "length": ell,
            "loss_reduction": dl,
            "loss_before": before,
            "loss_after": after,
            "status": status,
        }
    )
    drop = draw(
        st.sampled_from([(), ("loss_before",), ("loss_after",), ("loss_before", "loss_after")])
    )
    return df.drop(columns=list(drop))


def _flagged(res, p):
    return any(f.startswith(p) or f" {p} " in f" {f} " for f in res.flags)


def _check_intervals(res, method):
    ci = res.conf_int(method)
    for p, est in res.params.items():
        lo, hi = ci.loc[p, "low"], ci.loc[p, "high"]
        tol = 1e-7 * (1 + abs(est))
        inside = np.isfinite(lo) and np.isfinite(hi) and lo - tol <= est <= hi + tol
        assert inside or _flagged(res, p), (method, p, est, lo, hi, res.flags)


def _fit_or_error(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return lawfit.fit(data, **kw)
        except LawfitError:
            return None


@FAST
@given(df=sweeps(), exclude=st.sampled_from(["memorized", None, 1.0]))
def test_fit_any_sweep_gives_an_error_or_an_honest_result(df, exclude):
    res = _fit_or_error(df, exclude=exclude, profile=True)
    event("fitted" if res is not None else "LawfitError")
    if res is None:
        return
    pts = res.points
    assert np.all(np.isfinite(pts["loss_reduction"])) and np.all(pts["loss_reduction"] >= 0)
    if "loss_after" in pts:
        la = pts["loss_after"].to_numpy(float)
        assert np.all(la[np.isfinite(la)] >= 0)  # ΔL <= loss_before
        if exclude is not None:
            thr = LN2 if exclude == "memorized" else exclude
            assert np.all(np.isfinite(la)) and np.all(la > thr)
    n_neg = int(
        (res.exclusions.get("reason", pd.Series(dtype=str)) == lawfit.data.LOSS_INCREASE).sum()
    )
    assert (n_neg > 0) == any("loss_reduction < 0" in f for f in res.flags)
    _check_intervals(res, "wald")
    _check_intervals(res, "profile")


# half good values, half anything: both sides of every rule are exercised
BOOT = st.one_of(
    st.sampled_from([0, 2, 40]),
    st.integers(-2, 6),
    st.booleans(),
    st.floats(-1, 5),
    st.text(max_size=2),
    st.none(),
)
LEVEL = st.one_of(
    st.floats(0.01, 0.99), ODD_FLOATS, st.integers(-1, 100), st.booleans(), st.text(max_size=3)
)
SEED = st.one_of(
    st.integers(0, 2**40), st.integers(-3, -1), st.floats(-1, 1), st.text(max_size=3), st.none()
)
EXCLUDE = st.one_of(
    st.sampled_from([None, None, "memorized"]), ODD_FLOATS, st.sampled_from(["all", True])
)


@pytest.fixture(scope="module")
def good_frame():
    rng = np.random.default_rng(0)
    r, ell = np.meshgrid([1.0, 2, 4, 8, 16], [64.0, 256, 1024], indexing="ij")
    dl = (2.0 * r**0.6 * ell**-0.5 + 0.02) * np.exp(0.03 * rng.standard_normal(r.shape))
    return pd.DataFrame({"rank": r.ravel(), "length": ell.ravel(), "loss_reduction": dl.ravel()})


def _valid(check, value):
    try:
        check(value)
    except LawfitError:
        return False
    return True


@st.composite
def fit_options(draw):
    """(bootstrap, level, seed, exclude): all sound half the time, else anything."""
    if draw(st.booleans()):
        return (
            draw(st.sampled_from([0, 2, 40])),
            draw(st.floats(0.01, 0.99)),
            draw(st.integers(0, 2**40)),
            draw(st.sampled_from([None, "memorized"])),
        )
    return draw(BOOT), draw(LEVEL), draw(SEED), draw(EXCLUDE)


@FAST
@given(options=fit_options())
def test_fit_options_refused_or_honoured(good_frame, options):
    bootstrap, level, seed, exclude = options
    valid = (
        _valid(V.bootstrap_count, bootstrap)
        and _valid(V.confidence_level, level)
        and _valid(V.random_generator, seed)
        and _valid(V.exclude_rule, exclude)
    )
    if exclude is not None and valid:  # this frame has no loss_after: nothing to exclude
        exclude = None
    try:
        res = lawfit.fit(
            good_frame,
            bootstrap=bootstrap,
            confidence_level=level,
            rng=seed,
            exclude=exclude,
            profile=False,
        )
    except LawfitError:
        assert not valid
        event("refused")
        return
    event("fitted")
    assert valid
    assert res.confidence_level == pytest.approx(float(level))
    if bootstrap:
        assert len(res.boot.draws) == bootstrap >= 2
        lo, hi = res.conf_int("bootstrap").loc["alpha"]
        assert lo <= hi  # a real interval, never zero-width by construction
    _check_intervals(res, "wald")


@FAST
@given(
    obj=st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.binary(max_size=4),
    )
)
def test_load_data_accepts_only_data(obj):
    with pytest.raises(LawfitError, match="expected an xarray.Dataset"):
        load_data(obj)


@FAST
@given(search=st.tuples(ODD_FLOATS, ODD_FLOATS), target=st.floats(-1, 3))
def test_predict_capacity_search_and_target(good_frame, search, target):
    res = _fit_or_error(good_frame, exclude=None, profile=False)
    valid = _valid(V.search_range, search)
    try:
        pred = lawfit.predict_capacity(res, length=256, target=target, search=search)
    except LawfitError:
        assert not valid
        return
    assert valid
    row = pred.table.iloc[0]
    # an infinite capacity is always labelled unreachable, and a finite one is positive
    assert bool(row["unreachable"]) == bool(np.isinf(row["estimate"]))
    assert row["estimate"] > 0 or row["trivial"]
    if bool(row["unreachable"]):
        assert "unreachable" in {f.code for f in pred.flags}


@pytest.fixture(scope="module")
def token_data():
    grid = dict(ranks=(1, 4, 16), lengths=(64, 128), seeds=(0, 1))
    return synthetic_token_dataset(p_star=0.3, slope=3.0, entry_tokens=8, rng=1, **grid)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(bad=st.sampled_from([0.0, 1.0, 2.0, -1.0, 0.5, np.nan]), share=st.floats(0.0, 0.3))
def test_phase_transition_flags_must_be_zero_one(token_data, bad, share):
    ds = token_data.copy(deep=True)
    g = ds["greedy_correct"].values
    rng = np.random.default_rng(0)
    hit = np.isfinite(g) & (rng.random(g.shape) < share)
    g[hit] = bad
    # NaN is padding only: on a target token (finite p_after) it is refused too
    legal = bad in (0.0, 1.0) or not hit.any()
    try:
        res = lawfit.phase_transition(ds, bootstrap=0)
    except LawfitError as exc:
        assert not legal or "no run" in str(exc), exc
        if np.isnan(bad):
            assert "NaN marks padding only" in str(exc), exc
        return
    assert legal
    # legal flags are read, not dropped: the token-level fit covers every collected run
    n_runs = int((ds["status"] == "ok").sum())
    assert res.token_fit is not None and res.token_fit.n_runs == n_runs
    if not hit.any():  # nothing planted: the analysis of the untouched data
        assert res.token_fit.threshold == lawfit.phase_transition(token_data, bootstrap=0).threshold
