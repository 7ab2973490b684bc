"""compare(cluster=...): cluster-robust tests of the nested restrictions, calibrated."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lawfit import compare
from lawfit.cluster_wald import cluster_wald_test
from lawfit.compare.robust_nested import ROBUST_COLUMNS, restriction_matrix
from lawfit.errors import LawfitError
from lawfit.forms import get_form
from lawfit.forms_extra import NESTED
from lawfit.robust import _clusters, linearised
from lawfit.testing import synthetic_dataset

GRID = dict(ranks=(1, 2, 4, 8), lengths=(64, 128, 256, 512, 1024), noise=0.03)
SEQUENCE_EFFECTS = {"logC": 0.1, "alpha": 0.08, "beta": 0.08}
FORMS = ["power_law", "ratio", "power_law_no_offset", "ratio_no_offset"]


def sequences(seed, n_sequences=6, **truth):
    """A sweep on ``n_sequences`` sequences (``seed``), each with its own random law."""
    kw = dict(GRID, seeds=n_sequences, noise_kind="run", run_effect=SEQUENCE_EFFECTS)
    return synthetic_dataset(**truth, **kw, rng=np.random.default_rng(seed))


def robust_compare(ds, forms=FORMS, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare(ds, forms, space="log", holdout=(), cluster="seed", **kw)


def pair(res, restricted, general):
    return res.lr_tests.set_index(["restricted", "general"]).loc[(restricted, general)]


def test_one_restriction_is_the_squared_cluster_robust_t_of_its_contrast():
    res = robust_compare(sequences(0, alpha=0.6, beta=0.6))
    row = pair(res, "ratio", "power_law")
    t = res.fits["power_law"].contrast({"alpha": 1, "beta": -1}, cluster="seed")
    assert row["robust_f"] == pytest.approx(t["t"] ** 2, rel=1e-10)
    assert row["robust_df2"] == pytest.approx(t["dof"], rel=1e-10)
    assert row["robust_pvalue"] == pytest.approx(t["pvalue"], rel=1e-8)
    assert row["robust_reason"] == ""


def test_two_restrictions_are_one_joint_wald_test_on_the_general_fit():
    res = robust_compare(sequences(1))
    row = pair(res, "ratio_no_offset", "power_law")
    general = res.fits["power_law"]
    names = list(general.param_names)
    C = np.zeros((2, len(names)))
    C[0, names.index("beta")], C[0, names.index("alpha")] = 1, -1
    C[1, names.index("b")] = 1
    J, e = linearised(general)
    direct = cluster_wald_test(J, e, _clusters(general, "seed"), general.theta, C)
    assert row["df"] == 2
    assert row["robust_f"] == pytest.approx(direct.f_statistic, rel=1e-10)
    assert row["robust_pvalue"] == pytest.approx(direct.pvalue, rel=1e-10)


def test_every_valid_nested_restriction_reads_as_rows_of_its_general_form():
    for restricted, general, what, valid in NESTED:
        if not valid:
            continue
        names = get_form(general).params
        C = restriction_matrix(what, names)
        assert C.shape == (len(what.split(",")), len(names))
        assert len(get_form(general).params) - len(get_form(restricted).params) == len(C)
    C = restriction_matrix("beta = alpha, b = 0", ["C", "alpha", "beta", "b"])
    np.testing.assert_array_equal(C, [[0, -1, 1, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("bad", ["gamma = 0", "beta < alpha", "0 = beta", "beta = 1"])
def test_a_restriction_it_cannot_read_is_refused_with_the_parameters(bad):
    with pytest.raises(LawfitError, match=r"'name = 0' or 'name = other_name'.*NESTED"):
        restriction_matrix(bad, ["C", "alpha", "beta", "b"])


def test_pairs_without_a_wald_test_and_too_few_clusters_say_why():
    res = robust_compare(sequences(2, n_sequences=2), [*FORMS, "broken_power_law"])
    assert list(res.lr_tests.columns[-4:]) == list(ROBUST_COLUMNS)
    broken = res.lr_tests[~res.lr_tests["valid"]]
    assert len(broken) and broken["robust_pvalue"].isna().all()
    assert (broken["robust_reason"] == "not identified under the null").all()
    joint = pair(res, "ratio_no_offset", "power_law")
    assert np.isnan(joint["robust_pvalue"])
    assert joint["robust_reason"] == "2 restrictions need at least 3 clusters; the data have 2"
    assert any("ratio_no_offset in power_law not run: 2 restrictions need" in n for n in res.notes)
    assert np.isfinite(pair(res, "ratio", "power_law")["robust_pvalue"])  # q = 1: 2 suffice


def test_the_robust_columns_survive_a_json_round_trip(tmp_path):
    from lawfit import load

    res = robust_compare(sequences(6), ["power_law", "ratio", "broken_power_law"])
    res.save(tmp_path / "cmp.json")
    back = load(tmp_path / "cmp.json").lr_tests
    pd.testing.assert_frame_equal(back, res.lr_tests, check_dtype=False)


def test_it_holds_its_level_where_the_likelihood_ratio_test_does_not():
    """150 sweeps on 6 sequences with random laws whose mean has beta = alpha."""
    forms = ["power_law", "ratio"]
    rows = [
        pair(robust_compare(sequences(s, alpha=0.6, beta=0.6), forms), "ratio", "power_law")
        for s in range(150)
    ]
    robust = sum(r["robust_pvalue"] < 0.05 for r in rows)
    lr = sum(r["pvalue"] < 0.05 for r in rows)
    assert 1 <= robust <= 16, robust  # binomial(150, 0.05): 99.8 % range
    assert lr >= 45, lr  # cells of one sequence err together: about half rejected
    power = [
        pair(robust_compare(sequences(500 + s, alpha=0.6, beta=0.45), forms), "ratio", "power_law")
        for s in range(20)
    ]
    assert sum(r["robust_pvalue"] < 0.05 for r in power) >= 12


def test_without_cluster_the_tests_are_unchanged_and_the_note_names_the_option():
    ds = sequences(3).rename(seed="data_seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = compare(ds, FORMS, space="log", holdout=())
        robust = compare(ds, FORMS, space="log", holdout=(), cluster="data_seed")
    assert not set(ROBUST_COLUMNS) & set(plain.lr_tests.columns)
    pd.testing.assert_frame_equal(plain.lr_tests, robust.lr_tests[plain.lr_tests.columns])
    assert any("pass cluster='data_seed'" in n for n in plain.notes)
    assert any("robust_pvalue tests each nested pair" in n for n in robust.notes)
    assert "robust_pvalue" in str(robust.summary())
    summed = compare(ds, FORMS, space="log", holdout=(), vuong_clusters="data_seed")
    pd.testing.assert_frame_equal(robust.vuong, summed.vuong)  # the Vuong tests cluster too
    assert not plain.vuong.equals(robust.vuong)


def test_a_cluster_column_it_cannot_use_is_refused_before_fitting():
    ds = sequences(4)
    with pytest.raises(LawfitError, match="cluster must be column"):
        compare(ds, FORMS, cluster="data_seed")
    with pytest.raises(LawfitError, match=r"cluster='seed' has one value.*2 clusters or more"):
        compare(ds.isel(seed=[0]), FORMS, cluster="seed")


def test_the_cli_prints_the_robust_columns(tmp_path, capsys):
    from lawfit.cli import main

    path = tmp_path / "s.nc"
    sequences(5).rename(seed="data_seed").to_netcdf(path)
    assert main(["compare", str(path), "--no-holdout", "--cluster", "data_seed"]) == 0
    out = capsys.readouterr().out
    assert "robust_pvalue" in out and "robust_pvalue tests each nested pair" in out


def test_the_level_benchmark_runs_and_prints_both_tests_per_row(run_benchmark):
    out = run_benchmark("compare_nested_level.py", "--n", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert "likelihood ratio" in lines[0] and "cluster-robust" in lines[0]
    assert "mean LR statistic" in lines[0] and "sequence effects" in lines[0]
    # header, 4 level rows, 4 power rows, 2 control rows (independent cells), the reading
    assert len(lines) == 1 + 8 + 2 + 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequence_effects_on_a_shared_grid_leave_the_offset_alone(seed):
    """Why the LR test of b = 0 is conservative on the benchmark's sweeps (analyses.md §1).

    Sequence effects linear in log r and log ℓ cancel from the pooled fit on a grid every
    sequence shares, orthogonally to b's direction: b̂ and the LR statistic of b = 0 stay 0
    while the same effects move the estimate of β − α, one of their directions.
    """
    kw = dict(GRID, noise=1e-9, seeds=3, noise_kind="run", run_effect=SEQUENCE_EFFECTS)
    ds = synthetic_dataset(b=0.0, alpha=0.6, beta=0.6, **kw, rng=np.random.default_rng(seed))
    res = robust_compare(ds, ["power_law", "ratio", "power_law_no_offset"])
    assert abs(res.fits["power_law"].params["b"]) < 1e-8
    assert pair(res, "power_law_no_offset", "power_law")["statistic"] < 1e-8
    # the same effects do move β − α (one of their directions): its LR statistic is not 0
    assert pair(res, "ratio", "power_law")["statistic"] > 0.1
