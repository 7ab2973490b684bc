"""lawfit.transfer: a source model's law carried to a new model from a few of its cells."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lawfit
from lawfit.errors import LawfitError
from lawfit.testing import synthetic_dataset
from lawfit.testing.transfer import TRANSFER_TRUTH, transfer_replicate, transfer_sweep
from lawfit.transfer import transfer_law


def _source_fit(seed: int, noise: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lawfit.fit(transfer_sweep(200.0, seed, noise=noise), profile=False)


def test_a_noiseless_second_model_gets_its_scale_and_every_cell_back():
    """Known truth: the new model is the source with C doubled; one anchor recovers it."""
    fit = _source_fit(0, noise=1e-7)
    new = transfer_sweep(400.0, 1, noise=1e-7, sequences=1)
    law = transfer_law(fit, new[(new["rank"] == 1) & (new["length"] == 128)])
    assert law.params["C"] == pytest.approx(400.0, rel=1e-4)
    for p, v in TRANSFER_TRUTH.items():
        assert law.params[p] == pytest.approx(v, rel=1e-4)
    out = law.predict(rank=[2, 8], length=[512, 64], in_cluster=0)
    truth = 400.0 * np.array([2, 8]) ** 0.8 * np.array([512, 64]) ** -0.7 + 1.2
    np.testing.assert_allclose(out["predicted"], truth, rtol=1e-4)
    assert (out["low"] < out["predicted"]).all() and (out["predicted"] < out["high"]).all()
    assert {f.code for f in law.flags} == {"transfer_assumptions", "exact_anchor_fit"}


def test_two_anchors_free_the_offset_too():
    """free=("C", "b"): a second model with its own offset, recovered from two cells."""
    fit = _source_fit(0, noise=1e-7)
    new = transfer_sweep(300.0, 1, noise=1e-7, sequences=1)
    new["loss_reduction"] += 0.8  # b = 2.0 for this model
    anchors = new[(new["rank"] == 1) & new["length"].isin([128, 512])]
    law = transfer_law(fit, anchors, free=("C", "b"))
    assert law.params["C"] == pytest.approx(300.0, rel=1e-3)
    assert law.params["b"] == pytest.approx(2.0, rel=1e-3)


@pytest.mark.parametrize(
    ("free", "anchor_points", "in_cluster"),
    [(("C",), [(1, 128)], 0), (("C",), [(1, 128)], None), (("C", "b"), [(1, 128), (1, 512)], 0)],
)
def test_the_interval_covers_new_cells_at_its_level(free, anchor_points, in_cluster):
    """Calibration with known truth: 95 % intervals cover about 95 % of a second model's cells.

    Each replicate draws a source sweep (4 sequences) and a second model with the same
    exponents and offset and a 1.5× scale, anchors on its sequence 0, and predicts its cell
    at rank 4, ℓ = 256: on sequence 0 (``in_cluster=0``) or on its sequence 1 (None).
    """
    n = 120
    hits = sum(transfer_replicate(rep, free, anchor_points, in_cluster)[0] for rep in range(n))
    assert 0.89 <= hits / n <= 0.995, f"covered {hits} of {n}"


def test_bad_input_says_what_was_expected():
    fit = _source_fit(0, noise=0.04)
    new = transfer_sweep(300.0, 1, noise=0.04, sequences=1)
    one = new[(new["rank"] == 1) & (new["length"] == 128)]
    with pytest.raises(LawfitError, match="carries one fitted law; got DataFrame"):
        transfer_law(new, one)
    with pytest.raises(LawfitError, match="free must name parameters"):
        transfer_law(fit, one, free=("gamma",))
    with pytest.raises(LawfitError, match="frees every parameter"):
        transfer_law(fit, one, free=("C", "alpha", "beta", "b"))
    with pytest.raises(LawfitError, match="at least 2 usable anchor"):
        transfer_law(fit, one, free=("C", "b"))
    memorized = one.assign(loss_after=0.1)
    with pytest.raises(LawfitError, match="at least 1 usable anchor"):
        transfer_law(fit, memorized)
    law = transfer_law(fit, one)
    with pytest.raises(LawfitError, match="not a data_seed of the anchors"):
        law.predict(rank=2, length=128, in_cluster=5)
    with pytest.raises(LawfitError, match=r"predict needs input\(s\) \['length'\]"):
        law.predict(rank=2)


def test_a_predicted_cell_past_the_ceiling_is_marked():
    """A ΔL within ln 2 of the base model's loss would be a memorized cell: marked."""
    fit = _source_fit(0, noise=0.04)
    new = transfer_sweep(300.0, 1, noise=0.04, sequences=1)
    one = new[(new["rank"] == 1) & (new["length"] == 512)]
    one = one.assign(loss_after=one["loss_reduction"] + 1.0)  # loss_before: 2 ΔL + 1
    out = transfer_law(fit, one).predict(rank=[1, 8], length=512, in_cluster=0)
    assert out["recall_predicted"].tolist() == [False, True]


def test_a_second_model_with_other_exponents_falls_outside():
    """The interval tests the assumption: exponents that differ by 0.15 in α are caught."""
    n = 40
    hits = sum(transfer_replicate(rep, extra_alpha=0.15)[0] for rep in range(n))
    assert hits / n < 0.5, f"covered {hits} of {n}: the check cannot see other exponents"


