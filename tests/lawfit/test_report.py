import importlib
import math
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lawfit
import lawfit.report
from lawfit.cli import main
from lawfit.errors import LawfitError
from lawfit.report import build_report
from lawfit.testing import synthetic_dataset
from lawfit.testing.tokens import synthetic_token_dataset


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    ds = synthetic_token_dataset(
        entry_tokens=8,
        n_steps=8,
        methods=("sft", "memft_ot"),
        ranks=(1, 2, 4, 8, 16, 32),
        lengths=(64, 128, 256),
        seeds=(0, 1),
        rng=0,
    )
    memft = (ds["rank"] <= 8) & (ds["length"] >= 128)
    ds["status"] = xr.where((ds["objective"] == "sft") | memft, ds["status"], "not_run")
    path = tmp_path_factory.mktemp("data") / "full.nc"
    ds.to_netcdf(path)
    return ds, path


def test_report_has_every_section(full):
    ds, _ = full
    rep = build_report(ds, bootstrap=30)
    md = rep.to_markdown()
    for heading in (
        "Which form?",
        "Parametric Memory Law",
        "Capacity",
        "Bits stored",
        "Phase transition",
        "MemFT savings",
        "SYNTHETIC",
    ):
        assert heading in md, heading
    assert "threshold_p_star" in md and "Best form by AICc" in md
    res = rep.results["task=long_context"]
    # two seeds per point: every form's lack of fit beside the comparison, the law's exact
    law_lof = lawfit.lack_of_fit(res["compare"].fits["power_law"])
    assert "Lack of fit against the scatter of replicated cells" in md
    assert f"| power_law | {law_lof.statistic:.4g} | {law_lof.df_lack} |" in md
    assert f"lack of fit p = {lawfit.lack_of_fit(res['law']).pvalue:.2g} |" in md  # summary
    assert "Like with like" not in md  # every form's replicates differ in seed alone
    assert {"compare", "law", "capacity", "bits", "transition", "memft"} <= set(res)
    # the capacity question answered by every compared form, beside the law's own answer
    by_form = res["capacity_forms"].table
    assert set(by_form["form"]) == set(res["compare"].fits) and "between_form_sd" in md
    own = by_form[by_form["form"] == "power_law"]["estimate"].to_numpy()
    np.testing.assert_allclose(own, res["capacity"].table["estimate"], rtol=1e-12)
    assert "<table" in rep.to_html() and rep.to_html().startswith("<!DOCTYPE html>")


def test_lack_of_fit_compares_forms_on_one_footing_where_replicates_differ():
    """Sequences (own loss_before) x seeds: forms reading loss_before get seed replicates
    only, so the report adds every form's test within the sequence."""
    gen = np.random.default_rng(1)
    frame = pd.DataFrame(
        [
            dict(rank=r, length=n, data_seed=d, seed=s, loss_before=12.0 + d)
            for r in (1, 2, 4)
            for n in (128, 256, 512)
            for d in (0, 1)
            for s in (0, 1)
        ]
    )
    law = 20.0 * frame["rank"] ** 0.8 * frame["length"] ** -0.6 + 0.5
    frame["loss_reduction"] = law * np.exp(gen.normal(0, 0.03, len(frame)))
    frame["loss_after"] = frame["loss_before"] - frame["loss_reduction"]
    cmp = lawfit.compare(frame, ["power_law", "saturating"], holdout=(), exclude=None)
    blocks = lawfit.report.law._lack_of_fit_blocks(cmp)
    tables = [x for kind, x in blocks if kind == "table"]
    assert list(tables[0]["replicates differ in"]) == ["data_seed, seed", "seed"]
    assert any(kind == "p" and x.startswith("Like with like") for kind, x in blocks)
    same, _ = lawfit.lack_of_fit_by_form(cmp, within=("data_seed",))
    pd.testing.assert_frame_equal(
        tables[1], same.rename(columns={"replicates": "replicates differ in"})
    )
    assert set(same["replicates"]) == {"seed"} and same["df_pure"].nunique() == 1


