"""benchmarks/design_calibration.py: coverage of the law's intervals on a given design."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lawfit.errors import LawfitError

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import design_calibration as dc  # noqa: E402

SHIPPED = REPO / "data" / "law_cpu_converged.nc"


def _design(n_per_cluster, clusters=2):
    rows = [
        {
            "rank": 1 + i % 4,
            "length": 64 * 2 ** (i % 5),
            "data_seed": g,
            "mean": 5.0,
            "loss_before": 13.0,
        }
        for g in range(clusters)
        for i in range(n_per_cluster)
    ]
    return pd.DataFrame(rows)


def test_simulated_noise_has_the_asked_structure():
    """A sequence's effect is shared by its cells; a cell's effect is its own."""
    rng = np.random.default_rng(0)
    design = _design(2000)
    between = dc.simulate(design, "data_seed", 0.1, 0.0, rng)
    log_ratio = np.log(between["loss_reduction"] / design["mean"])
    per_cluster = log_ratio.groupby(design["data_seed"]).agg(["std", "mean"])
    assert np.allclose(per_cluster["std"], 0.0, atol=1e-12)  # one value per sequence
    assert per_cluster["mean"].iloc[0] != per_cluster["mean"].iloc[1]
    within = dc.simulate(design, "data_seed", 0.0, 0.05, rng)
    sd = np.log(within["loss_reduction"] / design["mean"]).std()
    assert abs(sd - 0.05) < 0.05 * 0.05  # 4,000 draws: the sd within 5 %


def test_new_cells_take_their_sequences_effect():
    """A new cell of a known sequence shares its effect; an unseen sequence draws its own."""
    rng = np.random.default_rng(1)
    design = _design(3, clusters=3)
    frame = dc.simulate(design, "data_seed", 0.2, 0.0, rng)
    effects = frame.attrs["effects"]
    assert set(effects) == {0, 1, 2, None}
    for g in (0, 1, 2):
        cells = frame[frame["data_seed"] == g]
        assert np.allclose(np.log(cells["loss_reduction"] / 5.0), effects[g], atol=1e-12)
    points = pd.DataFrame({"mean": [2.0, 3.0], "sequence": [1.0, np.nan]})
    values = dc.new_cells(points, frame, 0.0, rng)
    assert values == pytest.approx([2.0 * np.exp(effects[1]), 3.0 * np.exp(effects[None])])
    assert effects[None] not in (effects[0], effects[1], effects[2])


def test_added_points_take_the_laws_value():
    import lawfit

    ds = lawfit.data.open_dataset(SHIPPED).sel(objective="sft")
    res = lawfit.fit(ds, profile=False)
    point = {"rank": 1.0, "length": 256.0, "data_seed": 99.0}  # a sequence not in the data
    design = dc.truth_design(res, ds, "data_seed", [point])
    added = design[design["added"]]
    assert len(design) == len(res.points) + 1 and len(added) == 1
    expected = res.predict(rank=1, length=256, warn=False)["mean"].iloc[0]
    assert added["mean"].iloc[0] == pytest.approx(expected)
    # every point carries its loss_before (the saturating form reads it): the cell's own,
    # and for the added point the mean over the data's cells of its length
    fitted = design[~design["added"]]
    cells = ds.loss_before.squeeze()
    own = [
        float(cells.sel(rank=r, length=n, data_seed=d, seed=s))
        for r, n, d, s in fitted[["rank", "length", "data_seed", "seed"]].itertuples(index=False)
    ]
    assert np.allclose(fitted["loss_before"], own)
    at_256 = float(cells.sel(length=256).mean())  # the same target whatever the rank
    assert added["loss_before"].iloc[0] == pytest.approx(at_256, rel=1e-6)


def test_runs_on_the_shipped_design(capsys):
    assert dc.main([str(SHIPPED), "--n", "10", "--add", "rank=1,length=256,data_seed=99"]) == 0
    out = capsys.readouterr().out
    import lawfit

    fitted = lawfit.fit(lawfit.data.open_dataset(SHIPPED).sel(objective="sft")).points
    cells, sequences = len(fitted), fitted["data_seed"].nunique()  # the shipped data grow
    assert f"({cells} cells, {sequences} sequences)" in out
    rows = [ln for ln in out.splitlines() if ln.lstrip().startswith(("cluster", "wald"))]
    assert len(rows) == 2 * 2 * 3  # 2 designs x 2 intervals x (alpha, beta, alpha - beta)
    coverage = [float(ln.split()[-4]) for ln in rows]
    assert all(0.0 <= c <= 1.0 for c in coverage)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--add", "rank=1,length=256"], "data_seed"),
        (["--n", "3"], "--n must be at least 10"),
        (["--forms", "power_law", "sigmoid"], "unknown form"),
        (["--add", "rank=1,length=128,data_seed=0"], "already hold"),
    ],
)
def test_bad_input_is_refused_with_a_fix(argv, message):
    """Refused before any fitting, saying what was expected."""
    with pytest.raises(LawfitError, match=message):
        dc.main([str(SHIPPED), *argv])


def test_predict_points_get_both_intervals_checked(capsys):
    argv = [str(SHIPPED), "--n", "10", "--predict", "rank=2,length=512"]
    assert dc.main([*argv, "--predict", "rank=1,length=256,data_seed=1"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines() if ln.lstrip().startswith("prediction")]
    assert [" ".join(r[1:5]) for r in rows] == ["cell dL r=2 l=512", "cell dL r=1 l=256"]
    assert "on a new sequence" in out and "on data_seed 1" in out
    assert sum("mean dL r=" in ln for ln in out.splitlines()) == 2  # the mean law's too
    assert all(0.0 <= float(r[-4]) <= 1.0 for r in rows)


@pytest.mark.parametrize(
    ("point", "message"),
    [("rank=1", "names rank, length"), ("rank=1,length=64,data_seed=99", "no cell in the design")],
)
def test_bad_predict_points_are_refused(point, message):
    with pytest.raises(LawfitError, match=message):
        dc.main([str(SHIPPED), "--n", "10", "--predict", point])


def test_form_confusion_counts_each_truths_picks(capsys):
    """--forms: one row per truth, shares of the datasets summing to 1."""
    argv = [str(SHIPPED), "--n", "10", "--forms", "power_law", "saturating"]
    assert dc.main(argv) == 0
    out = capsys.readouterr().out
    assert "the data's own pick" in out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(("power_law ", "saturating "))]
    assert [r[0] for r in rows] == ["power_law", "saturating"]
    for row in rows:
        *shares, n = map(float, row[1:])
        assert n == 10 and sum(shares) == pytest.approx(1.0, abs=2e-3)


def test_a_malformed_point_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        dc.main([str(SHIPPED), "--add", "rank=1,length"])
    assert "INPUT=NUMBER" in capsys.readouterr().err
