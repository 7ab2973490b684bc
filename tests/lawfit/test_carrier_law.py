"""One capacity law across carriers: planted exponents, shared-exponent test, bits per size."""

import json
import math

import numpy as np
import pytest
import xarray as xr

from lawfit.carriers import carrier_bits, carrier_law, carrier_of
from lawfit.errors import LawfitError
from lawfit.testing.carriers import synthetic_carrier_dataset

LAW = dict(C=0.05, alpha=0.6, beta=0.5, b=0.02)
TRUTH = {
    "mlp_block@20": dict(sizes=[1, 2, 4, 8], params_per_knob=1152, bits_per_param=1.0, **LAW),
    "memtok": dict(
        sizes=[1, 2, 4, 8], params_per_knob=576, bits_per_param=2.0, **{**LAW, "C": 0.08}
    ),
    "kv@20": dict(sizes=[1, 2, 4], params_per_knob=3840, bits_per_param=0.5, **{**LAW, "C": 0.02}),
}
LENGTHS = (64, 128, 256, 512, 1024)


@pytest.fixture(scope="module")
def sweep():
    return synthetic_carrier_dataset(TRUTH, lengths=LENGTHS, tokens=True, rng=0)


def test_carrier_of_reads_every_spec():
    assert carrier_of("memtok:16") == ("memtok", "m", "memtok:{}")
    assert carrier_of("kv:8@20") == ("kv@20", "m", "kv:{}@20")
    assert carrier_of("skv:64@all") == ("skv@all", "k", "skv:{}@all")
    assert carrier_of("mlp_block@20")[:2] == ("mlp_block@20", "rank")


def test_planted_exponents_per_carrier_are_recovered():
    truth = {
        "mlp_block@20": dict(
            sizes=[1, 2, 4, 8], params_per_knob=1152, C=0.05, alpha=0.4, beta=0.5, b=0.02
        ),
        "memtok": dict(
            sizes=[1, 2, 4, 8], params_per_knob=576, C=0.005, alpha=0.8, beta=0.3, b=0.02
        ),
    }
    ds = synthetic_carrier_dataset(truth, lengths=LENGTHS, noise=0.02, rng=1)
    law = carrier_law(ds, bootstrap=200, rng=0)
    sep = law.exponents.query("model == 'separate'").set_index(["carrier", "parameter"])
    for carrier, t in truth.items():
        for p in ("alpha", "beta"):
            row = sep.loc[(carrier, p)]
            assert row["low"] <= t[p] <= row["high"], (carrier, p, row.to_dict())
            assert row["estimate"] == pytest.approx(t[p], abs=0.08)
    assert law.verdict == "separate" and law.pvalue < 1e-6
    assert "exponents_differ" in {f.code for f in law.flags}


def test_shared_law_recovers_the_common_exponents(sweep):
    law = carrier_law(sweep)
    shared = law.exponents.query("model == 'shared' and carrier == 'all'").set_index("parameter")
    assert shared.loc["alpha", "estimate"] == pytest.approx(0.6, abs=0.05)
    assert shared.loc["beta", "estimate"] == pytest.approx(0.5, abs=0.05)
    # C per carrier keeps the planted ordering memtok > mlp_block > kv
    c = law.exponents.query("model == 'shared' and parameter == 'C'").set_index("carrier")
    assert (
        c.loc["memtok", "estimate"] > c.loc["mlp_block@20", "estimate"] > c.loc["kv@20", "estimate"]
    )
    cmp = law.comparison.set_index("model")
    assert cmp.loc["shared", "df"] == 4  # (3 - 1) carriers × 2 exponents
    assert cmp.loc["separate", "loglik"] >= cmp.loc["shared", "loglik"]


def _rejections(delta_alpha: float, n: int, seed0: int) -> int:
    truth = {
        "mlp_block@20": dict(sizes=[1, 2, 4, 8], params_per_knob=1152, **LAW),
        "memtok": dict(
            sizes=[1, 2, 4, 8], params_per_knob=576, **{**LAW, "alpha": 0.6 + delta_alpha}
        ),
    }
    out = 0
    for i in range(n):
        ds = synthetic_carrier_dataset(
            truth, lengths=(64, 128, 256, 512), noise=0.05, rng=seed0 + i
        )
        out += carrier_law(ds, space="log", significance=0.05).verdict == "separate"
    return out


