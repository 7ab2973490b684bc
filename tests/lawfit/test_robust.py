"""Cluster-robust intervals (lawfit.robust): CR2, Bell-McCaffrey dof, calibration."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lawfit
from lawfit.errors import LawfitError
from lawfit.report.overview import _summary_law
from lawfit.robust import cr2_covariance
from lawfit.testing import synthetic_dataset

ROOT = Path(__file__).resolve().parents[2]
TRUTH = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}
RANKS, LENGTHS = (1, 2, 4, 8, 16, 32, 64, 128), (64, 128, 256, 512, 1024, 2048, 4096)


def sweep(seeds, rng, noise_kind="run", ranks=RANKS, lengths=LENGTHS):
    return synthetic_dataset(
        **TRUTH,
        ranks=ranks,
        lengths=lengths,
        seeds=seeds,
        noise=0.05,
        noise_kind=noise_kind,
        rng=rng,
    )


def unbalanced_sweep(rng):
    """Sequence 0 at every point, sequences 1-2 only at the short, low-rank ones."""
    ds = sweep(3, rng, ranks=(1, 2, 4, 8), lengths=(128, 256, 512, 1024, 2048))
    df = ds[["loss_reduction", "loss_after"]].to_dataframe().reset_index()
    df = df.rename(columns={"seed": "data_seed"})
    keep = (df["data_seed"] == 0) | ((df["rank"] <= 2) & (df["length"] <= 512))
    return df.loc[keep, ["rank", "length", "data_seed", "loss_reduction", "loss_after"]]


def covered(res, cluster):
    ci = res.conf_int("cluster", cluster=cluster)
    return np.array([ci.loc[p, "low"] <= TRUTH[p] <= ci.loc[p, "high"] for p in ("alpha", "beta")])


def test_cr2_is_unbiased_under_independent_errors_in_an_unbalanced_design():
    """E[CR2] = σ²(JᵀJ)⁻¹ exactly for OLS residuals (what the A_g adjustment is for)."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2, 3], [12, 3, 3, 2])
    J = np.column_stack([np.ones(20), rng.normal(size=20), rng.normal(size=20) + 3 * (groups == 0)])
    maker = np.eye(20) - J @ np.linalg.pinv(J.T @ J) @ J.T
    draws = [cr2_covariance(J, maker @ rng.normal(size=20), groups)[0] for _ in range(6000)]
    truth = np.linalg.inv(J.T @ J)
    np.testing.assert_allclose(np.diag(np.mean(draws, axis=0)), np.diag(truth), rtol=0.06)
    # CR1 (the usual G/(G-1) scaling, no A_g) is biased low on these unequal clusters
    cr1 = [cr1_covariance(J, maker @ rng.normal(size=20), groups) for _ in range(6000)]
    assert (np.diag(np.mean(cr1, axis=0)) < 0.9 * np.diag(truth)).any()


def cr1_covariance(J, e, groups):
    """The CR1 sandwich, written out (the comparison for CR2)."""
    G, (n, k) = groups.max() + 1, J.shape
    scores = np.array([J[groups == g].T @ e[groups == g] for g in range(G)])
    bread = np.linalg.inv(J.T @ J)
    return G / (G - 1) * (n - 1) / (n - k) * bread @ scores.T @ scores @ bread


def test_a_direction_seen_by_one_cluster_alone_is_warned_about():
    """A regressor confined to one cluster: its residuals there carry none of its spread."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], [8, 4, 4])
    J = np.column_stack([np.ones(16), rng.normal(size=16), rng.normal(size=16) * (groups == 0)])
    e = (np.eye(16) - J @ np.linalg.pinv(J.T @ J) @ J.T) @ rng.normal(size=16)
    with pytest.warns(UserWarning, match=r"cluster\(s\) \[0\] alone inform"):
        cr2_covariance(J, e, groups)


def test_equal_clusters_have_g_minus_one_degrees_of_freedom():
    rng = np.random.default_rng(1)
    one = np.column_stack([np.ones(6), rng.normal(size=6)])
    J, groups = np.vstack([one] * 4), np.repeat(np.arange(4), 6)
    e = (np.eye(24) - J @ np.linalg.pinv(J.T @ J) @ J.T) @ rng.normal(size=24)
    _, dof = cr2_covariance(J, e, groups)
    np.testing.assert_allclose(dof, 3.0, rtol=1e-9)


def test_coverage_with_three_target_sequences():
    """3 clusters with a random effect each: 95 % intervals cover ~95 %, Wald's do not."""
    n = 200
    hits, wald = np.zeros(2), np.zeros(2)
    for i in range(n):
        res = lawfit.fit(sweep(3, np.random.default_rng([11, i])), exclude=None, space="log")
        hits += covered(res, "seed")
        ci = res.conf_int("wald")
        wald += [ci.loc[p, "low"] <= TRUTH[p] <= ci.loc[p, "high"] for p in ("alpha", "beta")]
    cover = hits / n
    # MC standard error of a 95 % coverage over 200 datasets: 1.5 points
    assert ((cover > 0.905) & (cover < 0.995)).all(), cover
    assert (wald / n < cover - 0.05).all(), (wald / n, cover)


