"""Information bits (lawfit.information) on synthetic cells of known entropy."""

import math

import numpy as np
import pytest
import xarray as xr

import lawfit
from lawfit.information import bits_dl, bits_recalled, bits_stored, information_bits

V = 1000  # tokens drawn uniformly from V values: H = log2 V per token
H = math.log2(V)


def cells(p_after, p_before=None, greedy=None, entry=None, entropy=H, status=None):
    """A contract dataset with one cell per row of ``p_after`` (NaN = padding) along rank."""
    p_after = np.atleast_2d(np.asarray(p_after, float))
    n_cell, n_tok = p_after.shape
    tok = ("rank", "token")
    p_before = np.full_like(p_after, 1e-6) if p_before is None else np.asarray(p_before, float)
    greedy = np.where(np.isnan(p_after), np.nan, 0.0) if greedy is None else greedy
    entry = np.zeros(n_tok, dtype=np.int64) if entry is None else np.asarray(entry)
    ds = xr.Dataset(
        {
            "p_after": (tok, p_after),
            "p_before": (tok, np.where(np.isnan(p_after), np.nan, p_before)),
            "greedy_correct": (tok, np.asarray(greedy, float)),
            "entry": (("token",), entry),
            "entropy_bits": (tok, np.broadcast_to(np.asarray(entropy, float), p_after.shape)),
            "status": (("rank",), np.asarray(status or ["ok"] * n_cell)),
        },
        coords={"rank": np.arange(1, n_cell + 1), "token": np.arange(n_tok)},
    )
    return ds.expand_dims(length=[n_tok]).assign(entry=ds["entry"])


def test_bits_stored_matches_the_definition_to_1e_9():
    rng = np.random.default_rng(0)
    p = rng.uniform(1e-6, 1.0, size=(3, 40))
    p[2, 30:] = np.nan  # a shorter cell: padding
    h = rng.uniform(0.5, 20.0, size=(3, 40))  # per-token entropies, e.g. mixed content
    got = bits_stored(cells(p, entropy=h)).values.ravel()
    want = [
        sum(max(0.0, h[i, t] + math.log2(p[i, t])) for t in range(40) if not math.isnan(p[i, t]))
        for i in range(3)
    ]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    # recorded in the dataset or given as an argument: the same numbers
    # without the floor at 0 per token: the net code length saved, never above bits_stored
    net = information_bits(cells(p, entropy=h)).cells["bits_saved"].to_numpy()
    want_net = [np.nansum(h[i] + np.log2(p[i])) for i in range(3)]
    np.testing.assert_allclose(net, want_net, rtol=0, atol=1e-9)
    assert np.all(net <= got)
    given = bits_stored(cells(p, entropy=0.0), h[None]).values.ravel()
    np.testing.assert_allclose(given, want, rtol=0, atol=1e-9)


def test_the_base_models_chance_floor_is_the_same_measure_on_p_before():
    rng = np.random.default_rng(1)
    p_after = rng.uniform(1e-6, 1.0, size=(2, 30))
    p_before = rng.uniform(1e-6, 1e-2, size=(2, 30))  # some tokens above 2^-H = 1e-3
    got = information_bits(cells(p_after, p_before=p_before)).cells["bits_stored_base"]
    want = [sum(max(0.0, H + math.log2(q)) for q in p_before[i]) for i in range(2)]
    np.testing.assert_allclose(got.to_numpy(), want, rtol=0, atol=1e-9)
    assert min(want) > 0  # the floor a carrier that learned nothing would show
    # an adapter that changes nothing stores exactly the floor
    same = information_bits(cells(p_before, p_before=p_before)).cells
    np.testing.assert_allclose(same["bits_stored"], same["bits_stored_base"], atol=1e-12)


def test_a_perfect_recall_stores_the_content_entropy_exactly():
    ds = cells(np.ones((1, 64)))
    assert bits_stored(ds).item() == pytest.approx(64 * H, abs=1e-9)


def test_a_uniform_prediction_adapter_stores_zero_bits():
    # the base model is worse than uniform (p_before < 1/V); the adapter learns "uniform"
    ds = cells(np.full((1, 128), 1.0 / V), p_before=np.full((1, 128), 1e-6))
    assert bits_stored(ds).item() == pytest.approx(0.0, abs=1e-9)
    # ...yet it gains ΔL bits: 128 log2(1e-3 / 1e-6) = 128 log2(1000), none of it information
    assert bits_dl(ds).item() == pytest.approx(128 * math.log2(1000.0), abs=1e-9)


def test_tokens_below_uniform_count_zero_not_negative():
    p = np.array([[1.0, 1e-9, 1.0]])  # the middle token is far below uniform
    assert bits_stored(cells(p)).item() == pytest.approx(2 * H, abs=1e-9)