def test_the_command_line_predicts_from_two_csv_files(tmp_path, capsys):
    """`lawfit transfer SOURCE --anchors NEW --at ...`: the library's numbers, and a CSV."""
    from lawfit.cli import main

    source, new = (
        transfer_sweep(200.0, 0, noise=0.04, sequences=4),
        transfer_sweep(300.0, 1, noise=0.04, sequences=1),
    )
    source.to_csv(tmp_path / "a.csv", index=False)
    new[(new["rank"] == 1) & (new["length"] == 128)].to_csv(tmp_path / "b.csv", index=False)
    argv = ["transfer", str(tmp_path / "a.csv"), "--anchors", str(tmp_path / "b.csv")]
    argv += ["--at", "rank=4,length=256", "--in-cluster", "0", "--csv", str(tmp_path / "p.csv")]
    assert main(argv) == 0
    assert "transfer_assumptions" in capsys.readouterr().out
    written = pd.read_csv(tmp_path / "p.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lawfit.fit(source, profile=False)
    law = transfer_law(fit, new[(new["rank"] == 1) & (new["length"] == 128)])
    expected = law.predict(rank=4, length=256, in_cluster=0)
    np.testing.assert_allclose(
        written[["predicted", "low", "high"]], expected[["predicted", "low", "high"]]
    )
    assert main([*argv[:4], "--at", "rank=4,length=256", "--free", "C", "b"]) == 2
    assert "at least 2 usable anchor" in capsys.readouterr().err


def test_a_saved_law_predicts_the_same_after_loading(tmp_path):
    fit = _source_fit(0, noise=0.04)
    new = transfer_sweep(300.0, 1, noise=0.04, sequences=1)
    law = transfer_law(fit, new[(new["rank"] == 1) & (new["length"] == 128)])
    law.save(tmp_path / "law.json")
    back = lawfit.load(tmp_path / "law.json")
    pd.testing.assert_frame_equal(
        back.predict(rank=[2, 4], length=256, in_cluster=0),
        law.predict(rank=[2, 4], length=256, in_cluster=0),
    )


@pytest.mark.parametrize(("extra_alpha", "most_inside"), [(0.0, True), (0.3, False)])
def test_the_leave_one_out_check_sees_whether_the_exponents_carry_over(extra_alpha, most_inside):
    """Each of a second model's cells predicted from its others: inside when α is shared."""
    from lawfit.transfer import transfer_check

    fit = _source_fit(0, noise=0.04)
    new = transfer_sweep(300.0, 1, noise=0.04, sequences=2)
    new["loss_reduction"] = (new["loss_reduction"] - 1.2) * new["rank"] ** extra_alpha + 1.2
    check = transfer_check(fit, new[new["length"] == 256])  # 4 ranks on 2 sequences
    assert len(check) == 8 and (check["anchors"] == 7).all()
    assert bool(check["inside"].mean() >= 0.75) is most_inside
    assert check["data_seed"].tolist() == [0, 1] * 4  # the sequences keep their values
    np.testing.assert_allclose(
        check["error_pct"], 100 * (check["measured"] / check["predicted"] - 1)
    )


def _two_models():
    """A model with a law and one too small for its own (rank 1 only), in one Dataset."""
    import xarray as xr

    big = synthetic_dataset(seeds=3, rng=0).expand_dims(model=["smollm2"])
    small = synthetic_dataset(C=2.0, ranks=(1,), lengths=(128, 256, 512), seeds=2, rng=1)
    two = xr.concat([big, small.expand_dims(model=["gemma"])], "model", join="outer")
    two["status"] = two["status"].fillna("not_run")
    return two


def test_the_figure_draws_each_rank_the_two_laws_and_the_cells():
    pytest.importorskip("matplotlib")
    from lawfit.plotting import plot_transfer

    two = _two_models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lawfit.fit(two.sel(model=["smollm2"]), profile=False)
    law = transfer_law(fit, two.sel(model=["gemma"]), cluster="seed")
    fig = plot_transfer(law, sizes=[4], in_cluster=0)
    ax = fig.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 2  # rank 1 (the anchors') and rank 4 (asked for)
    np.testing.assert_allclose(
        dashed[1].get_ydata(),
        law.predict(rank=4, length=dashed[1].get_xdata(), in_cluster=0)["predicted"],
    )
    filled = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and len(ln.get_xdata())]
    assert sorted(np.concatenate([ln.get_xdata() for ln in filled]).tolist()) == sorted(
        law.anchors["length"].tolist()
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["rank 1", "rank 4"]


def test_make_figures_draws_the_carried_law_only_for_a_model_without_its_own():
    pytest.importorskip("matplotlib")
    from tests.lawfit.test_plotting import _make_figures

    mf = _make_figures()
    fig, _ = mf._fig_transfer(_two_models())
    assert fig.axes[0].get_title() == "smollm2's law carried to gemma"
    both = synthetic_dataset(groups={"model": ["a", "b"]}, seeds=2, rng=0)
    with pytest.raises(mf.Skip, match="every model has a law of its own"):
        mf._fig_transfer(both)