def test_coverage_when_one_sequence_holds_the_long_targets():
    """Unbalanced clusters: the dof fall below G - 1 and the intervals still cover."""
    n, hits, dof = 200, np.zeros(2), []
    for i in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lawfit.fit(
                unbalanced_sweep(np.random.default_rng([5, i])), exclude=None, space="log"
            )
        hits += covered(res, "data_seed")
        dof.append(res.conf_int("cluster", cluster="data_seed").loc["beta", "dof"])
    assert (hits / n >= 0.93).all(), hits / n
    assert np.median(dof) < 1.5  # sequence 0 alone informs beta: far below G - 1 = 2


def test_the_interval_is_the_estimate_plus_t_times_se_and_defaults_to_the_unit():
    res = lawfit.fit(sweep(3, 2), exclude=None, space="log", bootstrap=50, unit="seed", rng=0)
    ci = res.conf_int("cluster")
    assert ci.equals(res.conf_int("cluster", cluster="seed"))
    half = stats.t.ppf(0.975, ci["dof"]) * ci["se"]
    np.testing.assert_allclose(ci["high"] - res.theta, half, rtol=1e-12)
    np.testing.assert_allclose(res.theta - ci["low"], half, rtol=1e-12)
    assert ci.attrs["method"] == "cluster" and ci.attrs["n_clusters"] == 3
    few = [f for f in res.flags if f.code == "few_clusters"]
    assert few and "conf_int('cluster', cluster='seed')" in few[0].message


def test_a_saved_fit_gives_the_same_interval(tmp_path):
    ds = sweep(3, 5, ranks=(1, 2, 4, 8), lengths=(64, 128, 256, 512))
    res = lawfit.fit(ds.rename({"seed": "data_seed"}), space="log")
    res.save(tmp_path / "fit.json")
    again = lawfit.load(tmp_path / "fit.json")
    assert again.conf_int("cluster", cluster="data_seed").equals(
        res.conf_int("cluster", cluster="data_seed")
    )


def test_bad_requests_are_refused_with_the_fix():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(sweep(3, 3), exclude=None, space="log")
        huber = lawfit.fit(sweep(3, 3), exclude=None, loss="huber")
    with pytest.raises(LawfitError, match="needs the column that defines the clusters"):
        res.conf_int("cluster")
    with pytest.raises(LawfitError, match="'data_seed' is not a column of the fitted cells"):
        res.conf_int("cluster", cluster="data_seed")
    with pytest.raises(LawfitError, match="for least-squares fits; this fit used loss='huber'"):
        huber.conf_int("cluster", cluster="seed")
    one = lawfit.fit(sweep(3, 3).isel(seed=[0]), exclude=None, space="log")
    with pytest.raises(LawfitError, match="single value over the fitted cells"):
        one.conf_int("cluster", cluster="seed")


def test_the_command_line_prints_the_cluster_robust_intervals(tmp_path, capsys):
    from lawfit.cli import main

    path = tmp_path / "three_targets.nc"
    sweep(3, 4, ranks=(1, 2, 4, 8), lengths=(64, 128, 256, 512)).rename(
        {"seed": "data_seed"}
    ).to_netcdf(path)
    assert main(["fit", str(path), "--space", "log", "--cluster", "data_seed"]) == 0
    out = capsys.readouterr().out
    assert "cluster-robust intervals over data_seed:" in out
    res = lawfit.fit(lawfit.data.open_dataset(path), space="log")
    ci = res.conf_int("cluster", cluster="data_seed")
    assert ci.to_string() in out