def test_bits_recalled_counts_exactly_recalled_entries():
    entry = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, -1])  # four entries, one padding token
    h = np.array([3.0, 1.0, 2.0, 5.0, 5.0, 7.0, 1.0, 1.0, 4.0, np.nan])
    greedy = np.array(
        [
            [1, 1, 1, 1, 0, 1, 1, 1, 0, np.nan],  # entries 0 and 2 recalled: 6 + 9
            [1, 1, 1, 1, 1, 1, 1, 1, 1, np.nan],  # all four: 6 + 10 + 9 + 4
            [0, 1, 1, 1, 0, 1, 1, 0, 0, np.nan],  # none
        ]
    )
    p = np.where(np.isnan(greedy), np.nan, 0.5)
    got = bits_recalled(cells(p, greedy=greedy, entry=entry, entropy=h)).values.ravel()
    np.testing.assert_allclose(got, [15.0, 29.0, 0.0], rtol=0, atol=1e-12)


def test_unknown_entropy_gives_nan_information_and_a_flag():
    p = np.full((2, 8), 0.9)
    h = np.full((2, 8), H)
    h[1, 3] = np.nan  # natural-text token
    ds = cells(p, greedy=np.ones((2, 8)), entropy=h)
    stored = bits_stored(ds).values.ravel()
    assert np.isfinite(stored[0]) and np.isnan(stored[1])
    info = information_bits(ds)
    assert info.cells["entropy_known"].tolist() == [True, False]
    assert np.isfinite(info.cells["bits_dl"]).all()
    assert "entropy_unknown" in {f.code for f in info.flags}


def test_bits_per_parameter_counts_information_by_default():
    p = np.full((2, 64), 0.5)  # every token at p = 0.5: 1 bit of code length left each
    ds = cells(p, greedy=np.ones((2, 64))).assign(n_params=("rank", [10, 20]))
    res = lawfit.bits_per_parameter(ds)
    c = res.cells
    np.testing.assert_allclose(c["bits"], 64 * (H - 1.0), atol=1e-9)
    np.testing.assert_allclose(c["bits_recalled"], 64 * H, atol=1e-9)
    np.testing.assert_allclose(c["bits_dl"], 64 * (-1.0 - math.log2(1e-6)), atol=1e-9)
    np.testing.assert_allclose(c["bits_max"], 64 * H, atol=1e-9)
    np.testing.assert_allclose(c["bits_per_param"], 64 * (H - 1.0) / np.array([10, 20]))
    assert (c["bits_kind"] == "stored").all()
    dl = lawfit.bits_per_parameter(ds, kind="dl").cells
    np.testing.assert_allclose(dl["bits"], c["bits_dl"])
    rec = lawfit.bits_per_parameter(ds, kind="recalled").cells
    np.testing.assert_allclose(rec["bits"], c["bits_recalled"])
    with pytest.raises(lawfit.LawfitError, match="kind must be"):
        lawfit.bits_per_parameter(ds, kind="nats")


def test_bits_per_parameter_flags_cells_at_the_untrained_models_floor():
    rng = np.random.default_rng(2)
    base = rng.uniform(1e-5, 2e-3, size=(2, 64))  # some tokens above 2^-H = 1e-3 by chance
    learned = np.where(np.arange(64) < 32, 0.5, base[1])  # rank 2 learned half the tokens
    ds = cells(np.stack([base[0], learned]), p_before=base).assign(n_params=("rank", [10, 20]))
    res = lawfit.bits_per_parameter(ds)
    (flag,) = [f for f in res.flags if f.code == "at_base_floor"]
    assert flag.message.startswith("1 of 2 cells")  # rank 1 changed nothing: its floor only
    c = res.cells.set_index("rank")
    assert c.loc[1, "bits"] == pytest.approx(c.loc[1, "bits_stored_base"], abs=1e-12)
    assert c.loc[1, "bits_stored_base"] > 0
    assert not any(
        f.code == "at_base_floor" for f in lawfit.bits_per_parameter(ds.isel(rank=[1])).flags
    )


def test_bits_per_parameter_falls_back_to_dl_bits_where_entropy_is_unknown():
    ds = cells(np.full((2, 4), 0.5), greedy=np.ones((2, 4)), entropy=np.nan)
    res = lawfit.bits_per_parameter(ds.assign(n_params=("rank", [10, 20])))
    assert (res.cells["bits_kind"] == "dl (entropy unknown)").all()
    np.testing.assert_allclose(res.cells["bits"], res.cells["bits_dl"])
    assert "entropy_unknown" in {f.code for f in res.flags}


def test_cells_not_ok_are_left_out():
    ds = cells(np.full((2, 4), 0.5), status=["ok", "failed"])
    assert len(information_bits(ds).cells) == 1


@pytest.mark.slow
def test_entropy_is_derived_after_a_scalar_selection():
    # ds.sel(task="x") leaves scalar coordinates; the targets are still rebuilt from metadata
    pytest.importorskip("collect.tasks")
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "data" / "smollm2_cpu.nc"
    full = lawfit.data.open_dataset(path)
    try:
        lists = information_bits(full.sel(task=["long_context"], random_ratio=[1.0]))
    except Exception as exc:  # noqa: BLE001 - no tokenizer here: nothing to compare
        pytest.skip(f"cannot rebuild the targets here: {exc}")
    scalar = information_bits(full.sel(task="long_context", random_ratio=1.0))
    assert scalar.entropy_source.startswith("derived from the task metadata")
    assert scalar.cells["entropy_known"].all()
    np.testing.assert_allclose(
        scalar.cells["bits_stored"], lists.cells["bits_stored"], rtol=0, atol=1e-9
    )
