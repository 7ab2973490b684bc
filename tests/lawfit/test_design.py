"""Sequential design (lawfit.design) on synthetic laws of known truth."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import lawfit
from lawfit.design import form_jacobian, next_cells, parameter_se
from lawfit.errors import LawfitError
from lawfit.forms import get_form

TRUTH = {"C": 100.0, "alpha": 0.6, "beta": 0.5, "b": 0.2}


def grid(ranks, lengths):
    return pd.DataFrame([(r, n) for r in ranks for n in lengths], columns=["rank", "length"])


def test_the_analytic_jacobian_equals_central_differences():
    form = get_form("power_law")
    design = grid([1, 2, 4, 8], [64, 256, 1024])
    exact = form_jacobian(form, design, TRUTH)
    numeric = form_jacobian(dataclasses.replace(form, jac=None), design, TRUTH)
    np.testing.assert_allclose(exact, numeric, rtol=1e-6)
    with pytest.raises(LawfitError, match="missing"):
        form_jacobian(form, design.drop(columns="length"), TRUTH)


def test_predicted_standard_errors_match_refits_of_simulated_data():
    # the Fisher approximation is what orders the cells: check it against the truth
    form = get_form("power_law")
    design = grid([1, 2, 4], [64, 128, 256, 512])
    sigma = 0.05
    J = form_jacobian(form, design, TRUTH)
    want = parameter_se(J.T @ J / sigma**2, form.params, ("alpha", "beta"))
    rng = np.random.default_rng(0)
    mean = form.func(design["rank"].to_numpy(float), design["length"].to_numpy(float), **TRUTH)
    draws = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(150):
            y = mean + rng.normal(0, sigma, len(design))
            cells = design.assign(loss_reduction=y, loss_after=5.0)
            p = lawfit.fit(cells, "power_law", exclude=None).params
            draws.append((p["alpha"], p["beta"]))
    got = np.std(draws, axis=0, ddof=1)
    # 150 draws: the sample SD is within ±20 % of the true SD with >99 % probability
    np.testing.assert_allclose(got, [want["se_alpha"], want["se_beta"]], rtol=0.2)
    assert np.corrcoef(np.asarray(draws).T)[0, 1] == pytest.approx(want["corr"], abs=0.1)


def test_standard_errors_do_not_depend_on_the_units_of_another_parameter():
    # C in other units rescales its row and column of the information by k: the SEs of alpha
    # and beta stay the same. A raw-SVD singularity check called this design unidentified
    # (inf) at k = 1e-4, the scale of a KV-prefix law with C ~ 700 (analysis/11).
    form = get_form("power_law")
    design = grid([1, 2, 4], [128, 256, 512])
    J = form_jacobian(form, design, TRUTH)
    info = J.T @ J / 0.1**2
    want = parameter_se(info, form.params, ("alpha", "beta"))
    for k in (1e-4, 1e4):
        units = np.diag([k, 1.0, 1.0, 1.0])
        got = parameter_se(units @ info @ units, form.params, ("alpha", "beta"))
        assert np.isfinite(got["se_alpha"])
        for name in ("se_alpha", "se_beta", "corr"):
            assert got[name] == pytest.approx(want[name], rel=1e-6)
    singular = info.copy()
    singular[:, 0] = singular[0, :] = 0.0
    assert parameter_se(singular, form.params, ("alpha", "beta"))["se_alpha"] == np.inf


def candidates(rows, cost=1.0, informative=True):
    c = pd.DataFrame(rows, columns=["rank", "length"])
    return c.assign(cost=cost, informative=informative)


def test_the_first_pick_is_the_cell_that_identifies_alpha():
    done = grid([1], [64, 128, 256, 512])  # one rank: C and alpha are not separable
    assert np.isinf(
        parameter_se(
            (J := form_jacobian("power_law", done, TRUTH)).T @ J,
            get_form("power_law").params,
            ("alpha", "beta"),
        )["se_alpha"]
    )
    cand = candidates([(1, 1024), (1, 128), (2, 256), (1, 2048)])
    order = next_cells("power_law", TRUTH, 0.1, done, cand)
    assert (order.loc[0, "rank"], order.loc[0, "length"]) == (2, 256)
    assert np.isfinite(order.loc[0, "se_alpha"]) and np.isfinite(order["se_beta"]).all()
    # each pick lowers the summed variance: the standard errors never rise
    assert (np.diff(order["se_alpha"] ** 2 + order["se_beta"] ** 2) <= 1e-12).all()
    # in the given order, alpha stays unidentified until the rank-2 cell comes (third)
    given = next_cells("power_law", TRUTH, 0.1, done, cand, greedy=False)
    assert given[["rank", "length"]].values.tolist() == cand[["rank", "length"]].values.tolist()
    assert np.isinf(given["se_alpha"][:2]).all() and np.isfinite(given["se_alpha"][2:]).all()
    # after all four cells both orders hold the same information
    assert given["se_beta"].iloc[-1] == pytest.approx(order["se_beta"].iloc[-1], rel=1e-9)


def test_cost_decides_between_equally_informative_cells_and_excluded_cells_go_last():
    done = grid([1, 2, 4], [64, 256])
    cand = pd.concat(
        [
            candidates([(2, 512)], cost=3.0),
            candidates([(2, 512)], cost=1.0),
            candidates([(8, 64)], cost=0.01, informative=False),  # predicted memorized
        ],
        ignore_index=True,
    )
    order = next_cells("power_law", TRUTH, 0.1, done, cand)
    assert order["cost"].tolist() == [1.0, 3.0, 0.01]
    assert order["order"].tolist() == [1, 2, 3]
    assert np.isnan(order.loc[2, "se_alpha"])
    # the second copy of a point is worth less than the first, per unit cost as well
    assert order.loc[0, "gain_per_cost"] > order.loc[1, "gain_per_cost"]


def test_the_same_columns_come_back_whatever_is_informative():
    done = grid([1, 2], [64, 256])
    want = {"order", "gain_per_cost", "se_alpha", "se_beta", "corr"}
    for cand in (
        candidates([(8, 64)], informative=False),
        candidates([(8, 64)]).iloc[:0],
        candidates([(2, 512)]),
    ):
        assert want <= set(next_cells("power_law", TRUTH, 0.1, done, cand).columns)


def test_bad_input_is_refused_before_any_work():
    done = grid([1, 2], [64, 256])
    good = candidates([(2, 512)])
    with pytest.raises(LawfitError, match="positive numbers"):
        next_cells("power_law", TRUTH, 0.1, done, good.assign(cost=0.0))
    with pytest.raises(LawfitError, match="informative"):
        next_cells("power_law", TRUTH, 0.1, done, good.drop(columns="informative"))
    with pytest.raises(LawfitError, match="targets must be parameters"):
        next_cells("power_law", TRUTH, 0.1, done, good, targets=("gamma",))
    with pytest.raises(LawfitError, match="sigma"):
        next_cells("power_law", TRUTH, 0.0, done, good)


def test_new_points_come_first_until_the_fit_has_more_points_than_parameters():
    """Replicates do not identify the law's shape: the fit refuses <= 4 distinct points."""
    done = candidates([(1, 128), (1, 128), (1, 256), (1, 256), (2, 256)])  # 3 points
    cand = candidates([(1, 128), (1, 512), (1, 1024)]).assign(cost=[0.01, 1.0, 2.0])
    order = next_cells("power_law", TRUTH, 0.1, done, cand)
    # the nearly free replicate waits until two new points make 5 distinct points
    assert order[["rank", "length"]].values.tolist()[-1] == [1, 128]
    assert np.isinf(order.loc[0, "se_alpha"])  # 4 distinct points: the fit still refuses
    assert np.isfinite(order.loc[1:, "se_alpha"]).all()
    # the fit itself refuses the 3-point design whatever the replicates
    frame = done.assign(
        loss_reduction=[9.0, 8.9, 6.0, 5.9, 9.8], loss_after=5.0, data_seed=[0, 1, 0, 1, 0]
    )
    with pytest.raises(LawfitError, match="only 3 distinct design point"):
        lawfit.fit(frame, bootstrap=0)