def test_report_degrades_on_cells_only():
    ds = synthetic_dataset(rng=0, seeds=2)
    md = build_report(ds, bootstrap=20).to_markdown()
    assert "no token variables" in md
    assert "no 'objective' dim with 'sft'" in md
    assert "Best form by AICc" in md


def test_report_degrades_without_law_data():
    ds = synthetic_token_dataset(entry_tokens=8, rng=0).drop_vars(
        ["loss_reduction", "loss_before", "loss_after"]
    )
    md = build_report(ds, bootstrap=20).to_markdown()
    assert "no loss_reduction over rank and length" in md
    assert "threshold_p_star" in md  # token-level still runs


def test_report_per_setting(full):
    ds, _ = full
    two = xr.concat([ds, ds.assign_coords(task=["phonebook"])], dim="task")
    rep = build_report(two, bootstrap=0)
    assert set(rep.results) == {"task=long_context", "task=phonebook"}


def test_two_models_get_the_test_of_shared_exponents_and_one_model_does_not(full):
    ds, _ = full
    assert "Across models" not in build_report(ds, bootstrap=0).to_markdown()
    two = synthetic_dataset(groups={"model": ["smollm2", "gemma"]}, seeds=2, rng=0)
    rep = build_report(two, bootstrap=0)
    md = rep.to_markdown()
    assert "## Across models: all cells" in md
    assert "Exponents shared across models, F likelihood-ratio test at 0.05: shared." in md
    test = rep.results["models: all cells"]["shared_exponents"]
    assert sorted(test.fits) == ["gemma", "smollm2"] and test.verdict == "shared"
    assert "carried to models without" not in md  # both have laws: the test compares them


def test_a_model_too_small_for_its_own_law_gets_the_other_models_law_carried_over():
    """Each of its cells predicted from the rest by the larger model's law, C refitted."""
    big = synthetic_dataset(seeds=3, rng=0).expand_dims(model=["smollm2"])
    small = synthetic_dataset(C=2.0, ranks=(1,), lengths=(128, 256, 512), seeds=2, rng=1)
    two = xr.concat([big, small.expand_dims(model=["gemma"])], "model", join="outer")
    two["status"] = two["status"].fillna("not_run")
    rep = build_report(two, bootstrap=0)
    md = rep.to_markdown()
    assert "### The law of smollm2 carried to models without a law of their own" in md
    assert "of 6 inside their 95% prediction intervals (the folds share their anchors" in md
    law = rep.results["models: all cells"]["transfer to gemma"]
    assert law.free == ("C",) and law.params["C"] == pytest.approx(2.0, rel=0.1)


