import numpy as np
import pytest
import xarray as xr

from lawfit.cli import main
from lawfit.errors import LawfitError
from lawfit.report import build_report
from lawfit.testing import synthetic_dataset
from lawfit.testing.tokens import synthetic_token_dataset


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    ds = synthetic_token_dataset(entry_tokens=8, n_steps=8, methods=("sft", "memft_ot"),
                                 ranks=(1, 2, 4, 8, 16, 32), lengths=(64, 128, 256),
                                 seeds=(0, 1), rng=0)
    memft = (ds["rank"] <= 8) & (ds["length"] >= 128)
    ds["status"] = xr.where((ds["objective"] == "sft") | memft, ds["status"], "not_run")
    path = tmp_path_factory.mktemp("data") / "full.nc"
    ds.to_netcdf(path)
    return ds, path


def test_report_has_every_section(full):
    ds, _ = full
    rep = build_report(ds, bootstrap=30)
    md = rep.to_markdown()
    for heading in ("Which form?", "Parametric Memory Law", "Capacity", "Bits stored",
                    "Phase transition", "MemFT savings", "SYNTHETIC"):
        assert heading in md, heading
    assert "threshold_p_star" in md and "Best form by AICc" in md
    res = rep.results["task=long_context"]
    assert {"compare", "law", "capacity", "bits", "transition", "memft"} <= set(res)
    assert "<table" in rep.to_html() and rep.to_html().startswith("<!DOCTYPE html>")


def test_report_degrades_on_cells_only():
    ds = synthetic_dataset(rng=0, seeds=2)
    md = build_report(ds, bootstrap=20).to_markdown()
    assert "no token variables" in md
    assert "no 'objective' dim with 'sft'" in md
    assert "Best form by AICc" in md


def test_report_degrades_without_law_data():
    ds = synthetic_token_dataset(entry_tokens=8, rng=0).drop_vars(
        ["loss_reduction", "loss_before", "loss_after"])
    md = build_report(ds, bootstrap=20).to_markdown()
    assert "no loss_reduction over rank and length" in md
    assert "threshold_p_star" in md  # token-level still runs


def test_report_per_setting(full):
    ds, _ = full
    two = xr.concat([ds, ds.assign_coords(task=["phonebook"])], dim="task")
    rep = build_report(two, bootstrap=0)
    assert set(rep.results) == {"task=long_context", "task=phonebook"}


def test_cli_report_and_commands(full, tmp_path, capsys):
    _, path = full
    out = tmp_path / "r.html"
    assert main(["report", str(path), "-o", str(out), "--bootstrap", "20"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["compare", str(path), "--sel", "objective=sft", "--no-holdout"]) == 0
    assert "best:" in capsys.readouterr().out
    assert main(["transition", str(path), "--bootstrap", "20"]) == 0
    assert "threshold p*" in capsys.readouterr().out
    csv = tmp_path / "p.csv"
    assert main(["predict", str(path), "--sel", "objective=sft", "--length", "128",
                 "--target", "0.5", "--bootstrap", "20", "--csv", str(csv)]) == 0
    assert csv.exists()
    assert main(["memft", str(path), "--bootstrap", "20"]) == 0
    assert "gradient budget" in capsys.readouterr().out


def test_cli_errors_are_reported(full, capsys):
    _, path = full
    assert main(["transition", str(path), "--sel", "model=x"]) == 2
    assert "no dim 'model'" in capsys.readouterr().err
    assert main(["predict", str(path), "--length", "64", "--target", "0.69",
                 "--target-kind", "loss_after", "--bootstrap", "0",
                 "--sel", "objective=sft"]) == 0
    assert main(["report", "/nonexistent.nc"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_save_format_error(tmp_path):
    rep = build_report(synthetic_dataset(rng=0, seeds=2), bootstrap=0)
    with pytest.raises(LawfitError, match="format must be 'md' or 'html'"):
        rep.save(tmp_path / "x", format="pdf")
    rep.save(tmp_path / "x.md")
    assert (tmp_path / "x.md").read_text().startswith("# lawfit report")
    assert np.isfinite(rep.results["all cells"]["law"].params["alpha"])


def test_report_skips_settings_with_nothing_collected(full):
    ds, _ = full
    two = xr.concat([ds.expand_dims(random_ratio=[1.0]),
                     ds.expand_dims(random_ratio=[0.0]).assign(
                         status=lambda d: xr.full_like(d["status"], "not_run"))],
                    dim="random_ratio")
    md = build_report(two, bootstrap=0).to_markdown()
    assert "random_ratio=0.0" in md and "nothing collected" in md
    assert md.count("Best form by AICc") == 1


def test_report_says_when_a_dataset_is_partial():
    ds = synthetic_dataset(rng=0, seeds=2).assign_attrs(complete="false", n_cells=200,
                                                       n_cells_done=112)
    md = build_report(ds, bootstrap=0).to_markdown()
    assert "PARTIAL: 112 of 200 cells" in md
    complete = synthetic_dataset(rng=0, seeds=2).assign_attrs(complete="true")
    assert "PARTIAL" not in build_report(complete, bootstrap=0).to_markdown()