def lopsided_design():
    """Sequence 0 at 4 ranks x 5 lengths; sequences 1-2 only at ranks <= 2, lengths <= 512."""
    grid = [(r, ln) for r in (1, 2, 4, 8) for ln in (128, 256, 512, 1024, 2048)]
    short = [(r, ln) for r, ln in grid if r <= 2 and ln <= 512]
    rows = [(*p, 0) for p in grid] + [(*p, d) for p in short for d in (1, 2)]
    return pd.DataFrame(rows, columns=["rank", "length", "data_seed"]), grid, short


def test_with_clusters_the_order_says_how_many_dof_the_cluster_robust_interval_gets():
    """Sequences 1-2 only on the short, low-rank points: beta has ~1 dof; balanced: G - 1."""
    from lawfit.robust import bell_mccaffrey_dof

    done, grid, short = lopsided_design()
    J = form_jacobian("power_law", done, TRUTH)
    lopsided = bell_mccaffrey_dof(J, done["data_seed"].to_numpy())
    assert lopsided[get_form("power_law").params.index("beta")] < 1.2
    rest = [p for p in grid if p not in short]
    cand = pd.concat([candidates(rest).assign(data_seed=d) for d in (1, 2)], ignore_index=True)
    order = next_cells("power_law", TRUTH, 0.1, done, cand, cluster="data_seed")
    assert order["dof_beta"].iloc[0] < 1.4  # one more cell changes little
    np.testing.assert_allclose(order[["dof_alpha", "dof_beta"]].iloc[-1], 2.0, rtol=1e-9)
    assert "dof_beta" not in next_cells("power_law", TRUTH, 0.1, done, cand).columns
    with pytest.raises(LawfitError, match="cluster='data_seed' must be a column of candidates"):
        next_cells(
            "power_law", TRUTH, 0.1, done, cand.drop(columns="data_seed"), cluster="data_seed"
        )


