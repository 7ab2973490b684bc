import json
import subprocess
import sys

import pytest

from lawfit.cli import main
from lawfit.testing import synthetic_dataset


@pytest.fixture
def nc(tmp_path):
    path = tmp_path / "sweep.nc"
    synthetic_dataset(groups={"model": ["a", "b"]}, rng=0).to_netcdf(path)
    return path


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Parametric Memory Law" in out and "examples:" in out and "lawfit fit" in out


def test_python_dash_m_runs_the_same_command(nc):
    """``python -m lawfit`` is the ``lawfit`` script: its help, and its errors' exit code."""
    run = [sys.executable, "-m", "lawfit"]
    help_ = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: lawfit ")
    bad = subprocess.run(
        [*run, "fit", str(nc.with_name("absent.nc"))], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "lawfit fit: error:" in bad.stderr and "absent.nc" in bad.stderr


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: lawfit" in capsys.readouterr().out


def test_fit_sel_json(nc, tmp_path, capsys):
    out = tmp_path / "fit.json"
    rc = main(
        [
            "fit",
            str(nc),
            "--sel",
            "model=a",
            "--bootstrap",
            "50",
            "--unit",
            "seed",
            "--exclude",
            "none",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "R-squared" in text and "alpha" in text
    assert json.loads(out.read_text())["form"]["name"] == "power_law"


def test_fit_by(nc, capsys):
    assert main(["fit", str(nc), "--by", "model", "--exclude", "none"]) == 0
    assert capsys.readouterr().out.count("R-squared") == 2


def test_fit_shared_leaves_out_a_group_too_small_for_its_own_law(tmp_path, capsys):
    """--shared alone still tests the groups that can be fitted; with --json it fails."""
    ds = synthetic_dataset(groups={"model": ["a", "b", "c"]}, rng=0)
    small = ds.where((ds["model"] != "c") | ((ds["rank"] == 1) & (ds["length"] <= 128)))
    small["status"] = small["status"].fillna("diverged")
    path = tmp_path / "three.nc"
    small.to_netcdf(path)
    argv = ["fit", str(path), "--by", "model", "--shared", "alpha", "beta", "--space", "log"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "per-group laws not printed: group {'model': 'c'}" in out
    assert "group c has too few usable cells for its own law" in out
    assert "verdict (F likelihood-ratio test at 0.05)" in out
    assert main([*argv, "--json", str(tmp_path / "fits.json")]) == 2
    assert "group {'model': 'c'}" in capsys.readouterr().err


def test_fit_by_tests_shared_exponents(nc, capsys):
    """Two groups simulated with one law: the test is printed and does not reject."""
    rc = main(["fit", str(nc), "--by", "model", "--shared", "alpha", "beta", "--space", "log"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Shared exponents across model" in out
    assert "verdict (F likelihood-ratio test at 0.05): shared exponents" in out
    assert main(["fit", str(nc), "--shared", "alpha"]) == 2
    assert "name the groups with --by" in capsys.readouterr().err


def test_fit_lack_of_fit_prints_each_groups_test(nc, capsys):
    """Three seeds per (rank, length): each group's F test equals lawfit.lack_of_fit's."""
    import lawfit

    assert main(["fit", str(nc), "--by", "model", "--exclude", "none", "--lack-of-fit"]) == 0
    text = capsys.readouterr().out
    assert text.count("Lack of fit of power_law") == 2 and "lack of fit (b):" in text
    ds = lawfit.data.open_dataset(nc).sel(model="a")
    lof = lawfit.lack_of_fit(lawfit.fit(ds, exclude=None))
    assert f"F = {lof.statistic:.3g} on ({lof.df_lack}, {lof.df_pure}) dof" in text
    # replicates that must share their seed too: none left, a clear error
    args = ["fit", str(nc), "--sel", "model=a", "--exclude", "none", "--lack-of-fit-within", "seed"]
    assert main(args) == 2
    assert "no replicated design point" in capsys.readouterr().err


def test_fit_needs_by_error(nc, capsys):
    """The library's hint (by=['model'], ds.sel(model='a')) is told as this command's flags."""
    assert main(["fit", str(nc)]) == 2
    err = capsys.readouterr().err
    assert "pass --by model to fit each group" in err and "e.g. --sel model=a" in err
    assert "ds.sel" not in err and "by=['model']" not in err


def test_a_printed_note_names_the_sel_flag_not_the_python_call(nc, capsys):
    assert main(["transition", str(nc), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "select one group (--sel DIM=VALUE) to analyse it alone" in out
    assert "ds.sel" not in out


@pytest.mark.parametrize(
    ("hint", "flag"),
    [
        ("e.g. ds.sel(task=...).", "e.g. --sel task=VALUE."),
        ("e.g. ds.sel({'objective': ...}) (or", "e.g. --sel objective=VALUE (or"),
        ("e.g. ds.sel({'task': 'phonebook'}).", "e.g. --sel task=phonebook."),
        ('e.g. ds.sel(task="long_context")', "e.g. --sel task=long_context"),
        ("one group (ds.sel(...)) to", "one group (--sel DIM=VALUE) to"),
    ],
)
def test_every_form_of_the_librarys_selection_hint_becomes_the_flag(hint, flag):
    from lawfit.commands._common import as_command_line

    assert as_command_line(hint) == flag
    assert as_command_line("pass by=['model', 'task'] to", has_by=True) == "pass --by model task to"
    assert as_command_line("pass by=['model'] to") == "pass by=['model'] to"  # no --by here


def test_bad_sel(nc, capsys):
    assert main(["fit", str(nc), "--sel", "model=zzz"]) == 2
    assert "value not found" in capsys.readouterr().err
    assert main(["fit", str(nc), "--sel", "gpu=1"]) == 2
    assert "no dim 'gpu'" in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fit_at_prints_the_predictions_and_the_cluster_robust_mean(nc, capsys):
    import lawfit
    from lawfit.data import open_dataset
    from lawfit.robust import law_mean_interval, law_prediction_interval

    args = ["fit", str(nc), "--sel", "model=a", "--exclude", "none", "--cluster", "seed"]
    rc = main([*args, "--at", "rank=4,length=512", "--at", "rank=8,length=1024"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "prediction intervals (a new cell; from the fit's delta method)" in out
    assert "cluster-robust intervals over seed (the mean law)" in out
    res = lawfit.fit(open_dataset(nc).sel(model="a"), exclude=None)
    want = law_mean_interval(res, cluster="seed", rank=[4.0, 8.0], length=[512.0, 1024.0])
    mean_table, new_table = out.split("(the mean law):")[1].split("(one new cell on a new seed")
    for _, row in want.iterrows():
        assert f"{row['low']:.6f}"[:6] in mean_table and f"{row['high']:.6f}"[:6] in mean_table
    new = law_prediction_interval(res, cluster="seed", rank=[4.0, 8.0], length=[512.0, 1024.0])
    for _, row in new.iterrows():
        assert f"{row['low']:.6f}"[:6] in new_table and f"{row['high']:.6f}"[:6] in new_table


def test_fit_at_rejects_a_malformed_point_before_fitting(nc, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", str(nc), "--at", "rank=4,lenth"])
    assert e.value.code == 2
    assert "expected INPUT=NUMBER items joined by commas" in capsys.readouterr().err


def test_fit_at_names_the_inputs_a_point_lacks_before_fitting(nc, capsys, monkeypatch):
    import lawfit

    def no_fit(*a, **k):
        raise AssertionError("fitted before checking the points")

    monkeypatch.setattr(lawfit, "fit", no_fit)
    assert main(["fit", str(nc), "--at", "rank=4"]) == 2
    err = capsys.readouterr().err
    assert "takes exactly the inputs ['length', 'rank']; got ['rank']" in err


def test_fit_at_passes_on_the_few_clusters_flag(nc, capsys):
    rc = main(
        ["fit", str(nc), "--sel", "model=a", "--exclude", "none", "--bootstrap", "30"]
        + ["--unit", "seed", "--at", "rank=4,length=512"]
    )
    assert rc == 0
    out = capsys.readouterr().out.split("prediction intervals")[1]
    assert "flag: the interval comes from a bootstrap over" in out
    assert "law_prediction_interval" in out


def test_fit_at_in_cluster_predicts_a_cell_of_that_cluster(nc, capsys):
    import lawfit
    from lawfit.data import open_dataset
    from lawfit.robust import law_prediction_interval

    args = ["fit", str(nc), "--sel", "model=a", "--exclude", "none", "--cluster", "seed"]
    assert main([*args, "--at", "rank=4,length=512", "--in-cluster", "1"]) == 0
    table = capsys.readouterr().out.split("(one new cell on seed 1:")[1]
    res = lawfit.fit(open_dataset(nc).sel(model="a"), exclude=None)
    want = law_prediction_interval(res, cluster="seed", in_cluster=1, rank=4.0, length=512.0)
    row = want.iloc[0]
    assert f"{row['predicted']:.6f}"[:6] in table and f"{row['high']:.6f}"[:6] in table


def test_fit_in_cluster_without_cluster_and_at_is_refused_before_fitting(nc, capsys, monkeypatch):
    import lawfit

    def no_fit(*a, **k):
        raise AssertionError("fitted before checking the options")

    monkeypatch.setattr(lawfit, "fit", no_fit)
    assert main(["fit", str(nc), "--in-cluster", "1", "--at", "rank=4,length=512"]) == 2
    assert "give --cluster COL and --at too" in capsys.readouterr().err


def test_predict_by_form_answers_with_every_compared_form(nc, capsys):
    from lawfit.capacity_forms import capacity_by_form
    from lawfit.compare import compare
    from lawfit.data import open_dataset

    args = ["predict", str(nc), "--sel", "model=a", "--length", "512", "--target", "0.8"]
    assert main([*args, "--bootstrap", "0", "--by-form"]) == 0
    out = capsys.readouterr().out
    assert "Capacity by form: rank (aicc weights)" in out
    ds = open_dataset(nc).sel(model="a")
    want = capacity_by_form(compare(ds), length=[512.0], target=0.8, data=ds).averaged
    assert f"{want['estimate'].iloc[0]:.6f}"[:6] in out.split("Capacity by form")[1]
    # several targets, or a saved fit without the data, are refused before any fitting
    assert main([*args, "1.0", "--by-form"]) == 2
    assert "--by-form fits every form" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "{nc}", "--sel", "model=a", "--csv", "{nc}"],
        ["fit", "{nc}", "--sel", "model=a", "--json", "{nc}"],
        ["report", "{nc}", "-o", "{nc}"],
    ],
)
def test_an_output_that_is_the_input_dataset_is_refused_and_the_dataset_kept(nc, capsys, argv):
    before = nc.read_bytes()
    assert main([a.replace("{nc}", str(nc)) for a in argv]) == 2
    assert "that is the input" in capsys.readouterr().err
    assert nc.read_bytes() == before


def test_a_dim_selected_twice_is_refused(nc, capsys):
    assert main(["fit", str(nc), "--sel", "model=a", "--sel", "model=b"]) == 2
    assert "model is already selected (model='a')" in capsys.readouterr().err


@pytest.mark.parametrize(
    "point, message",
    [
        ("rank=4,length=512,length=1024", "names an input twice"),
        ("rank=inf,length=nan", "give a finite number"),
    ],
)
def test_fit_at_refuses_a_point_that_is_not_one_finite_value_per_input(nc, capsys, point, message):
    with pytest.raises(SystemExit) as e:
        main(["fit", str(nc), "--sel", "model=a", "--at", point])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("point", ["rank=-4,length=512", "rank=0,length=0"])
def test_fit_at_refuses_a_point_outside_the_law_before_fitting(nc, capsys, monkeypatch, point):
    import lawfit

    def no_fit(*a, **k):
        raise AssertionError("fitted before checking the points")

    monkeypatch.setattr(lawfit, "fit", no_fit)
    assert main(["fit", str(nc), "--sel", "model=a", "--at", point]) == 2
    assert "are positive; give each a value > 0" in capsys.readouterr().err


@pytest.mark.parametrize("beta", ["-1", "nan", "inf"])
def test_transition_refuses_a_length_exponent_that_is_not_finite_and_non_negative(nc, capsys, beta):
    assert main(["transition", str(nc), "--sel", "model=a", "--beta", beta]) == 2
    assert "beta must be a finite number >= 0" in capsys.readouterr().err


def test_memft_names_the_missing_loss_reduction(nc, tmp_path, capsys):
    import xarray as xr

    path = tmp_path / "no_dl.nc"
    xr.open_dataset(nc).drop_vars("loss_reduction").to_netcdf(path)
    assert main(["memft", str(path), "--sel", "model=a"]) == 2
    assert "lacks the variable(s) ['loss_reduction']" in capsys.readouterr().err


def test_a_group_too_small_for_its_own_law_gets_the_two_ways_on(tmp_path, capsys):
    """--by with one group at a single rank: the error says how to fit or carry a law."""
    both = synthetic_dataset(groups={"model": ["a", "b"]}, rng=0)
    both = both.where((both["model"] == "a") | (both["rank"] == both["rank"][0]))
    both["status"] = both["status"].fillna("not_run")
    path = tmp_path / "both.nc"
    both.to_netcdf(path)
    assert main(["fit", str(path), "--by", "model"]) == 2
    err = capsys.readouterr().err
    assert "group {'model': 'b'}: only a single rank" in err
    assert f"lawfit transfer {path} --sel model=OTHER --anchors {path}" in err


def test_memft_resamples_the_unit_it_is_given(tmp_path, capsys, monkeypatch):
    """--unit reaches memft_savings; without a bootstrap it is refused before any fit."""
    import lawfit.memft as memft
    from lawfit.testing.selection import synthetic_memft_dataset

    path = tmp_path / "memft.nc"
    synthetic_memft_dataset(rng=0).to_netcdf(path)
    assert main(["memft", str(path), "--unit", "seed", "--bootstrap", "0"]) == 2
    assert "--unit seed picks what --bootstrap resamples" in capsys.readouterr().err
    seen = {}
    real = memft.memft_savings

    def spy(ds, **kw):
        seen.update(kw)
        return real(ds, **kw)

    monkeypatch.setattr(memft, "memft_savings", spy)
    assert main(["memft", str(path), "--unit", "seed", "--bootstrap", "20"]) == 0
    assert seen["unit"] == "seed" and seen["bootstrap"] == 20
    assert "MemFT over SFT on the same cells" in capsys.readouterr().out


def test_predict_from_a_saved_fit_refuses_sel(nc, tmp_path, capsys):
    saved = tmp_path / "fit.json"
    fit = ["fit", str(nc), "--sel", "model=a", "--exclude", "none", "--json", str(saved)]
    assert main(fit) == 0
    capsys.readouterr()
    predict = ["predict", str(saved), "--sel", "model=a", "--length", "1024", "--target", "2"]
    assert main(predict) == 2
    assert "is a saved fit" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "{nc}", "--unit", "seed"], "--bootstrap is 0, so it would be ignored"),
        (["fit", "{nc}", "--unit", "foo", "--bootstrap", "50"], "--unit must be one of 'cell'"),
        (
            ["fit", "{nc}", "--sel", "model=a", "--cluster", "seed", "--at", "rank=4,length=512"]
            + ["--in-cluster", "7"],
            "--in-cluster 7 is not a seed of the data, which has [0, 1",
        ),
        (["fit", "{nc}", "--sel", "model=a", "--cluster", "foo"], "--cluster must be column(s)"),
        (["carriers", "{nc}", "--cluster", "foo"], "--cluster must be column(s)"),
        (["fit", "{nc}", "--lack-of-fit-within", "foo"], "--lack-of-fit-within must be column"),
        (["fit", "{nc}", "--by", "model", "--shared", "gamma"], "--shared must be one of 'C'"),
    ],
)
def test_fit_refuses_unknown_columns_and_parameters_before_fitting(
    nc, capsys, monkeypatch, argv, message
):
    import lawfit

    def no_fit(*a, **k):
        raise AssertionError("fitted before checking the columns")

    monkeypatch.setattr(lawfit, "fit", no_fit)
    assert main([a.replace("{nc}", str(nc)) for a in argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["budget", "{nc}", "--extrapolate", "0.5"], "a multiple of the budget > 1"),
        (["budget", "{nc}", "--extrapolate", "2", "--fit-from", "2"], "between 0 and 1"),
        (["carriers", "{nc}", "--store", "-5"], "a number of bits > 0"),
        (["carriers", "{nc}", "--significance", "2"], "a significance level between 0 and 1"),
        (["fit", "{nc}", "--level", "1.5"], "argument --level: expected a confidence level"),
        (["report", "{nc}", "--level", "0"], "argument --level: expected a confidence level"),
        (["fit", "{nc}", "--seed", "-1"], "argument --seed: expected a random seed >= 0"),
        (["transition", "{nc}", "--bootstrap", "1"], "0 (no bootstrap) or a number of replicates"),
        (["fit", "{nc}", "--bootstrap", "-3"], "0 (no bootstrap) or a number of replicates"),
        (["fit", "{nc}", "--huber-delta", "0"], "expected a Huber threshold > 0"),
        (["budget", "{nc}", "--window", "0"], "expected a number of steps >= 1"),
        (["budget", "{nc}", "--budgets", "300", "-5"], "expected a step budget >= 1"),
        (["predict", "{nc}", "--length", "-512", "--target", "1"], "a length in tokens > 0"),
        (["memft", "{nc}", "--lengths", "512", "nan"], "a length in tokens > 0"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(nc, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([a.replace("{nc}", str(nc)) for a in argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_report_refuses_an_output_suffix_it_would_not_honour(nc, capsys, tmp_path):
    assert main(["report", str(nc), "-o", str(tmp_path / "report.xyz")]) == 2
    assert "name the file .md or .html, or give the format" in capsys.readouterr().err
    assert not (tmp_path / "report.xyz").exists()


def test_predict_refuses_a_target_that_is_not_positive(nc, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(nc), "--sel", "model=a", "--target", "-1", "--length", "512"])
    assert e.value.code == 2
    assert "expected a target in nats/token > 0" in capsys.readouterr().err


def test_a_tidy_csv_table_is_read_as_the_same_cells(nc, tmp_path, capsys):
    """One row per cell in a CSV gives the fit the NetCDF file gives."""
    import xarray as xr

    from lawfit.data import as_frame

    frame, _ = as_frame(xr.open_dataset(nc), by=["model"])
    table = tmp_path / "cells.csv"
    frame.to_csv(table, index=False)
    outputs = []
    for data in (nc, table):
        assert main(["fit", str(data), "--sel", "model=a", "--exclude", "none"]) == 0
        outputs.append(capsys.readouterr().out.split("CI:")[0])
    assert "alpha" in outputs[0] and outputs[0] == outputs[1]
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    assert main(["fit", str(tmp_path / "bad.csv")]) == 2
    assert "none of the contract's dims" in capsys.readouterr().err


@pytest.mark.parametrize(
    "module, function, argv",
    [
        ("lawfit.budget", "budget_sensitivity", ["budget"]),
        ("lawfit.fitting", "fit", ["predict", "--length", "512", "--target", "1"]),
    ],
)
def test_an_unknown_resampling_unit_is_refused_before_fitting(
    nc, capsys, monkeypatch, module, function, argv
):
    import importlib

    def no_fit(*a, **k):
        raise AssertionError("fitted before checking --unit")

    monkeypatch.setattr(importlib.import_module(module), function, no_fit)
    command, *rest = argv
    assert main([command, str(nc), "--sel", "model=a", *rest, "--unit", "foo"]) == 2
    assert "--unit must be one of 'cell'" in capsys.readouterr().err
