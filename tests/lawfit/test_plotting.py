"""Every figure renders from small synthetic data (Agg), and is not blank."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")

import lawfit  # noqa: E402
from lawfit.budget import budget_sensitivity  # noqa: E402
from lawfit.plotting import (  # noqa: E402
    plot_bits_per_parameter,
    plot_budget_sensitivity,
    plot_capacity,
    plot_cascade,
    plot_law_curves,
    plot_loss_recall,
    plot_memft_paired,
    plot_methods,
    plot_model_comparison,
    plot_phase_diagram,
    plot_predicted_vs_measured,
    plot_recall_curve,
    plot_token_histograms,
    plot_trajectories,
    save_figure,
)
from lawfit.plotting.demo import synthetic_figure_data  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUDGET, LOG_EVERY, TAU = 600, 10, 200.0


def _budget_dataset(*, all_memorized=False):
    """Synthetic law cells with a known trajectory, logged every 10 steps up to 600.

    ΔL(t) = ΔL · (1 − e^(−t/τ)) / (1 − e^(−T/τ)) with τ = 200: memorized cells
    (loss_after ≤ ln 2) stop at T = 300, the others run to the budget T = 600, still
    gaining (e^(−2.5) − e^(−3)) / (1 − e^(−3)) ≈ 3.4 % of ΔL over the last 100 steps.
    """
    ds = synthetic_figure_data(small=True, rng=0)["cells"].copy()
    memorized = (ds["loss_after"] <= np.log(2.0)) | all_memorized
    stop = xr.where(memorized, BUDGET // 2, BUDGET).where(ds["status"] == "ok")
    t = xr.DataArray(np.arange(0, BUDGET + 1, LOG_EVERY), dims="step")
    g = 1 - np.exp(-t / TAU)
    curve = ds["loss_before"] - ds["loss_reduction"] * g / (1 - np.exp(-stop / TAU))
    ds["loss_curve"] = curve.where(t <= stop).transpose(*ds["loss_after"].dims, "step")
    ds["steps"] = stop
    ds = ds.assign_coords(step=t.values)
    ds.attrs["config"] = json.dumps({"train": {"max_steps": BUDGET, "log_every": LOG_EVERY}})
    return ds


@pytest.fixture(scope="module")
def data():
    d = synthetic_figure_data(small=True, rng=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lawfit.fit(d["cells"], bootstrap=30, rng=0)
        cmp = lawfit.compare(d["cells"])
        sft = d["tokens"].sel(objective=["sft"])
        pt = lawfit.phase_transition(sft, bootstrap=20, rng=0)
        bits = lawfit.bits_per_parameter(d["cells"])
        budget = budget_sensitivity(_budget_dataset(), bootstrap=20, rng=0)
        budget_none = budget_sensitivity(_budget_dataset(all_memorized=True), bootstrap=0)
    return dict(
        d,
        fit=fit,
        cmp=cmp,
        sft_tokens=sft,
        pt=pt,
        bits=bits,
        budget=budget,
        budget_none=budget_none,
    )


def _not_blank(path, min_colors=20, min_ink=0.02):
    img = mpl.image.imread(path)
    rgb = img[..., :3].reshape(-1, 3)
    n_colors = len(np.unique((rgb * 255).astype(np.uint8), axis=0))
    ink = float((rgb.min(axis=1) < 0.95).mean())
    assert n_colors > min_colors, f"{path}: only {n_colors} distinct colours"
    assert ink > min_ink, f"{path}: {ink:.3%} non-white pixels"


FIGS = {
    "law_curves": lambda d: plot_law_curves(d["fit"], d["cells"]),
    "pred_vs_measured": lambda d: plot_predicted_vs_measured(d["fit"]),
    "loss_recall": lambda d: plot_loss_recall(d["cells"]),
    "token_histograms": lambda d: plot_token_histograms(d["sft_tokens"], result=d["pt"]),
    "recall_curve": lambda d: plot_recall_curve(d["pt"], d["sft_tokens"]),
    "phase_diagram": lambda d: plot_phase_diagram(d["cells"], d["fit"]),
    "phase_diagram_frac": lambda d: plot_phase_diagram(d["sft_tokens"], order="frac_above"),
    "cascade": lambda d: plot_cascade(d["pt"]),
    "methods": lambda d: plot_methods(d["tokens"]),
    "memft_paired": lambda d: plot_memft_paired(d["tokens"]),
    "trajectories": lambda d: plot_trajectories(d["tokens"]),
    "model_comparison": lambda d: plot_model_comparison(d["cmp"]),
    "capacity": lambda d: plot_capacity(d["fit"], d["cells"]),
    "bits": lambda d: plot_bits_per_parameter(d["bits"]),
    "budget_sensitivity": lambda d: plot_budget_sensitivity(d["budget"]),
    "budget_sensitivity_no_budget_stop": lambda d: plot_budget_sensitivity(d["budget_none"]),
}


@pytest.mark.parametrize("name", list(FIGS))
def test_figure_renders_and_is_not_blank(name, data, tmp_path):
    fig = FIGS[name](data)
    assert isinstance(fig, mpl.figure.Figure)
    files = save_figure(fig, tmp_path / name, formats=("png", "pdf"), dpi=80)
    for f in files:
        assert os.path.getsize(f) > 2000
    _not_blank(files[0])


def test_draws_on_given_axes(data):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert plot_law_curves(data["fit"], ax=ax) is fig
    assert plot_cascade(data["pt"], ax=ax) is fig
    plt.close(fig)


def test_style_sizes_and_fonts(data):
    from lawfit.plotting.style import DOUBLE, SINGLE, rc_params

    assert SINGLE == 3.3 and DOUBLE == 7.0
    rc = rc_params()
    assert min(rc[k] for k in ("font.size", "xtick.labelsize", "legend.fontsize")) >= 7
    fig = plot_law_curves(data["fit"])
    assert fig.get_size_inches()[0] == pytest.approx(SINGLE)
    fig = plot_methods(data["tokens"])
    assert fig.get_size_inches()[0] == pytest.approx(DOUBLE)


def test_memft_paired_draws_each_pair_at_its_point(data):
    """One marker per (MemFT, SFT) pair at the point with the most targets, per method."""
    from lawfit.memft.paired import paired_cells

    fig = plot_memft_paired(data["tokens"], rank=4, length=data["tokens"]["length"].values[0])
    pairs = paired_cells(data["tokens"], ["memft_ot", "memft_sw"])
    at = pairs[(pairs["rank"] == 4) & (pairs["length"] == data["tokens"]["length"].values[0])]
    drawn = [len(line.get_xdata()) for line in fig.axes[0].lines if line.get_marker() == "o"]
    assert drawn == [int((at["objective"] == m).sum()) for m in ("memft_ot", "memft_sw")]
    assert "rank 4" in fig._suptitle.get_text()
    with pytest.raises(lawfit.LawfitError, match="at least two methods"):
        plot_memft_paired(data["tokens"].sel(objective=["sft"]))


def test_memft_figure_without_memft_cells_says_why(data):
    with pytest.raises(lawfit.LawfitError, match="at least two methods"):
        plot_methods(data["tokens"].sel(objective=["sft"]))


def test_import_lawfit_does_not_import_matplotlib():
    code = (
        "import sys, lawfit; assert 'matplotlib' not in sys.modules; "
        "import lawfit.plotting; assert 'matplotlib' not in sys.modules; "
        "lawfit.plotting.plot_law_curves"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_missing_matplotlib_gives_install_hint(monkeypatch, data):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(lawfit.LawfitError, match=r"pip install 'lawfit\[plot\]'"):
        plot_law_curves(data["fit"])


def _make_figures():
    spec = importlib.util.spec_from_file_location(
        "make_figures", os.path.join(ROOT, "paper_figures", "make_figures.py")
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_figures"] = mod  # dataclasses resolve annotations through it
    spec.loader.exec_module(mod)
    return mod


def test_make_figures_draws_all_and_skips_with_reasons(data, tmp_path):
    mf = _make_figures()
    rows = mf.draw_all(
        data["cells"], data["tokens"], out=str(tmp_path), bootstrap=20, formats=("png",), dpi=60
    )
    status = {r["figure"]: r["status"] for r in rows if r["status"] != "note"}
    # the synthetic token trajectories are logged on a geometric step grid without the
    # per-cell 'steps': no budget can be read back from them
    budget = [r for r in rows if r["figure"] == "budget_sensitivity"]
    assert budget[0]["status"] == "skipped" and "steps" in budget[0]["reason"], budget
    # one carrier (the LoRA placement) only: the carrier comparison is skipped, saying why
    carriers = [r for r in rows if r["figure"] == "carriers"]
    assert carriers[0]["status"] == "skipped" and "2 carriers" in carriers[0]["reason"], carriers
    # replicates are initialisation seeds, not target sequences: no sequence offsets to draw
    seqs = [r for r in rows if r["figure"] == "sequence_offsets"]
    assert seqs[0]["status"] == "skipped" and "data_seed" in seqs[0]["reason"], seqs
    skipped = ("budget_sensitivity", "carriers", "sequence_offsets")
    assert {v for k, v in status.items() if k not in skipped} == {"drawn"}, rows
    assert len(status) == len(mf.FIGURES) + len(mf.DATASET_FIGURES)
    index = (tmp_path / "INDEX.md").read_text()
    assert "SYNTHETIC" in index
    # a dataset without MemFT or token variables: those figures are skipped, not crashed
    cells = data["cells"]
    rows = mf.draw_all(
        cells, out=str(tmp_path / "cells_only"), bootstrap=10, formats=("png",), dpi=60
    )
    st = {r["figure"]: (r["status"], r["reason"]) for r in rows}
    assert st["methods"][0] == "skipped" and "MemFT" in st["methods"][1]
    assert st["recall_vs_p"][0] == "skipped" and "token" in st["recall_vs_p"][1]
    assert st["fig2a_law_vs_rank"][0] == "drawn"
    assert st["budget_sensitivity"][0] == "skipped" and "trajector" in st["budget_sensitivity"][1]
    assert not any(s == "error" for s, _ in st.values())


def test_make_figures_draws_budget_sensitivity_from_trajectories(tmp_path):
    mf = _make_figures()
    rows = mf.draw_all(
        _budget_dataset(),
        out=str(tmp_path),
        bootstrap=10,
        formats=("png",),
        dpi=60,
        only=["budget_sensitivity"],
    )
    st = {r["figure"]: r for r in rows}
    assert st["budget_sensitivity"]["status"] == "drawn", rows
    _not_blank(st["budget_sensitivity"]["files"][0])
    assert any("still improving" in r["reason"] for r in rows if r["status"] == "note")


def test_budget_figure_shows_the_known_gain_and_tolerance(data):
    fig = plot_budget_sensitivity(data["budget"])
    a1, a2 = fig.axes[:2]
    gain = (np.exp(-2.7) - np.exp(-3.0)) / (1 - np.exp(-3.0))  # τ = 200, last 60 (10 %) of 600
    ys = np.concatenate([ln.get_ydata() for ln in a2.lines if ln.get_marker() == "o"])
    assert ys.size == int((data["budget"].convergence["stop_reason"] == "budget").sum())
    np.testing.assert_allclose(ys, gain, rtol=1e-9)
    assert any(np.allclose(ln.get_ydata(), 0.01) for ln in a2.lines)  # the tolerance
    assert a2.get_xscale() == "log" and "last 60 steps" in a2.get_ylabel()
    assert "optimizer steps" in a1.get_xlabel()
    assert fig.get_size_inches()[0] == pytest.approx(7.0)
    import matplotlib.pyplot as plt

    own, axs = plt.subplots(1, 2)
    assert plot_budget_sensitivity(data["budget_none"], axes=axs) is own
    plt.close("all")


def test_make_figures_marks_partial_data(data, tmp_path):
    mf = _make_figures()
    cells = data["cells"].copy()
    st = cells["status"].values.copy()
    st[0, :, :] = "not_run"
    cells["status"] = (cells["status"].dims, st)
    for v in ("loss_reduction", "loss_after"):
        cells[v] = cells[v].where(cells["status"] == "ok")
    mf.draw_all(
        cells, out=str(tmp_path), bootstrap=10, formats=("png",), dpi=60, only=["fig2a_law_vs_rank"]
    )
    assert "Partial data" in (tmp_path / "INDEX.md").read_text()


def test_docs_figures_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    doc = Path(ROOT, "docs", "figures.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in blocks:
            exec(compile(b, "docs/figures.md", "exec"), {})
    assert (tmp_path / "figures" / "law.pdf").exists()


def _axes_texts(fig):
    ax = fig.axes[0]
    legend = ax.get_legend()
    return [t.get_text() for t in ax.texts] + (
        [t.get_text() for t in legend.get_texts()] if legend is not None else []
    )


def test_recall_figure_carries_the_reports_threshold_caveats(data):
    import dataclasses

    from lawfit.protocol import Flag

    pt = data["pt"]
    assert not {f.code for f in pt.flags} & {"few_informative_runs", "threshold_not_logistic"}
    plain = plot_recall_curve(pt, data["sft_tokens"])
    assert not any("unreliable" in t or "not logistic" in t for t in _axes_texts(plain))
    flagged = dataclasses.replace(
        pt,
        flags=(
            Flag("few_informative_runs", "only a few runs locate the threshold"),
            Flag("threshold_not_logistic", "logistic and isotonic thresholds differ"),
        ),
    )
    texts = [
        " ".join(t.split()) for t in _axes_texts(plot_recall_curve(flagged, data["sft_tokens"]))
    ]
    tf = pt.token_fit
    want = f"interval unreliable: only {tf.n_runs_informative} of {tf.n_runs} runs informative"
    assert any(want in t for t in texts), texts
    assert any("not logistic" in t and "isotonic" in t for t in texts), texts


def _law_lines(ax, lengths):
    return {
        float(ln.get_label()): np.asarray(ln.get_ydata(), float)
        for ln in ax.lines
        if ln.get_linestyle() == "-" and ln.get_label() in {str(int(L)) for L in lengths}
    }


@pytest.mark.parametrize("with_data", [True, False])
def test_law_lines_stop_at_the_loss_before_ceiling(data, with_data):
    from lawfit.plotting.law import CEILING_LABEL

    fit, cells = data["fit"], data["cells"]
    ok = cells["status"] == "ok"
    ceiling = cells["loss_before"].where(ok).mean(["rank", "seed"]).to_series()
    # the uncut law passes the ceiling at the shortest length within the fitted ranks
    top = fit.predict(rank=np.array([fit.input_ranges["rank"][1]]), length=64.0)["mean"]
    assert float(top.iloc[0]) > 1.5 * ceiling[64]
    fig = plot_law_curves(fit, cells if with_data else None)
    lines = _law_lines(fig.axes[0], ceiling.index)
    assert set(lines) == {float(L) for L in fit.residuals["length"].unique()}
    for L, y in lines.items():
        assert y.size and y.max() <= ceiling[L] * (1 + 1e-12), (L, y.max(), ceiling[L])
    assert CEILING_LABEL in _axes_texts(fig)


def test_law_lines_are_uncut_below_the_ceiling(data):
    from lawfit.plotting.law import CEILING_LABEL

    cells = data["cells"].copy()
    cells["loss_before"] = cells["loss_before"] + 100.0
    fig = plot_law_curves(data["fit"], cells)
    lines = _law_lines(fig.axes[0], data["fit"].residuals["length"].unique())
    assert all(y.size == 80 for y in lines.values())  # n_grid points, none cut
    assert CEILING_LABEL not in _axes_texts(fig)


def test_the_provenance_note_keeps_clear_of_a_bottom_figure_legend(tmp_path):
    from PIL import Image

    from lawfit.plotting.style import annotate_provenance, new_figure, save_figure

    fig, ax = new_figure(3.3, 2.0)
    ax.plot([0, 1], [0, 1], label="a long legend entry that reaches the right edge")
    fig.legend(loc="outside lower center")
    annotate_provenance(fig, text="PARTIAL data: 1 of 2 cells collected")
    _, y = fig.texts[-1].get_position()
    assert y > 1  # above the figure: the tight box grows there, the legend does not move
    files = save_figure(fig, tmp_path / "note", formats=("png",), dpi=100)
    img = np.asarray(Image.open(files[0]).convert("L"))
    inked = np.flatnonzero((img < 200).any(axis=1))
    assert inked[0] < 0.1 * img.shape[0]  # the note is drawn, on top
    fig, ax = new_figure(3.3, 2.0)
    annotate_provenance(fig, text="note")
    assert fig.texts[-1].get_position()[1] < 0  # no figure legend: below, as before


def test_budget_legend_names_each_rank_once_and_what_filled_means(data):
    fig = plot_budget_sensitivity(data["budget"])
    texts = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    hit = data["budget"].convergence
    ranks = sorted({str(int(r)) for r in hit.loc[hit["stop_reason"] == "budget", "rank"]})
    assert sorted(t for t in texts if t.isdigit()) == ranks  # once each
    assert {"still improving", "plateaued"} <= set(texts)


def test_law_title_quotes_the_cluster_robust_interval_with_few_clusters():
    from lawfit.robust import preferred_interval
    from lawfit.testing import synthetic_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(
            synthetic_dataset(seeds=3, rng=8), exclude=None, bootstrap=50, unit="seed", rng=0
        )
    ci, method, _ = preferred_interval(res)
    assert method == "cluster-robust CI"
    title = plot_law_curves(res).axes[0].get_title()
    lo, hi = ci.loc["alpha", "low"], ci.loc["alpha", "high"]
    assert f"α = {res.params['alpha']:.2f} [{lo:.2f}, {hi:.2f}]" in title
    assert "(cluster-robust CI)" in title
    own = res.conf_int()
    assert f"[{own.loc['alpha', 'low']:.2f}, {own.loc['alpha', 'high']:.2f}]" not in title


def test_a_length_with_memorized_cells_only_is_in_the_law_legend(data):
    cells = data["cells"].copy()
    shortest = int(cells["length"].min())
    cells["loss_after"] = cells["loss_after"].where(cells["length"] != shortest, 0.1)
    cells["loss_reduction"] = cells["loss_before"] - cells["loss_after"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lawfit.fit(cells)
    assert shortest not in set(fit.residuals["length"])  # no law line at that length
    assert str(shortest) in _axes_texts(plot_law_curves(fit, cells))


def test_methods_figure_draws_sft_on_the_memft_targets_only():
    from lawfit.testing.selection import synthetic_memft_dataset

    ds = synthetic_memft_dataset(rng=0).rename(seed="data_seed")
    ds["exact_match"] = xr.zeros_like(ds["loss_reduction"])
    ds["loss_reduction"] = ds["loss_reduction"] + 0.7 * (ds["data_seed"] == 1)
    memft_seq1 = (ds["objective"] == "memft_ot") & (ds["data_seed"] == 1)
    ds["status"] = ds["status"].where(~memft_seq1, "not_run")
    L = int(ds["length"][0])
    ax = plot_methods(ds, lengths=[L]).axes[1]
    sft = ds["loss_reduction"].sel(objective="sft", length=L, data_seed=0)
    drawn = [np.asarray(ln.get_ydata(), float) for ln in ax.lines if len(ln.get_xdata())]
    want = sft.where(ds["status"].sel(objective="sft", length=L, data_seed=0) == "ok")
    want = want.dropna("rank").to_numpy()
    assert any(y.shape == want.shape and np.allclose(y, want) for y in drawn), drawn


def test_law_band_is_cluster_robust_with_few_clusters():
    from lawfit.robust import law_mean_interval
    from lawfit.testing import synthetic_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(
            synthetic_dataset(seeds=3, rng=8), exclude=None, bootstrap=50, unit="seed", rng=0
        )
    ax = plot_law_curves(res, n_grid=40).axes[0]
    L = float(res.residuals["length"].min())
    line = next(ln for ln in ax.lines if ln.get_label() == str(int(L)))
    grid = np.asarray(line.get_xdata(), float)
    want = law_mean_interval(res, cluster="seed", rank=grid, length=L)
    ys = np.concatenate([p.vertices[:, 1] for c in ax.collections for p in c.get_paths()])
    assert np.isclose(ys, want["high"].iloc[0], rtol=1e-9).any()
    boot = res.predict(rank=grid[:1], length=L, warn=False)
    assert not np.isclose(ys, boot["high"].iloc[0], rtol=1e-6).any()


def test_capacity_line_is_dashed_where_the_rank_is_extrapolated():
    from lawfit.capacity import predict_capacity
    from lawfit.testing import synthetic_dataset

    ds = synthetic_dataset(ranks=(1, 2), lengths=(128, 256, 512, 1024), seeds=2, rng=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(ds, exclude=None)
        lengths = np.geomspace(128, 1024, 30)
        table = predict_capacity(
            res, length=lengths, target=float(res.predict(rank=2, length=256)["mean"].iloc[0])
        ).table
    extra = table["extrapolated"].to_numpy(bool)
    assert extra.any() and not extra.all()  # ranks above 2 inside the fitted lengths
    ax = plot_capacity(
        res,
        lengths=lengths,
        target=float(res.predict(rank=2, length=256)["mean"].iloc[0]),
        target_kind="loss_reduction",
    ).axes[0]
    solid = next(ln for ln in ax.lines if ln.get_linestyle() == "-")
    assert np.asarray(solid.get_xdata()).max() <= lengths[~extra].max()
    dashed = next(ln for ln in ax.lines if ln.get_linestyle() == "--")
    assert np.asarray(dashed.get_xdata()).min() < 1024  # starts inside the fitted lengths


def test_sequence_offsets_draw_each_sequences_mean_deviation_and_the_components():
    from lawfit.plotting import plot_sequence_offsets
    from lawfit.robust import variance_components
    from lawfit.testing import synthetic_dataset

    ds = synthetic_dataset(
        seeds=3, noise=0.03, noise_kind="run", run_effect={"logC": 0.1}, rng=4
    ).rename(seed="data_seed")
    res = lawfit.fit(ds, exclude=None, space="log")
    ax = plot_sequence_offsets(res).axes[0]
    pts = res.points
    log_dev = np.log(pts["loss_reduction"] / pts["fitted"])
    want = sorted(100 * np.expm1(log_dev.groupby(pts["data_seed"]).mean()))  # as the report
    dashed = sorted(ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--")
    np.testing.assert_allclose(dashed, want, rtol=1e-9)
    vc = variance_components(res, cluster="data_seed")
    shown = f"σ between data_seeds {100 * vc['sd_between']:.2g} %"
    assert any(shown in t for t in _axes_texts(ax.figure)), _axes_texts(ax.figure)
    with pytest.raises(lawfit.LawfitError, match="single value"):
        plot_sequence_offsets(lawfit.fit(ds.sel(data_seed=[0]), exclude=None))


def test_capacity_markers_are_an_upper_bound_where_recalled_and_a_lower_bound_where_not():
    """Recalled: a dot at the smallest rank that recalls. Never recalled: an arrow up from the
    largest rank collected (a lower bound), not a point that reads as a measured rank."""
    import matplotlib.pyplot as plt

    from lawfit.plotting.capacity import _draw_measured_capacity

    ranks, lengths = [1, 2, 4], [64, 512]
    loss_after = np.array([[0.1, 2.0], [0.05, 1.5], [0.02, 0.9]])  # (rank, length)
    ds = xr.Dataset(
        {"loss_after": (("rank", "length"), loss_after)},
        coords={"rank": ranks, "length": lengths},
    )
    fig, ax = plt.subplots()
    _draw_measured_capacity(ax, ds, np.log(2))
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(dots) == 1 and list(dots[0].get_xdata()) == [64] and list(dots[0].get_ydata()) == [1]
    (bound,) = ax.containers  # the errorbar of the lower bound
    x, y = bound.lines[0].get_data()
    assert list(x) == [512] and list(y) == [4]  # at the largest rank collected, not above it
    arrow = bound.lines[1][0]  # the upward arrowhead of lolims
    assert arrow.get_marker() == mpl.markers.CARETUPBASE and arrow.get_ydata()[0] > 4
    plt.close(fig)


def test_bits_per_parameter_marks_lower_bounds_and_only_the_markers_drawn(data):
    from dataclasses import replace

    bits = data["bits"]
    by_rank = bits.by_rank.assign(saturated=False, at_longest=False)
    by_rank.loc[by_rank.index[0], "at_longest"] = True
    labels = _legend_labels(plot_bits_per_parameter(replace(bits, by_rank=by_rank)))
    assert "lower bound (at the longest target)" in labels and "largest over lengths" in labels
    every = by_rank.assign(at_longest=True)
    labels = _legend_labels(plot_bits_per_parameter(replace(bits, by_rank=every)))
    assert "largest over lengths" not in labels  # no point drawn with it


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