def test_cli_report_and_commands(full, tmp_path, capsys):
    _, path = full
    out = tmp_path / "r.html"
    assert main(["report", str(path), "-o", str(out), "--bootstrap", "20"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["compare", str(path), "--sel", "objective=sft", "--no-holdout"]) == 0
    assert "best:" in capsys.readouterr().out
    assert main(["transition", str(path), "--bootstrap", "20"]) == 0
    assert "(95% profile-likelihood)" in capsys.readouterr().out
    assert main(["transition", str(path), "--bootstrap", "0", "--threshold-interval", "delta"]) == 0
    assert "(95% delta (run-clustered))" in capsys.readouterr().out
    csv = tmp_path / "p.csv"
    assert (
        main(
            [
                "predict",
                str(path),
                "--sel",
                "objective=sft",
                "--length",
                "128",
                "--target",
                "0.5",
                "--bootstrap",
                "20",
                "--csv",
                str(csv),
            ]
        )
        == 0
    )
    pred = pd.read_csv(csv)  # the prediction asked for: one target at one length
    assert len(pred) == 1 and pred.loc[0, "length"] == 128 and pred.loc[0, "target"] == 0.5
    assert pred.loc[0, "low"] <= pred.loc[0, "estimate"] <= pred.loc[0, "high"]
    assert main(["memft", str(path), "--bootstrap", "20"]) == 0
    assert "gradient budget" in capsys.readouterr().out


def test_cli_errors_are_reported(full, capsys):
    _, path = full
    assert main(["transition", str(path), "--sel", "model=x"]) == 2
    assert "no dim 'model'" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                str(path),
                "--length",
                "64",
                "--target",
                "0.69",
                "--target-kind",
                "loss_after",
                "--bootstrap",
                "0",
                "--sel",
                "objective=sft",
            ]
        )
        == 0
    )
    assert main(["report", "/nonexistent.nc"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_save_format_error(tmp_path):
    rep = build_report(synthetic_dataset(rng=0, seeds=2), bootstrap=0)
    with pytest.raises(LawfitError, match="format must be one of 'md', 'html'"):
        rep.save(tmp_path / "x", format="pdf")
    assert not (tmp_path / "x").exists()  # refused before anything was written
    with pytest.raises(LawfitError, match=r"\.txt is neither; name the file \.md or \.html"):
        rep.save(tmp_path / "x.txt")  # Markdown under any name, before session 31
    assert not (tmp_path / "x.txt").exists()
    rep.save(tmp_path / "x.txt", format="md")
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == rep.to_markdown()
    rep.save(tmp_path / "x.htm")
    assert (tmp_path / "x.htm").read_text(encoding="utf-8") == rep.to_html()
    rep.save(tmp_path / "x.md")
    assert (tmp_path / "x.md").read_text().startswith("# lawfit report")
    assert (tmp_path / "x.md").read_text(encoding="utf-8") == rep.to_markdown()
    rep.save(tmp_path / "x.html")  # the format follows the suffix
    assert (tmp_path / "x.html").read_text(encoding="utf-8") == rep.to_html()


def test_report_skips_settings_with_nothing_collected(full):
    ds, _ = full
    two = xr.concat(
        [
            ds.expand_dims(random_ratio=[1.0]),
            ds.expand_dims(random_ratio=[0.0]).assign(
                status=lambda d: xr.full_like(d["status"], "not_run")
            ),
        ],
        dim="random_ratio",
    )
    rep = build_report(two, bootstrap=0)
    md = rep.to_markdown()
    assert "Settings with nothing collected (no section): random_ratio=0.0" in md
    assert "## Setting: random_ratio=0.0" not in md and set(rep.results) == {"random_ratio=1.0"}
    assert md.count("Best form by AICc") == 1
    combined = build_report(two.assign_attrs(combined_from="[]"), bootstrap=0).to_markdown()
    assert "Settings none of the combined files holds (their coordinates' product; no " in (
        combined
    )


def test_grid_points_an_outer_join_filled_with_nan_are_no_cells():
    """Two datasets joined by hand (xr.concat, outer): the other's points read 'nan'."""
    ds = synthetic_dataset(rng=0, seeds=2)
    other = ds.assign_coords(length=ds["length"].values * 3)  # no length in common
    parts = [ds.expand_dims(model=["a"]), other.expand_dims(model=["b"])]
    both = xr.concat(parts, "model", join="outer")
    assert "nan" in set(np.asarray(both["status"].values).astype(str).ravel())
    md = build_report(both, bootstrap=0).to_markdown()
    (data,) = [line for line in md.splitlines() if line.startswith("Data:")]
    n = 2 * int((ds["status"] == "ok").sum())
    assert data.startswith(f"Data: {n} cells collected: {n} ok (") and "nan" not in data
    assert f"{n} other points of the dataset's grid" in data


def test_report_says_when_a_dataset_is_partial():
    ds = synthetic_dataset(rng=0, seeds=2).assign_attrs(
        complete="false", n_cells=200, n_cells_done=112
    )
    md = build_report(ds, bootstrap=0).to_markdown()
    assert "PARTIAL: 112 of 200 cells" in md
    assert "The sweep has 200 cells: 112 finished, 88 not yet run" in md
    complete = synthetic_dataset(rng=0, seeds=2).assign_attrs(complete="true")
    assert "PARTIAL" not in build_report(complete, bootstrap=0).to_markdown()


def test_report_counts_the_sweeps_cells_not_the_product_of_the_coordinates():
    """A merged sweep is stored on the product of its coordinates; the report tells them apart."""
    ds = synthetic_dataset(rng=0, seeds=2)
    grid = int(np.prod([ds.sizes[d] for d in ("rank", "length", "seed")]))
    md = build_report(ds.assign_attrs(n_cells=grid - 5, n_cells_done=grid - 9), bootstrap=0)
    text = md.to_markdown()
    assert f"{grid:,} combinations, of which {grid - 5:,} are the sweep's cells" in text
    assert "(the other combinations hold no cell)" in text
    whole = build_report(ds, bootstrap=0).to_markdown()
    assert f"{grid:,} combinations, of which {grid:,} are collected cells." in whole


def _one_cell():
    return synthetic_token_dataset(
        entry_tokens=8, n_steps=4, ranks=(1,), lengths=(64,), seeds=(0,), rng=0
    )


def test_report_on_a_single_cell_skips_what_it_cannot_compute():
    """One cell, one rank (as `collect run --ranks 1 --lengths 64` writes): no crash."""
    rep = build_report(_one_cell(), bootstrap=20)
    md = rep.to_markdown()
    assert "## Summary" in md and "not fitted" in md
    assert "single rank" in md  # the law says why it was skipped
    assert "failed:" not in md and "errors" not in rep.results["task=long_context"]


def test_report_on_memorized_cells_only_says_why_the_law_is_missing():
    ds = synthetic_token_dataset(entry_tokens=8, ranks=(1, 2, 4), lengths=(64, 128), rng=0)
    ds["loss_after"] = xr.full_like(ds["loss_after"], 0.1)  # every cell memorized
    md = build_report(ds, bootstrap=0).to_markdown()
    assert "law (SFT, 95% CI)" in md and "not fitted" in md
    assert "| ok, memorized (loss_after ≤ ln 2) | 12 |" in md
    assert (
        "Ranks collected: [1, 2, 4]; not memorized (loss_after > ln 2, what the law fits): []" in md
    )


def test_report_opens_with_a_summary_and_ends_with_collapsed_provenance(full):
    ds, _ = full
    md = build_report(ds.assign_attrs(config='{"name": "x"}'), bootstrap=30).to_markdown()
    heads = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert heads[0] == "## Summary" and heads[-1] == "## Appendix: provenance"
    summary = md.split("## Dataset")[0]
    assert "α = " in summary and "p* = " in summary and "bits/param" in summary
    assert "memft_ot:" in summary  # a MemFT verdict
    assert "<details><summary>" in md and '"name": "x"' in md.split("<details>")[1]
    combined = ds.assign_attrs(combined_from='[{"name": "memtok.nc", "cells_taken": 3}]')
    appendix = build_report(combined, bootstrap=0).to_markdown().split("<details>")[1]
    assert '"name": "memtok.nc"' in appendix  # collect combine: every sweep it took cells from


def test_memorized_and_never_run_cells_are_counted_apart(full):
    ds, _ = full
    md = build_report(ds, bootstrap=0).to_markdown()
    mem = int(((ds["loss_after"] <= math.log(2)) & (ds["status"] == "ok")).sum())
    assert f"| ok, memorized (loss_after ≤ ln 2) | {mem} |" in md
    assert "not_run" not in md.split("## Setting")[0]  # no product-of-coordinates count


@pytest.mark.parametrize("p_value", [0.001, 0.5])
def test_log_space_selection_follows_the_breusch_pagan_p_value(full, monkeypatch, p_value):
    ds, _ = full
    # the module whose compare() calls _heteroscedasticity (lawfit.compare: the function)
    compare_module = importlib.import_module("lawfit.compare.comparison")
    # first call: the linear-space comparison; later ones: log space, where the spread is gone
    p_values = iter([p_value])
    monkeypatch.setattr(compare_module, "_heteroscedasticity", lambda pts: next(p_values, 0.9))
    res = build_report(ds.sel(method=["sft"]), bootstrap=0).results["task=long_context"]
    assert ("compare_log" in res) == (p_value < lawfit.report.settings.HETEROSCEDASTIC_P)


def test_log_space_is_chosen_for_multiplicative_noise_only():
    """Known truth: log-normal noise is heteroscedastic in ΔL, additive noise is not."""
    kw = {
        "ranks": (1, 2, 4, 8, 16, 32, 64, 128),
        "lengths": (64, 256, 1024, 4096),
        "seeds": 3,
        "rng": 1,
    }
    opt = lawfit.report.settings._Options(bootstrap=0, level=0.95, rng=0, targets_length=None)
    for noise, expected in ((("multiplicative", 0.4), True), (("additive", 0.05), False)):
        ds = synthetic_dataset(noise_model=noise[0], noise=noise[1], **kw)
        st = lawfit.report.settings._Setting("all cells", ds, ds, {})
        lawfit.report.law._model_selection(st, opt)
        assert ("compare_log" in st.results) == expected, noise


def test_an_unexpected_error_in_one_section_does_not_sink_the_report(full, monkeypatch):
    ds, _ = full

    def broken(st, opt):
        raise KeyError("boom")

    sections = tuple((t, broken if t.startswith("Bits") else f) for t, f in lawfit.report.SECTIONS)
    monkeypatch.setattr(lawfit.report, "SECTIONS", sections)
    rep = build_report(ds, bootstrap=0)
    md = rep.to_markdown()
    assert "failed: KeyError: 'boom'" in md and "Phase transition" in md
    assert "sections that failed" in md.split("## Dataset")[0]


def test_impossible_law_values_and_memorized_savings_are_blanked():
    val = pd.DataFrame(
        {
            "method": ["memft_ot"] * 2,
            "rank": [16, 1],
            "length": [128, 512],
            "dL_sft_law": [40.2, 3.4],
            "gain_over_sft_law": [-27.0, 0.05],
            "saving_measured": [-6.2, 0.02],
            "memorized": [True, False],
        }
    )
    ds = xr.Dataset({"loss_before": ("length", [13.4, 13.2])}, coords={"length": [128, 512]})
    out, notes = lawfit.report.memft._plausible_validation(val, ds)
    assert np.isnan(out["dL_sft_law"][0]) and np.isnan(out["gain_over_sft_law"][0])
    assert out["dL_sft_law"][1] == 3.4 and out["saving_measured"][1] == 0.02
    assert np.isnan(out["saving_measured"][0])
    assert any("1 law value(s) above the cell's loss_before" in n for n in notes)


def test_no_saving_is_claimed_for_a_method_its_law_does_not_describe():
    preds = pd.DataFrame(
        {
            "objective": ["memft_ot", "memft_sw"],
            "saving": [0.03, -2.8],
            "saving_low": [-0.05, -3.4],
            "saving_high": [0.13, -1.5],
            "memft_rmse": [0.24, 0.57],
        }
    )
    ms = SimpleNamespace(predictions=preds, fits={"sft": SimpleNamespace(rmse=0.22)})
    kept, notes, claims = lawfit.report.memft._claimable_predictions(ms)
    assert kept["objective"].tolist() == ["memft_ot"]
    assert claims[0].startswith("memft_ot: no saving detected")
    assert "no saving claimed" in claims[1] and "memft_sw" in notes[0]


def test_cli_checks_the_output_path_before_any_work(full, tmp_path, capsys):
    _, path = full
    started = time.perf_counter()
    assert main(["report", str(path), "-o", str(tmp_path / "missing" / "x.md")]) == 2
    assert time.perf_counter() - started < 1.0
    assert "does not exist; create it first" in capsys.readouterr().err
    assert main(["fit", str(path), "--json", str(tmp_path / "missing" / "x.json")]) == 2
    assert main(["report", str(path), "-o", str(tmp_path)]) == 2
    assert "that is a folder" in capsys.readouterr().err


def test_cli_report_announces_each_section(full, tmp_path, capsys):
    _, path = full
    assert main(["report", str(path), "-o", str(tmp_path / "r.md"), "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err
    assert "task=long_context: The Parametric Memory Law" in err
    assert err.count("\n") >= len(lawfit.report.SECTIONS)
    assert (
        main(["report", str(path), "-o", str(tmp_path / "r.md"), "--bootstrap", "0", "--quiet"])
        == 0
    )
    assert capsys.readouterr().err.strip() == f"wrote {tmp_path / 'r.md'}"


def test_three_target_sequences_get_the_cluster_robust_interval():
    """Few target sequences: the report shows the interval calibrated for few clusters."""
    ds = synthetic_dataset(
        ranks=(1, 2, 4, 8), lengths=(64, 128, 256, 512), seeds=3, noise_kind="run", rng=0
    ).rename({"seed": "data_seed"})
    md = build_report(ds, bootstrap=30, rng=0).to_markdown()
    assert "bootstrap clustered over the 3 target sequences" in md
    assert "read the cluster-robust interval below" in md
    law = lawfit.fit(ds, bootstrap=30, unit="data_seed", rng=0)
    ci = law.conf_int("cluster", cluster="data_seed")
    shown = f"alpha [{ci.loc['alpha', 'low']:.3g}, {ci.loc['alpha', 'high']:.3g}]"
    assert "Cluster-robust 95% intervals over the 3 target sequences" in md
    assert shown in md, md
    # the summary row shows it too, not the bootstrap's interval the report calls too narrow
    summary_row = next(line for line in md.splitlines() if line.startswith("| all cells"))
    assert f"[{ci.loc['alpha', 'low']:.3g}, {ci.loc['alpha', 'high']:.3g}]" in summary_row
    assert "(cluster-robust CI: a bootstrap over 3 clusters is too narrow)" in summary_row
    # and the capacity table's interval is the cluster-robust delta method
    assert "low/high: cluster-robust delta method over the data_seed clusters" in md
    from lawfit.robust import variance_components

    vc = variance_components(law, cluster="data_seed")
    assert (
        f"Between target sequences the law's level varies by {100 * vc['sd_between']:.2g} % "
        f"and cells scatter by {100 * vc['sd_within']:.2g} %"
    ) in md
    # and each sequence's offset from the law, one row per sequence
    from lawfit.robust import sequence_offsets

    offsets = sequence_offsets(law, cluster="data_seed")
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and " % | " in ln]
    assert len(rows) == len(offsets) == 3
    for row, (g, o) in zip(rows, offsets.iterrows(), strict=True):
        assert row.startswith(f"| {g} | {o['cells']:.0f} | {o['percent']:+.1f} % |")
    # γ of the one-variable law C·(r/ℓ)^γ + b, with its cluster-robust interval
    ratio = lawfit.fit(ds, "ratio", profile=False)
    g_ci = ratio.conf_int("cluster", cluster="data_seed").loc["alpha"]
    assert (
        f"gives γ = {ratio.params['alpha']:.3g} [{g_ci['low']:.3g}, {g_ci['high']:.3g}] "
        f"(cluster-robust over data_seed, {g_ci['dof']:.1f} dof)"
    ) in md


def test_the_law_section_tests_alpha_equal_beta():
    """Planted α = 0.8, β = 0.4: the report says the one-variable law is rejected."""
    ds = synthetic_dataset(alpha=0.8, beta=0.4, seeds=2, noise=0.02, rng=3)
    md = build_report(ds, bootstrap=0).to_markdown()
    line = next(ln for ln in md.splitlines() if ln.startswith("α − β = "))
    assert "is rejected at 0.05" in line and "asymptotic" in line
    est = float(line.split("=")[1].split("[")[0])
    assert est == pytest.approx(0.4, abs=0.05)


def test_memft_cells_without_a_law_get_their_measured_gain_in_the_summary(full):
    ds, _ = full
    one = ds.copy()
    keep = (one["objective"] == "sft") | ((one["rank"] == 4) & (one["length"] == 128))
    one["status"] = one["status"].where(keep, "not_run")
    rep = build_report(one, bootstrap=0)  # no draws: no shared-exponent saving either
    res = rep.results["task=long_context"]
    v = res["memft"].validation
    assert res["memft"].predictions.empty and len(v) == 1  # one rank: no MemFT law
    gain = float(v["gain_measured"].iloc[0])
    summary = rep.to_markdown().split("## Dataset")[0]
    assert f"memft_ot: measured only, ΔL {gain:+.3g} nats/token vs SFT" in summary
    assert "(1 cell), no saving claimed" in summary


def test_the_budget_section_names_the_cells_still_improving():
    """Slow cells gain > 1 % over the last 10 % of their steps: the report lists them."""
    from lawfit.testing.curves import trajectory_dataset

    ranks, lengths = np.array([1, 2, 4, 8]), np.array([64, 128, 256, 512])
    steps = np.arange(0, 601, 10)
    slow = {(1, 512), (2, 256)}
    curve = np.empty((ranks.size, lengths.size, steps.size))
    for i, r in enumerate(ranks):
        for j, ln in enumerate(lengths):
            tau = 400.0 if (r, ln) in slow else 40.0
            curve[i, j] = 12.0 - 20 * r**0.6 * ln**-0.5 * (1 - np.exp(-steps / tau))
    ds = trajectory_dataset(ranks, lengths, steps, curve, 12.0, 600)
    text = build_report(ds, bootstrap=0).to_markdown()
    section = text.split("### Training budget")[1].split("The law refitted")[0]
    assert "over the last 60 steps): 2." in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "rank" not in line]
    listed = {(int(row.split("|")[1]), int(row.split("|")[2])) for row in rows}
    assert listed == slow


def test_a_planned_length_without_cells_moves_no_query_length(full):
    """A sweep's merge lists lengths it has not run yet: the capacity and MemFT tables
    still ask at the collected lengths and twice (four times) the longest of them."""
    ds, _ = full
    planned = ds.reindex(length=[*ds["length"].values, 2048])
    planned["status"] = planned["status"].fillna("not_run")
    res = build_report(planned, bootstrap=0).results["task=long_context"]
    assert res["capacity"].table["length"].tolist() == [64.0, 128.0, 256.0, 512.0]
    assert set(res["memft"].predictions["length"]) == {64.0, 128.0, 256.0, 512.0, 1024.0}


def test_the_exponents_of_a_preferred_other_form_are_reported():
    from lawfit.report.law import _best_form_exponents
    from lawfit.testing.selection import TRUTHS, synthetic_form_dataset

    ds = synthetic_form_dataset("saturating", TRUTHS["saturating"], seeds=2, rng=3)
    sat = lawfit.fit(ds.isel(modules=0), "saturating")
    st = SimpleNamespace(
        results={"compare": SimpleNamespace(best="saturating", fits={"saturating": sat})}
    )
    ((kind, text),) = _best_form_exponents(st, "cell", 0.95)
    assert kind == "p" and f"α = {sat.params['alpha']:.3g}" in text and "α − β =" in text
    st.results["compare"] = SimpleNamespace(best="power_law", fits={"power_law": sat})
    assert _best_form_exponents(st, "cell", 0.95) == []  # the law itself: nothing to add
    assert _best_form_exponents(SimpleNamespace(results={}), "cell", 0.95) == []
