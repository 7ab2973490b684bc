"""lawfit.memft.paired: MemFT's ΔL over SFT's on the same cells, with no law in between."""

import numpy as np
import pytest

from lawfit.errors import LawfitError
from lawfit.memft import memft_savings
from lawfit.memft.paired import paired_ratios
from lawfit.testing.paired import synthetic_paired_memft
from lawfit.testing.selection import synthetic_memft_dataset


def test_a_noiseless_ratio_comes_back_exactly():
    ds = synthetic_paired_memft(0.8, 3, np.random.default_rng(0), scatter=0.0)
    (row,) = paired_ratios(ds, ["memft_ot"]).itertuples()
    assert row.ratio == pytest.approx(0.8, rel=1e-12)
    assert (row.pairs, row.sequences) == (3, 3)
    assert row.low == pytest.approx(0.8, rel=1e-9) and row.high == pytest.approx(0.8, rel=1e-9)
    sft = ds["loss_reduction"].sel(objective="sft").values.ravel()
    gain = np.mean(0.1 + (0.8 - 1) * sft / 30)  # accuracy dL/30, + 0.1 for MemFT
    assert row.accuracy_gain == pytest.approx(gain, rel=1e-9)
    assert row.accuracy_gain_low < gain < row.accuracy_gain_high


def test_the_interval_covers_the_true_ratio_at_its_level():
    """Known truth: 400 simulated sweeps of 3 targets; the 95 % interval covers 0.9 ~95 %."""
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        row = paired_ratios(synthetic_paired_memft(0.9, 3, rng), ["memft_ot"]).iloc[0]
        hits += row["low"] <= 0.9 <= row["high"]
    assert 0.92 <= hits / 400 <= 0.98, f"covered {hits} of 400"


def test_pairs_need_both_cells_ok_and_unmemorized():
    ds = synthetic_paired_memft(0.9, 4, np.random.default_rng(2))
    ds["status"].loc[{"objective": "memft_ot", "data_seed": 0}] = "not_run"
    ds["loss_after"].loc[{"objective": "sft", "data_seed": 1}] = 0.5  # memorized: no pair
    row = paired_ratios(ds, ["memft_ot"]).iloc[0]
    assert (row["pairs"], row["sequences"]) == (2, 2)
    every = paired_ratios(ds, ["memft_ot"], exclude=None).iloc[0]
    assert every["pairs"] == 3


def test_one_target_gives_the_ratio_without_an_interval():
    row = paired_ratios(
        synthetic_paired_memft(0.7, 1, np.random.default_rng(3)), ["memft_ot"]
    ).iloc[0]
    assert row["sequences"] == 1 and np.isnan(row["low"]) and np.isnan(row["high"])


def test_bad_input_says_what_was_expected():
    ds = synthetic_paired_memft(0.9, 2, np.random.default_rng(4))
    with pytest.raises(LawfitError, match=r"without \['memft_sw'\]"):
        paired_ratios(ds, ["memft_sw"])
    with pytest.raises(LawfitError, match="no objective dim"):
        paired_ratios(ds.sel(objective="sft"), ["memft_ot"])


def test_memft_savings_carries_the_paired_table_into_its_summary_and_file(tmp_path):
    import lawfit

    res = memft_savings(synthetic_memft_dataset(rng=0), bootstrap=0)
    assert set(res.paired["objective"]) == {"memft_ot"} and (res.paired["ratio"] > 1).all()
    assert "MemFT over SFT on the same cells" in res.summary()
    res.save(tmp_path / "m.json")
    assert lawfit.load(tmp_path / "m.json").paired.equals(res.paired)


def test_the_report_summary_quotes_a_ratio_only_where_targets_give_an_interval():
    from lawfit.report.memft import _with_paired

    ds = synthetic_paired_memft(0.9, 3, np.random.default_rng(5))
    paired = paired_ratios(ds, ["memft_ot"])
    claims = ["memft_ot: no saving detected, rank saving -0.7% [-3.9%, 7.2%]", "memft_sw: x"]
    out = _with_paired(claims, paired)
    r = paired.iloc[0]
    gain = [100 * r[c] for c in ("accuracy_gain", "accuracy_gain_low", "accuracy_gain_high")]
    assert out[0] == (
        f"{claims[0]}; measured ΔL {r['ratio']:.3f}× SFT's [{r['low']:.3f}, {r['high']:.3f}], "
        f"token accuracy {gain[0]:+.1f} points [{gain[1]:+.1f}, {gain[2]:+.1f}] "
        "on the same 3 targets (rank 1, ℓ = 128)"
    )
    assert out[1] == "memft_sw: x"
    one = paired_ratios(synthetic_paired_memft(0.9, 1, np.random.default_rng(6)), ["memft_ot"])
    assert _with_paired(claims, one) == claims and _with_paired(None, paired) is None


def test_recalled_tokens_count_each_entrys_prefix_before_its_first_error():
    """Greedy flags over two entries of 4 tokens: the prefix of each entry, summed."""
    ds = synthetic_paired_memft(0.9, 2, np.random.default_rng(7))
    #                entry 0      entry 1
    memft = np.array([1, 1, 0, 1, 1, 1, 1, 0], float)  # 2 + 3 recalled
    sft = np.array([0, 1, 1, 1, 1, 1, 1, np.nan], float)  # 0 + 3 (last token padding)
    flags = np.stack([sft, memft])[:, None, None, None, None, :].repeat(2, axis=4)
    dims = (*ds["loss_reduction"].dims, "token")
    ds["greedy_correct"] = (dims, flags)
    ds["entry"] = ("token", np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    row = paired_ratios(ds, ["memft_ot"]).iloc[0]
    assert row["recalled"] == "5/3, 5/3"
    assert row["recalled_gain"] == 2.0