def test_shared_exponents_are_rejected_at_the_nominal_rate_under_the_null():
    # binomial(24, 0.05): P(X >= 5) = 0.007
    assert _rejections(0.0, 24, 100) <= 4


def test_different_exponents_are_detected():
    assert _rejections(-0.25, 8, 200) >= 7


@pytest.mark.slow
def test_null_rejection_rate_is_close_to_significance():
    n = 200
    k = _rejections(0.0, n, 1000)
    print("rejections under the null:", k, "of", n)
    # binomial(200, 0.05) holds 95 % of its mass in [4, 16]
    assert 3 <= k <= 17, k


def test_multiplicative_noise_in_linear_space_is_flagged(sweep):
    codes = {f.code for f in carrier_law(sweep).flags}
    assert "heteroscedastic" in codes  # the sweep's noise is multiplicative (log-normal)
    assert "heteroscedastic" not in {f.code for f in carrier_law(sweep, space="log").flags}


def test_law_in_bytes_has_the_same_exponents(sweep):
    params = carrier_law(sweep, size="params").exponents
    nbytes = carrier_law(sweep, size="bytes").exponents
    for p in ("alpha", "beta"):
        a = params.query(f"parameter == '{p}'")["estimate"].to_numpy()
        b = nbytes.query(f"parameter == '{p}'")["estimate"].to_numpy()
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    c_p = params.query("parameter == 'C' and model == 'separate'")["estimate"].to_numpy()
    c_b = nbytes.query("parameter == 'C' and model == 'separate'")["estimate"].to_numpy()
    alpha = params.query("parameter == 'alpha' and model == 'separate'")["estimate"].to_numpy()
    np.testing.assert_allclose(c_b, c_p / 4.0**alpha, rtol=1e-3)  # float32: 4 bytes/param


def test_bits_per_param_and_per_byte_recover_the_truth(sweep):
    res = carrier_bits(sweep, bootstrap=400, rng=0)
    t = res.table.set_index("carrier")
    for carrier, truth in TRUTH.items():
        k = truth["bits_per_param"]
        assert t.loc[carrier, "bits_per_param_low"] <= k <= t.loc[carrier, "bits_per_param_high"]
        assert t.loc[carrier, "bits_per_byte"] == pytest.approx(
            t.loc[carrier, "bits_per_param"] / 4
        )
        assert t.loc[carrier, "params_per_knob"] == truth["params_per_knob"]
    assert "n_bytes not recorded" in " ".join(res.notes)


def test_carriers_still_learning_when_they_stopped_are_flagged(sweep):
    """Bits of a carrier still learning at its budget are a lower bound: like with like."""
    steps = xr.DataArray(np.arange(0, 601, 10), dims="step")
    steps = steps.assign_coords(step=steps)
    still_learning = sweep["modules"].str.startswith("memtok")  # ΔL linear in the step
    share = xr.where(still_learning, steps / 600, 1 - np.exp(-steps / 50.0))
    gain = sweep["loss_before"] - sweep["loss_after"]
    curves = sweep.assign(
        loss_curve=sweep["loss_before"] - gain * share,
        steps=xr.full_like(sweep["loss_after"], 600.0),
    )
    res = carrier_bits(curves, bootstrap=50, rng=0)
    t = res.table.set_index("carrier")
    assert t.loc["memtok", "n_still_improving"] == t.loc["memtok", "n_cells"] > 0
    assert (t.drop(index="memtok")["n_still_improving"] == 0).all()
    (flag,) = [f for f in res.flags if f.code == "not_converged"]
    n = int(t.loc["memtok", "n_cells"])
    assert f"memtok ({n} of {n})" in str(flag) and "mlp_block" not in str(flag)
    without = carrier_bits(sweep, bootstrap=0).table  # no trajectories: not known
    assert without["n_still_improving"].isna().all()