def test_the_cluster_width_criterion_spreads_a_parameter_over_the_clusters_first():
    """Variance buys a new long point on sequence 0; cluster width buys its replicates."""
    done, grid, short = lopsided_design()
    cand = pd.concat(
        [
            candidates([(1, 4096), (2, 4096)]).assign(data_seed=0),
            *(candidates([(1, 2048), (8, 2048)]).assign(data_seed=d) for d in (1, 2)),
        ],
        ignore_index=True,
    )
    kw = dict(cluster="data_seed")
    variance = next_cells("power_law", TRUTH, 0.1, done, cand, **kw)
    width = next_cells("power_law", TRUTH, 0.1, done, cand, criterion="cluster_width", **kw)
    assert variance.loc[0, "data_seed"] == 0 and variance.loc[0, "length"] == 4096
    assert width.loc[0, "data_seed"] != 0 and width.loc[0, "length"] == 2048
    assert width.loc[1, "dof_beta"] > variance.loc[1, "dof_beta"]  # more dof sooner
    with pytest.raises(LawfitError, match="'cluster_width'; got 'cluster_width' with cluster=None"):
        next_cells("power_law", TRUTH, 0.1, done, cand, criterion="cluster_width")


def test_a_clustered_design_can_start_from_no_finished_cells():
    done = pd.DataFrame(columns=["rank", "length", "data_seed"])
    pts = [(1, 128), (2, 256), (1, 512), (4, 512), (2, 1024), (1, 2048)]
    cand = pd.concat([candidates(pts).assign(data_seed=d) for d in (0, 1)], ignore_index=True)
    order = next_cells("power_law", TRUTH, 0.1, done, cand, cluster="data_seed")
    assert np.isfinite(order["dof_beta"].iloc[-1]) and len(order) == 12