def two_sequences_neither_identifying_the_law():
    """Cells on two sequences, each too few for the 4-parameter law alone (a CSV-able frame)."""
    df = sweep(2, 5, ranks=(1, 2, 4), lengths=(128, 512, 2048))
    df = df[["loss_reduction", "loss_after"]].to_dataframe().reset_index()
    df = df.rename(columns={"seed": "data_seed"})
    first = (df["data_seed"] == 0) & (df["rank"] <= 2) & (df["length"] >= 512)
    second = (df["data_seed"] == 1) & ((df["rank"] == 4) | (df["length"] == 128))
    df = df[first | second & ~df.set_index(["rank", "length"]).index.isin([(2, 128)])]
    assert df.groupby("data_seed").size().max() <= 4  # neither alone identifies 4 parameters
    return df


def test_the_command_line_names_the_delta_method_where_the_bootstrap_is_degenerate(
    tmp_path, capsys
):
    """`lawfit fit --at` labels its prediction intervals by what computed them."""
    from lawfit.cli import main

    path = tmp_path / "two.csv"
    two_sequences_neither_identifying_the_law().to_csv(path, index=False)
    args = ["fit", str(path), "--exclude", "none", "--bootstrap", "200", "--unit", "data_seed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, "--at", "rank=2,length=256"]) == 0
    out = capsys.readouterr().out
    assert "prediction intervals (a new cell; from the fit's delta method)" in out
    assert "from the fit's bootstrap" not in out


def test_a_two_sequence_cluster_bootstrap_gives_no_interval_and_says_why():
    """Like the law sweep's first identified fit: each sequence alone cannot identify the law.

    Two clusters have three distinct resamples; both single-sequence ones are unidentifiable,
    so every usable replicate is the original data and a percentile interval has zero width.
    """
    df = two_sequences_neither_identifying_the_law()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(df, exclude=None, bootstrap=200, unit="data_seed", rng=0)
    assert res.boot.n_distinct == 1
    codes = {f.code for f in res.flags}
    assert "bootstrap_degenerate" in codes and "few_clusters" not in codes
    assert res.conf_int("percentile").isna().all().all()
    assert res.exponent_correlation.attrs["source"] == "asymptotic covariance"
    pred = res.predict(rank=2, length=256, warn=False)  # the delta method instead
    assert (pred["low"] < pred["mean"]).all() and (pred["mean"] < pred["high"]).all()
    assert pred.attrs["method"] == "delta"  # and says so, not "bootstrap"
    ci = res.conf_int("cluster")
    assert np.isfinite(ci[["low", "high"]].to_numpy()).all()
    # the report's summary row shows that interval instead of [nan, nan], and says so
    summary = _summary_law({"law": res})
    assert "nan" not in summary and "(cluster-robust CI" in summary
    assert f"[{ci.loc['alpha', 'low']:.3g}, {ci.loc['alpha', 'high']:.3g}]" in summary
    # and a capacity answer gets the cluster-robust delta method, not "no interval"
    pred = lawfit.predict_capacity(res, length=256, target=0.1)
    cap = pred.table.iloc[0]
    assert cap["low"] < cap["estimate"] < cap["high"] and cap["dof"] > 0
    assert not any("no interval" in n for n in pred.notes)


def test_a_contrast_of_one_parameter_is_its_cluster_robust_interval():
    res = lawfit.fit(sweep(3, 3), exclude=None, space="log")
    one = res.contrast({"alpha": 1.0}, cluster="seed")
    ci = res.conf_int("cluster", cluster="seed").loc["alpha"]
    for k in ("se", "dof", "low", "high"):
        assert one[k] == pytest.approx(ci[k], rel=1e-12), k
    wald = res.contrast({"alpha": 1.0})
    assert wald["low"] == pytest.approx(res.conf_int("wald").loc["alpha", "low"], rel=1e-12)
    diff = res.contrast({"alpha": 1, "beta": -1}, cluster="seed")
    assert diff["estimate"] == pytest.approx(res.params["alpha"] - res.params["beta"])
    assert "alpha - 1·beta" in diff.name and "CR2" in diff.name
    with pytest.raises(LawfitError, match="nonzero weights to parameters of the fit"):
        res.contrast({"gamma": 1})


def test_the_test_of_alpha_equal_beta_keeps_its_level_with_three_sequences():
    """Truth α = β with per-sequence random slopes: CR2 rejects ~5 %, Wald far more."""
    n, cr2, wald = 200, 0, 0
    for i in range(n):
        ds = synthetic_dataset(
            C=1.0,
            alpha=0.55,
            beta=0.55,
            b=0.02,
            ranks=RANKS,
            lengths=LENGTHS,
            seeds=3,
            noise=0.05,
            noise_kind="run",
            rng=np.random.default_rng([23, i]),
        )
        res = lawfit.fit(ds, exclude=None, space="log")
        cr2 += res.contrast({"alpha": 1, "beta": -1}, cluster="seed")["pvalue"] < 0.05
        wald += res.contrast({"alpha": 1, "beta": -1})["pvalue"] < 0.05
    # binomial(200, 0.05): 99.9 % of draws fall in 2-21
    assert 2 <= cr2 <= 21, cr2
    assert wald > 2 * cr2, (wald, cr2)


def test_the_mean_law_interval_covers_the_true_law_with_three_sequences():
    from lawfit.robust import law_mean_interval

    point = {"rank": [16.0], "length": [1024.0]}
    truth = TRUTH["C"] * 16 ** TRUTH["alpha"] * 1024 ** (-TRUTH["beta"]) + TRUTH["b"]
    n, hits = 150, 0
    for i in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = sweep(3, np.random.default_rng([11, i]))
            res = lawfit.fit(ds.rename({"seed": "data_seed"}), exclude=None, space="log")
        row = law_mean_interval(res, cluster="data_seed", **point).iloc[0]
        assert row["low"] < row["mean"] < row["high"] and 0 < row["dof"] <= 2.0 + 1e-9
        hits += row["low"] <= truth <= row["high"]
    assert hits / n >= 0.92, hits / n


def test_the_mean_law_interval_is_the_log_delta_interval_of_the_law():
    from lawfit.robust import law_mean_interval, log_delta_interval

    res = lawfit.fit(sweep(3, 2).rename({"seed": "data_seed"}), exclude=None, space="log")
    got = law_mean_interval(res, cluster="data_seed", rank=[4.0, 8.0], length=512.0)
    assert list(got["rank"]) == [4.0, 8.0] and got.attrs["level"] == 0.95
    for _, row in got.iterrows():
        p = dict(zip(res.param_names, np.asarray(res.theta, float).T, strict=True))

        def law(rows, r=row["rank"]):
            kw = {name: rows[:, j] for j, name in enumerate(res.param_names)}
            return kw["C"] * r ** kw["alpha"] * 512.0 ** (-kw["beta"]) + kw["b"]

        lo, hi, dof = log_delta_interval(res, law, cluster="data_seed")
        np.testing.assert_allclose([row["low"], row["high"], row["dof"]], [lo, hi, dof])
        mean = p["C"] * row["rank"] ** p["alpha"] * 512.0 ** (-p["beta"]) + p["b"]
        assert row["mean"] == pytest.approx(mean, rel=1e-12)


def test_predict_flags_a_bootstrap_over_few_clusters():
    ds = sweep(3, 4).rename({"seed": "data_seed"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        few = lawfit.fit(ds, exclude=None, space="log", bootstrap=50, unit="data_seed", rng=0)
        cells = lawfit.fit(ds, exclude=None, space="log", bootstrap=50, rng=0)
    flags = few.predict(rank=4, length=512, warn=False).attrs["flags"]
    assert [f.code for f in flags] == ["few_clusters"]
    assert "law_mean_interval" in flags[0].message
    assert cells.predict(rank=4, length=512, warn=False).attrs["flags"] == ()


def test_a_new_cell_on_a_new_sequence_is_covered_with_three_sequences():
    """Fit on sequences 0-2, predict sequence 3's cell: the new-cell interval covers it."""
    from lawfit.robust import law_mean_interval, law_prediction_interval

    point = {"rank": [16.0], "length": [1024.0]}
    n, hits, hits_mean = 120, 0, 0
    for i in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = sweep(4, np.random.default_rng([12, i])).rename({"seed": "data_seed"})
            res = lawfit.fit(ds.sel(data_seed=[0, 1, 2]), exclude=None, space="log")
        new = float(ds["loss_reduction"].sel(rank=16, length=1024, data_seed=3))
        row = law_prediction_interval(res, cluster="data_seed", **point).iloc[0]
        mean_row = law_mean_interval(res, cluster="data_seed", **point).iloc[0]
        assert row["low"] < mean_row["low"] and mean_row["high"] < row["high"]
        hits += row["low"] <= new <= row["high"]
        hits_mean += mean_row["low"] <= new <= mean_row["high"]
    assert hits / n >= 0.92, hits / n
    assert hits_mean / n < 0.88, "the mean law's interval is not one for a new cell"


#: The law sweep's 19 fitted cells after session 19 (rank, length, data_seed): three
#: sequences at ranks 1-2, two of them at rank 4, a fourth sequence with one cell.
SHIPPED_DESIGN = [
    (1, 128, 0), (1, 128, 1), (1, 128, 2), (1, 256, 0), (1, 256, 1), (1, 256, 2),
    (1, 256, 3), (1, 512, 0), (1, 1024, 0), (1, 1024, 1), (1, 1024, 2), (2, 256, 0),
    (2, 256, 1), (2, 256, 2), (2, 512, 0), (2, 512, 1), (2, 512, 2), (4, 512, 1), (4, 512, 2),
]  # fmt: skip


def test_a_new_sequences_cell_is_covered_when_sequences_differ_more_than_cells():
    """On the law sweep's design, sequences 10 % apart and cells 2.5 %: the level holds.

    The law's CR2 variance and the between-sequence term, taken as independent in
    Satterthwaite's formula (before session 20), covered 90 % here
    (benchmarks/design_calibration.py --predict, 2,000 datasets); joined, 93-95 %.
    """
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import design_calibration as dc

    design = pd.DataFrame(SHIPPED_DESIGN, columns=["rank", "length", "data_seed"]).astype(float)
    law = {"C": 342.4, "alpha": 0.8956, "beta": 0.7879, "b": 1.563}
    mean = law["C"] * design["rank"] ** law["alpha"] * design["length"] ** -law["beta"] + law["b"]
    design = design.assign(mean=mean, loss_before=40.0)
    points = pd.DataFrame({"rank": [1.0, 2.0, 4.0], "length": [256.0, 512.0, 1024.0]})
    points["sequence"] = np.nan
    points["mean"] = law["C"] * points["rank"] ** 0.8956 * points["length"] ** -0.7879 + 1.563
    truth = {"alpha": law["alpha"], "beta": law["beta"], "d": law["alpha"] - law["beta"]}
    rng = np.random.default_rng(5)
    table = dc.run_design("t", design, "data_seed", 0.1, 0.025, truth, 300, rng, points)
    new = table[table["interval"] == "prediction"]
    assert len(new) == 3 and new["coverage"].mean() >= 0.925, new


@pytest.mark.parametrize(("sd_between", "seeds"), [(0.15, 40), (0.0, 40)])
def test_variance_components_recover_the_sequence_and_cell_scatter(sd_between, seeds):
    from lawfit.robust import variance_components

    ds = synthetic_dataset(
        **TRUTH,
        seeds=seeds,
        noise=0.05,
        noise_kind="run",
        run_effect={"logC": sd_between, "alpha": 0.0, "beta": 0.0},
        rng=3,
    ).rename({"seed": "data_seed"})
    res = lawfit.fit(ds, exclude=None, space="log")
    vc = variance_components(res, cluster="data_seed")
    assert vc["sd_within"] == pytest.approx(0.05, rel=0.05)
    assert vc["sd_between"] == pytest.approx(sd_between, abs=0.03)
    assert vc["df_between"] == seeds - 1 and vc["n_clusters"] == seeds


def test_the_new_cell_interval_adds_the_scatter_to_the_mean_laws_variance():
    from lawfit.robust import law_mean_interval, law_prediction_interval, variance_components

    res = lawfit.fit(sweep(3, 5).rename({"seed": "data_seed"}), exclude=None, space="log")
    new = law_prediction_interval(res, cluster="data_seed", rank=[2.0, 32.0], length=256.0)
    mean = law_mean_interval(res, cluster="data_seed", rank=[2.0, 32.0], length=256.0)
    vc = variance_components(res, cluster="data_seed")
    assert new.attrs["sd_within"] == pytest.approx(vc["sd_within"])
    var_new = (np.log(new["high"] / new["mean"]) / stats.t.ppf(0.975, new["dof"])) ** 2
    var_mean = (np.log(mean["high"] / mean["mean"]) / stats.t.ppf(0.975, mean["dof"])) ** 2
    np.testing.assert_allclose(var_new - var_mean, vc["var_between"] + vc["var_within"], rtol=1e-6)
    assert (new["dof"] > 0).all() and np.allclose(new["mean"], mean["mean"])


def test_variance_components_need_a_within_cluster_degree_of_freedom():
    from lawfit.robust import variance_components

    df = unbalanced_sweep(7)
    at = df[["data_seed", "rank", "length"]].apply(tuple, axis=1)
    picks = [(0, 4, 1024), (0, 8, 256), (0, 8, 2048), (1, 1, 128), (2, 2, 512)]
    five = df[at.isin(picks)]  # five design points, one cell each: 5 - 4 parameters - 2 < 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(five, exclude=None, space="log")
    with pytest.raises(LawfitError, match="no degree of freedom for the within-cluster"):
        variance_components(res, cluster="data_seed")
    bigger = lawfit.fit(df, exclude=None, space="log")
    assert variance_components(bigger, cluster="data_seed")["df_within"] == len(df) - 4 - 2


def test_a_new_cells_interval_holds_the_mean_laws_where_one_sequence_informs_the_point():
    """Satterthwaite alone would let the scatter's many dof shrink t below the mean's t(1.1)."""
    from lawfit.robust import law_mean_interval, law_prediction_interval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(unbalanced_sweep(4), exclude=None, space="log")
    pts = {"rank": [1.0, 2.0, 8.0, 8.0], "length": [128.0, 512.0, 2048.0, 128.0]}
    mean = law_mean_interval(res, cluster="data_seed", **pts)
    new = law_prediction_interval(res, cluster="data_seed", **pts)
    assert (new["low"] <= mean["low"]).all() and (new["high"] >= mean["high"]).all()
    widened = np.isclose(new["high"], mean["high"])
    assert widened[2:].all() and not widened[:2].any()  # only sequence 0 reaches rank 8
    np.testing.assert_allclose(new["dof"][widened], mean["dof"][widened])


def _without(ds, **cell):
    """The sweep as a frame, less one cell (held out of the fit)."""
    df = ds[["loss_reduction", "loss_after"]].to_dataframe().reset_index()
    held = np.logical_and.reduce([df[k] == v for k, v in cell.items()])
    return df[~held], float(df.loc[held, "loss_reduction"].iloc[0])


def test_a_new_cell_of_a_sequence_in_the_fit_is_covered_and_narrower():
    from lawfit.robust import law_prediction_interval

    n, hits, narrower = 120, 0, 0
    for i in range(n):
        ds = sweep(3, np.random.default_rng([13, i])).rename({"seed": "data_seed"})
        df, held = _without(ds, rank=16, length=1024, data_seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lawfit.fit(df, exclude=None, space="log")
        known = law_prediction_interval(
            res, cluster="data_seed", in_cluster=1, rank=16.0, length=1024.0
        ).iloc[0]
        new = law_prediction_interval(res, cluster="data_seed", rank=16.0, length=1024.0).iloc[0]
        hits += known["low"] <= held <= known["high"]
        narrower += known["high"] / known["low"] < new["high"] / new["low"]
    assert hits / n >= 0.93, hits / n
    assert narrower / n >= 0.8, narrower / n


def test_a_sequences_offset_is_its_shrunken_mean_residual():
    from lawfit.robust import _log_residuals, law_prediction_interval, variance_components

    ds = synthetic_dataset(
        **TRUTH, seeds=3, noise=0.03, noise_kind="run", run_effect={"logC": 0.2}, rng=9
    ).rename({"seed": "data_seed"})
    res = lawfit.fit(ds, exclude=None, space="log")
    vc = variance_components(res, cluster="data_seed")
    assert vc["var_between"] > 0
    mine = res.points["data_seed"].to_numpy() == 2
    k = vc["var_between"] / (vc["var_between"] + vc["var_within"] / mine.sum())
    got = law_prediction_interval(res, cluster="data_seed", in_cluster=2, rank=4.0, length=512.0)
    want = k * _log_residuals(res)[mine].mean()
    assert got.attrs["offset"] == pytest.approx(want, rel=1e-12) and 0.9 < k < 1
    assert got["predicted"].iloc[0] == pytest.approx(got["mean"].iloc[0] * np.exp(want))
    assert got["low"].iloc[0] < got["predicted"].iloc[0] < got["high"].iloc[0]
    with pytest.raises(LawfitError, match=r"in_cluster=7 is not a data_seed .* \[0, 1, 2\]"):
        law_prediction_interval(res, cluster="data_seed", in_cluster=7, rank=4.0, length=512.0)


def test_predict_with_cluster_gives_the_cluster_robust_intervals():
    from lawfit.result import ExtrapolationWarning
    from lawfit.robust import law_mean_interval, law_prediction_interval

    res = lawfit.fit(sweep(3, 8).rename({"seed": "data_seed"}), exclude=None, space="log")
    pt = {"rank": [4.0, 256.0], "length": [512.0, 512.0]}  # rank 256: beyond the fitted 128
    with pytest.warns(ExtrapolationWarning, match="1 of 2 prediction point"):
        mean = res.predict(**pt, cluster="data_seed")
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(mean, law_mean_interval(res, cluster="data_seed", **pt))
    new = res.predict(**pt, interval="prediction", cluster="data_seed", warn=False)
    pd_testing.assert_frame_equal(new, law_prediction_interval(res, cluster="data_seed", **pt))
    assert new["extrapolated"].tolist() == [False, True]


def test_a_new_sequences_cell_interval_is_flagged_over_few_sequences():
    """Fewer than 10 sequences: the new-sequence interval says it can be too narrow."""
    from lawfit.robust import law_prediction_interval

    point = {"rank": 4.0, "length": 512.0}
    few = lawfit.fit(sweep(3, 5).rename({"seed": "data_seed"}), exclude=None, space="log")
    new = law_prediction_interval(few, cluster="data_seed", **point)
    assert [f.code for f in new.attrs["flags"]] == ["new_cell_few_clusters"]
    assert "in_cluster=" in new.attrs["flags"][0].message
    known = law_prediction_interval(few, cluster="data_seed", in_cluster=1, **point)
    assert known.attrs["flags"] == ()
    many = lawfit.fit(sweep(10, 5).rename({"seed": "data_seed"}), exclude=None, space="log")
    assert law_prediction_interval(many, cluster="data_seed", **point).attrs["flags"] == ()


def test_sequence_offsets_recover_planted_offsets_and_match_the_in_cluster_centre():
    from lawfit.robust import law_prediction_interval, sequence_offsets, variance_components

    ds = synthetic_dataset(
        **TRUTH, seeds=4, noise=0.01, noise_kind="run", run_effect={"logC": 0.2}, rng=21
    ).rename({"seed": "data_seed"})
    res = lawfit.fit(ds, exclude=None, space="log")
    got = sequence_offsets(res, cluster="data_seed")
    assert list(got.index) == [0, 1, 2, 3] and (got["cells"] == 56).all()
    # the law's C absorbs the mean offset: what is left is each sequence against the others
    log_y = np.log(ds["loss_reduction"]).mean(["rank", "length"]).to_numpy()
    np.testing.assert_allclose(got["mean_log_residual"], log_y - log_y.mean(), atol=0.01)
    vc = variance_components(res, cluster="data_seed")
    k = vc["var_between"] / (vc["var_between"] + vc["var_within"] / 56)
    np.testing.assert_allclose(got["k"], k, rtol=1e-12)
    for g in range(4):
        one = law_prediction_interval(
            res, cluster="data_seed", in_cluster=g, rank=4.0, length=512.0
        )
        assert one.attrs["offset"] == pytest.approx(got.loc[g, "offset"], rel=1e-12)
    assert np.allclose(got["percent"], 100 * np.expm1(got["mean_log_residual"]))