def _coverage(n: int, seed0: int, bootstrap: int) -> np.ndarray:
    """Share of n datasets whose bits/param interval holds the planted value, per carrier."""
    hits = np.zeros(len(TRUTH))
    for i in range(n):
        ds = synthetic_carrier_dataset(
            TRUTH, lengths=LENGTHS, tokens=True, bits_noise=0.1, rng=seed0 + i
        )
        t = carrier_bits(ds, bootstrap=bootstrap, rng=i).table.set_index("carrier")
        for j, (carrier, truth) in enumerate(TRUTH.items()):
            low, high = t.loc[carrier, ["bits_per_param_low", "bits_per_param_high"]]
            hits[j] += low <= truth["bits_per_param"] <= high
    return hits / n


def test_bits_per_param_interval_covers_the_truth_at_about_the_nominal_rate():
    cover = _coverage(30, 50, 200)
    assert (cover >= 0.8).all(), cover


@pytest.mark.slow
def test_bits_per_param_coverage_over_100_datasets():
    # the study quoted in docs/capacity_bits.md: 0.95, 0.91, 0.93 (mlp_block@20, memtok, kv@20)
    cover = _coverage(100, 1000, 300)
    print("coverage:", dict(zip(TRUTH, cover, strict=True)))
    assert (cover >= 0.88).all(), cover


def test_smallest_carrier_that_stores_n_bits(sweep):
    res = carrier_bits(sweep, bootstrap=300, rng=0)
    cap = res.predict([2000.0, 8000.0])
    t = cap.table.set_index(["carrier", "bits"])
    row = t.loc[("memtok", 8000.0)]
    bpp = res.table.set_index("carrier").loc["memtok", "bits_per_param"]
    assert row["n_params_estimate"] == pytest.approx(8000.0 / bpp)
    assert row["n_params_low"] <= row["n_params_estimate"] <= row["n_params_high"]
    assert row["knob_estimate"] == math.ceil(8000.0 / bpp / 576)
    assert row["spec"] == f"memtok:{int(row['knob_estimate'])}"
    assert row["n_bytes_estimate"] == pytest.approx(4 * row["n_params_estimate"])
    lora = t.loc[("mlp_block@20", 2000.0)]
    assert lora["knob"] == "rank" and lora["spec"].startswith("mlp_block@20, rank ")
    assert not cap.table["beyond_known_capacity"].any()


def test_carrier_prediction_beyond_known_capacity_is_flagged():
    truth = {
        k: dict(v, bits_per_param=4.5 if k == "memtok" else v["bits_per_param"])
        for k, v in TRUTH.items()
    }
    truth["memtok"]["sizes"] = [1, 2, 4]  # 4.5 bits/param × 2,304 params fits in ℓ = 1,024
    ds = synthetic_carrier_dataset(truth, lengths=LENGTHS, tokens=True, rng=3)
    cap = carrier_bits(ds, bootstrap=100, rng=0).predict(5000.0)
    beyond = cap.table.set_index("carrier")["beyond_known_capacity"]
    assert beyond["memtok"] and not beyond["kv@20"] and not beyond["mlp_block@20"]
    assert "beyond_known_capacity" in {f.code for f in cap.flags}


def test_results_follow_the_protocol(sweep, tmp_path):
    for res in (
        carrier_law(sweep),
        carrier_bits(sweep, bootstrap=50, rng=0),
        carrier_bits(sweep, bootstrap=50, rng=0).predict(1000.0),
    ):
        assert str(res.summary()) and res.summary().as_html()
        assert len(res.to_dataframe()) and res.to_dataset().sizes["row"] > 0
        res.save(tmp_path / "r.json")
        assert json.loads((tmp_path / "r.json").read_text())["format"].startswith("lawfit.")


def test_bad_input_is_refused_with_a_fix(sweep):
    with pytest.raises(LawfitError, match="size must be one of"):
        carrier_law(sweep, size="bits")
    with pytest.raises(LawfitError, match="shared must name"):
        carrier_law(sweep, shared=("gamma",))
    with pytest.raises(LawfitError, match="modules"):
        carrier_law(sweep.isel(modules=0, drop=True))
    with pytest.raises(LawfitError, match="bits must be one of"):
        carrier_bits(sweep, bits="nats")
    undated = sweep.assign(dtype=sweep["dtype"].where(False, ""))
    with pytest.raises(LawfitError, match="dtype='float32'"):
        carrier_law(undated, size="bytes")
    assert carrier_law(undated, size="bytes", dtype="bfloat16").size == "bytes"


