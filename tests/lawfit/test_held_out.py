"""lawfit.robust.leave_one_out_coverage: each cell held out of its own fit and predicted."""

import warnings

import numpy as np
import pytest

import lawfit
from lawfit.errors import LawfitError
from lawfit.robust import law_prediction_interval, leave_one_out_coverage
from lawfit.testing import synthetic_dataset

TRUTH = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}


def _fit(seed: int, sequences: int = 3):
    """A sweep with one level per target sequence (sd 0.08 in log) and cells scattered by
    0.03 around it, the model the one-cell interval assumes; fitted in log space."""
    ds = synthetic_dataset(
        **TRUTH,
        ranks=(1, 2, 4),
        lengths=(256, 512, 1024, 2048),
        seeds=sequences,
        noise=0.03,
        noise_kind="run",
        run_effect={"logC": 0.08, "alpha": 0.0, "beta": 0.0},
        rng=np.random.default_rng([21, seed]),
    ).rename({"seed": "data_seed"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lawfit.fit(ds, exclude=None, space="log")


@pytest.mark.parametrize(("level", "low", "high"), [(0.95, 0.91, 0.995), (0.6, 0.45, 0.75)])
def test_held_out_cells_are_covered_at_the_intervals_level_on_a_known_law(level, low, high):
    """Pooled over 8 synthetic sweeps (288 held-out cells), coverage tracks the level."""
    results = [leave_one_out_coverage(_fit(i), cluster="data_seed", level=level) for i in range(8)]
    covered = sum(r.covered for r in results) / sum(r.n for r in results)
    assert low <= covered <= high, covered


def test_each_row_is_the_interval_of_a_fit_without_that_cell():
    res = _fit(0)
    table = leave_one_out_coverage(res, cluster="data_seed").table
    points = res.points.reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        without = lawfit.fit(points.drop(index=5), exclude=None, space="log", profile=False)
    cell = points.loc[5]
    want = law_prediction_interval(
        without, cluster="data_seed", in_cluster=cell["data_seed"], rank=cell["rank"],
        length=cell["length"],
    ).iloc[0]  # fmt: skip
    row = table.iloc[5]
    np.testing.assert_allclose([row["low"], row["high"]], [want["low"], want["high"]], rtol=1e-9)
    assert row["measured"] == cell["loss_reduction"] and row["interval"] == "cell of this sequence"
    assert row["inside"] == (want["low"] <= cell["loss_reduction"] <= want["high"])


def test_a_sequence_with_one_cell_is_predicted_as_a_new_sequence():
    res = _fit(1, sequences=4)
    points = res.points
    alone = points[(points["data_seed"] != 3) | ((points["rank"] == 2) & (points["length"] == 512))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(alone.reset_index(drop=True), exclude=None, space="log", profile=False)
    table = leave_one_out_coverage(res, cluster="data_seed").table
    kinds = table.groupby("data_seed")["interval"].unique()
    assert list(kinds[3]) == ["cell of a new sequence"]
    assert all(list(kinds[s]) == ["cell of this sequence"] for s in (0, 1, 2))
    every_new = leave_one_out_coverage(res, cluster="data_seed", in_cluster=False).table
    assert set(every_new["interval"]) == {"cell of a new sequence"}


def test_the_summary_says_how_many_and_how_likely():
    cover = leave_one_out_coverage(_fit(2), cluster="data_seed")
    assert cover.n == 36 and cover.covered == int(cover.table["inside"].sum())
    assert f"{cover.covered} of 36 cells inside their 95% interval" in str(cover)
    assert 0.0 < cover.pvalue <= 1.0


def test_a_cluster_that_is_not_a_column_is_refused_with_the_choices():
    with pytest.raises(LawfitError, match="cluster='sequence' is not a column.*data_seed"):
        leave_one_out_coverage(_fit(3), cluster="sequence")