def test_a_carrier_with_too_few_cells_is_skipped_with_a_flag():
    truth = dict(TRUTH)
    truth["skv@all"] = dict(sizes=[1], params_per_knob=11520, **LAW)
    ds = synthetic_carrier_dataset(truth, lengths=(64, 128, 256, 512), rng=0)
    law = carrier_law(ds)
    assert "carrier_skipped" in {f.code for f in law.flags}
    assert set(law.fits) == {"mlp_block@20", "memtok", "kv@20"}


def test_n_bytes_is_derived_from_the_dtype_or_kept_when_recorded(sweep):
    from lawfit.data import with_n_bytes

    derived, note = with_n_bytes(sweep)
    ok = derived["status"] == "ok"
    np.testing.assert_array_equal(
        derived["n_bytes"].where(ok).values, (4 * sweep["n_params"]).where(ok).values
    )
    assert "derived" in note
    half, _ = with_n_bytes(sweep, "bfloat16")
    assert float(half["n_bytes"].max()) == 2 * float(sweep["n_params"].max())
    recorded = sweep.assign(n_bytes=sweep["n_params"] * 3)
    kept, note = with_n_bytes(recorded)
    assert note is None and kept["n_bytes"].equals(recorded["n_bytes"])
    with pytest.raises(LawfitError, match="unknown storage dtype"):
        with_n_bytes(sweep, "float12")


def test_report_has_a_carrier_section_only_with_two_carriers(sweep):
    from lawfit.report import build_report
    from lawfit.testing import synthetic_dataset

    text = build_report(sweep, bootstrap=20, rng=0).to_markdown()
    assert "Carriers: all cells" in text and "F likelihood-ratio test" in text
    assert "bits_per_byte" in text
    small = synthetic_dataset(ranks=(1, 2, 4), lengths=(64, 128, 256), seeds=1, rng=0)
    one = build_report(small, bootstrap=0, rng=0).to_markdown()
    assert "Carriers:" not in one


def test_cli_carriers_prints_the_law_bits_and_smallest_carriers(sweep, tmp_path, capsys):
    from lawfit.cli import main

    nc = tmp_path / "carriers.nc"
    sweep.to_netcdf(nc)
    out_csv = tmp_path / "bits.csv"
    rc = main(["carriers", str(nc), "--bootstrap", "50", "--store", "5000", "--csv", str(out_csv)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "Capacity law across carriers" in text and "bits/byte" in text
    assert "memtok:" in text  # the smallest memory-token carrier storing 5,000 bits
    assert out_csv.read_text().startswith("carrier,")


def test_cli_carriers_clusters_its_intervals_and_says_when_the_robust_test_cannot_run(
    sweep, tmp_path, capsys
):
    from lawfit.cli import main

    nc = tmp_path / "carriers.nc"
    sweep.to_netcdf(nc)
    assert main(["carriers", str(nc), "--bootstrap", "0", "--cluster", "seed"]) == 0
    text = capsys.readouterr().out
    assert "intervals: cluster-robust over seed (CR2, Bell-McCaffrey dof)" in text
    # 3 carriers x 2 exponents: 4 restrictions, and the sweep has 2 seeds
    assert "4 restrictions need at least 5 clusters; the data have 2 (two groups at a time" in text


def test_cluster_bootstrap_resamples_seeds_across_carriers(sweep):
    res = carrier_bits(sweep, bootstrap=200, unit="seed", rng=0)
    assert "bootstrap over 2 seed clusters" in " ".join(res.notes)
    t = res.table.set_index("carrier")
    assert (t["bits_per_param_low"] <= t["bits_per_param"]).all()
    assert (t["bits_per_param"] <= t["bits_per_param_high"]).all()
    with pytest.raises(LawfitError, match="data_seed"):
        carrier_bits(sweep, bootstrap=20, unit="data_seed")


def test_the_exponents_can_carry_cluster_robust_intervals_over_target_sequences():
    truth = dict(C=0.05, alpha=0.6, beta=0.5, b=0.02)
    spec = dict(sizes=[1, 2, 4, 8], params_per_knob=1152, **truth)
    ds = synthetic_carrier_dataset(
        {"mlp_block@20": spec, "memtok": {**spec, "params_per_knob": 576}}, seeds=3, rng=0
    ).rename({"seed": "data_seed"})
    law = carrier_law(ds, space="log", cluster="data_seed")
    rows = law.exponents.set_index(["model", "carrier", "parameter"])
    for label, fit in law.fits.items():
        ci = fit.conf_int("cluster", cluster="data_seed")
        for p in ("alpha", "beta"):
            assert rows.loc[("separate", label, p), "low"] == ci.loc[p, "low"]
            assert rows.loc[("separate", label, p), "high"] == ci.loc[p, "high"]
    assert any("cluster-robust over data_seed" in n for n in law.notes)
    plain = carrier_law(ds, space="log").exponents.set_index(["model", "carrier", "parameter"])
    assert (plain["low"] != rows["low"]).any()  # the default intervals are others


def test_a_carrier_measured_on_one_cluster_gets_no_interval_and_a_flag(sweep):
    """Its capacity cells in one seed: every cluster draw repeats one mean (or has none).

    The other carriers, on both seeds, keep their (wide, two-cluster) intervals.
    """
    one = sweep.copy(deep=True)
    kv = one["modules"].str.startswith("kv:")
    one["status"] = one["status"].where(~(kv & (one["seed"] == 1)), "not_run")
    res = carrier_bits(one, bootstrap=300, unit="seed", rng=0)
    t = res.table.set_index("carrier")
    assert np.isnan(t.loc["kv@20", ["bits_per_param_low", "bits_per_param_high"]]).all()
    assert np.isfinite(t.loc["kv@20", "bits_per_param"])
    others = t.drop(index="kv@20")
    assert (others["bits_per_param_low"] < others["bits_per_param_high"]).all()
    (flag,) = [f for f in res.flags if f.code == "bootstrap_degenerate"]
    assert flag.message.startswith("kv@20:")
    row = res.predict(2000.0).table.set_index("carrier").loc["kv@20"]
    assert np.isnan(row["n_params_low"]) and np.isnan(row["n_params_high"])  # not infinite
    assert np.isfinite(row["n_params_estimate"])


def test_a_size_missing_from_a_cluster_is_flagged_as_unbalanced(sweep):
    """A carrier's smallest size collected on one seed only: its cluster interval is suspect.

    The bootstrap cannot see that size's spread between seeds, so the flag names the carrier
    and how many of its sizes are short; balanced carriers and cell resampling are not flagged.
    """
    thin = sweep.copy(deep=True)
    short = (thin["modules"] == "kv:1@20") & (thin["seed"] == 1)
    thin["status"] = thin["status"].where(~short, "not_run")
    res = carrier_bits(thin, bootstrap=200, unit="seed", rng=0)
    (flag,) = [f for f in res.flags if f.code == "unbalanced_clusters"]
    assert flag.message.startswith("kv@20 (1 of 3 sizes on fewer than its 2 seed clusters):")
    assert "mlp_block" not in flag.message and "memtok" not in flag.message
    balanced = carrier_bits(sweep, bootstrap=200, unit="seed", rng=0)
    assert "unbalanced_clusters" not in {f.code for f in balanced.flags}
    by_cell = carrier_bits(thin, bootstrap=200, unit="cell", rng=0)
    assert "unbalanced_clusters" not in {f.code for f in by_cell.flags}


def test_a_carrier_storing_its_most_at_the_longest_target_is_a_lower_bound():
    """Bits that still grow at the longest target say only that capacity is at least that."""
    ds = synthetic_carrier_dataset(TRUTH, lengths=LENGTHS, tokens=False, rng=0)
    lora = ds["modules"] == "mlp_block@20"
    longest = ds["length"] == max(LENGTHS)
    # LoRA stores less at the longest target than below it: its capacity is measured
    ds["loss_reduction"] = xr.where(
        lora & longest, 0.01 * ds["loss_reduction"], ds["loss_reduction"]
    )
    res = carrier_bits(ds, bits="dl", bootstrap=0)
    t = res.table.set_index("carrier")
    assert not t.loc["mlp_block@20", "lower_bound"]
    assert t.drop(index="mlp_block@20")["lower_bound"].all()
    cells = res.cells.set_index("carrier")
    assert (cells.loc["mlp_block@20", "length"] < max(LENGTHS)).all()
    (flag,) = [f for f in res.flags if f.code == "lower_bound"]
    assert "at the longest target collected" in str(flag)
