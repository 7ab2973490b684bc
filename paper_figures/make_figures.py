#!/usr/bin/env python
"""Draw every publication figure of lawfit from one dataset, in PDF and PNG.

    python paper_figures/make_figures.py [DATA.nc] [--out figures/] [--bootstrap N]
    python paper_figures/make_figures.py --synthetic --out figures/synthetic

Default data: data/law_cpu_converged.nc (the shipped law sweep). One set of figures per setting
(model × task × random_ratio × modules with collected cells); figure files are named
``<figure>__<setting>.{pdf,png}``. A figure the data cannot support (no MemFT cells yet,
no token variables, too few cells for a fit, ...) is skipped with its reason in the log
and in ``<out>/INDEX.md``; nothing crashes the run. Partial datasets (cells with status
``not_run``) and synthetic ones are marked in the corner of each figure and in the index.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import lawfit  # noqa: E402
from lawfit.budget import budget_sensitivity  # noqa: E402
from lawfit.data import target_unit  # noqa: E402
from lawfit.errors import LawfitError  # noqa: E402
from lawfit.plotting import (  # noqa: E402
    annotate_provenance,
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
    plot_sequence_offsets,
    plot_token_histograms,
    plot_trajectories,
    plot_transfer,
    save_figure,
)
from lawfit.plotting._common import (  # noqa: E402
    _tag,
    methods_present,
    select_method,
    settings,
)
from lawfit.plotting.style import data_status  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from carriers import across_models, carrier_cells, plot_carriers  # noqa: E402

log = logging.getLogger("make_figures")
DEFAULT_DATA = os.path.join("data", "law_cpu_converged.nc")


class Skip(Exception):
    """The data cannot support this figure (the message says why)."""


@dataclass
class Setting:
    """One setting's data and its (cached) analyses."""

    label: str
    key: str
    cells: object  # dataset for law-level figures (all methods)
    tokens: object  # dataset for token-level figures (all methods)
    bootstrap: int
    notes: list = field(default_factory=list)

    @cached_property
    def sft_cells(self):
        sub = select_method(self.cells, "sft")
        if sub is None:
            raise Skip("no ok SFT cells")
        return sub

    @cached_property
    def sft_tokens(self):
        sub = select_method(self.tokens, "sft")
        if sub is None:
            raise Skip("no ok SFT cells")
        return sub

    @cached_property
    def fit(self):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = lawfit.fit(
                    self.sft_cells,
                    bootstrap=self.bootstrap,
                    unit=target_unit(self.sft_cells),
                    rng=0,
                )
        except LawfitError as exc:
            raise Skip(f"law not fitted: {exc}") from exc
        self.notes.append(
            f"law: n = {res.n_obs} cells ({res.n_excluded} excluded: not collected "
            f"or memorized), "
            + ", ".join(f"{k} = {v:.4g}" for k, v in res.params.items())
            + f", R² = {res.r2:.4f}"
        )
        for fl in res.flags:
            self.notes.append(f"law fit flag: {fl}")
        return res

    @cached_property
    def compare(self):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return lawfit.compare(self.sft_cells)
        except LawfitError as exc:
            raise Skip(f"model comparison not possible: {exc}") from exc

    @cached_property
    def transition(self):
        if "p_after" not in self.tokens or "greedy_correct" not in self.tokens:
            raise Skip("no token variables (p_after, greedy_correct)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return lawfit.phase_transition(
                    self.sft_tokens, bootstrap=max(self.bootstrap, 20), rng=0
                )
        except LawfitError as exc:
            raise Skip(f"phase transition not analysable: {exc}") from exc

    @cached_property
    def bits(self):
        try:
            return lawfit.bits_per_parameter(self.sft_cells)
        except LawfitError as exc:
            raise Skip(f"bits per parameter not computable: {exc}") from exc

    @cached_property
    def budget(self):
        # the cells dataset carries the trajectories in a collected sweep; the synthetic set
        # keeps them on its token dataset
        # (budget_sensitivity itself says which trajectory variables a dataset lacks)
        ds = self.sft_cells if "loss_curve" in self.cells else self.sft_tokens
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = budget_sensitivity(ds, bootstrap=self.bootstrap, rng=0, unit=target_unit(ds))
        except LawfitError as exc:
            raise Skip(f"budget sensitivity not computable: {exc}") from exc
        self.notes += [f"budget: {n}" for n in res.notes]
        return res, ds

    def needs_memft(self, ds, variables=()):
        ms = methods_present(ds)
        if len(ms) < 2 or "sft" not in ms:
            raise Skip(f"needs ok SFT and MemFT cells; methods with ok cells: {ms}")
        miss = [v for v in variables if v not in ds]
        if miss:
            raise Skip(f"missing variables {miss}")


def _flag_text(fit):
    """Short warning for the figure note when the law fit is flagged."""
    if fit is None or not fit.flags:
        return None
    short = [str(f).split(":")[0].split("(")[0].strip() for f in fit.flags]
    short = [f if len(f) <= 60 else f[:57] + "..." for f in short]
    return "law fit flags: " + "; ".join(short)


def _fig_law(s):
    return plot_law_curves(s.fit, s.sft_cells), s.sft_cells, _flag_text(s.fit)


def _fig_pred(s):
    return plot_predicted_vs_measured(s.fit), s.sft_cells, _flag_text(s.fit)


def _fig_sequences(s):
    points = s.fit.points
    if "data_seed" not in points or points["data_seed"].nunique() < 2:
        raise Skip("needs fitted cells of >= 2 target sequences (data_seed)")
    try:
        return plot_sequence_offsets(s.fit), s.sft_cells
    except LawfitError as exc:
        raise Skip(str(exc)) from exc


def _fig_loss_recall(s):
    if "exact_match" not in s.sft_cells:
        raise Skip("no exact_match")
    return plot_loss_recall(s.sft_cells), s.sft_cells


def _fig_hist(s):
    if "p_before" not in s.tokens:
        raise Skip("no p_before/p_after token variables")
    pt = s.transition if "greedy_correct" in s.tokens else None
    return plot_token_histograms(s.sft_tokens, result=pt), s.sft_tokens


def _fig_recall(s):
    if s.transition.token_fit is None:
        raise Skip("no token-level logistic fit: " + "; ".join(s.transition.notes))
    return plot_recall_curve(s.transition, s.sft_tokens), s.sft_tokens


def _fig_phase(s):
    try:
        fit = s.fit
    except Skip as exc:
        s.notes.append(f"phase diagram drawn without the law's boundary ({exc})")
        fit = None
    return plot_phase_diagram(s.sft_cells, fit), s.sft_cells


def _fig_phase_frac(s):
    if "p_after" not in s.tokens:
        raise Skip("no p_after token variable (share of tokens above 0.5)")
    try:
        fit = s.fit
    except Skip:
        fit = None
    return plot_phase_diagram(s.sft_tokens, fit, order="frac_above"), s.sft_tokens


def _fig_cascade(s):
    if s.transition.cascade is None:
        raise Skip("cascade not computed: " + "; ".join(s.transition.notes))
    return plot_cascade(s.transition), s.sft_tokens


def _fig_methods(s):
    s.needs_memft(s.tokens, ("loss_reduction", "exact_match"))
    return plot_methods(s.tokens), s.tokens


def _fig_memft_paired(s):
    s.needs_memft(s.tokens, ("loss_reduction",))
    try:
        return plot_memft_paired(s.tokens), s.tokens
    except LawfitError as exc:
        raise Skip(str(exc)) from exc


def _fig_traj(s):
    miss = [v for v in ("loss_curve", "frac_above_curve") if v not in s.tokens]
    if miss or "step" not in s.tokens.dims:
        raise Skip(f"no training trajectories (missing {miss or 'the step dimension'})")
    ms = methods_present(s.tokens)
    if len(ms) < 2:
        s.notes.append(f"trajectories: only {ms} collected so far, drawn without MemFT")
        return plot_trajectories(select_method(s.tokens, ms[0])), s.tokens
    return plot_trajectories(s.tokens), s.tokens


def _fig_compare(s):
    return plot_model_comparison(s.compare), s.sft_cells


def _fig_capacity(s):
    return plot_capacity(s.fit, s.sft_cells), s.sft_cells, _flag_text(s.fit)


def _fig_bits(s):
    b = s.bits
    if not len(b.by_rank) or "bits_per_param" not in b.by_rank:
        raise Skip("no bits per parameter (n_params missing?): " + "; ".join(b.notes))
    return plot_bits_per_parameter(b), s.sft_cells


def _fig_budget(s):
    res, src = s.budget
    return plot_budget_sensitivity(res), src


#: (file name, what it shows, builder)
FIGURES = [
    (
        "fig2a_law_vs_rank",
        "ΔL vs rank per length, data + law (stopped at the loss_before ceiling) + its CI band "
        "(cluster-robust with few target sequences)",
        _fig_law,
    ),
    ("fig2b_predicted_vs_measured", "predicted vs measured ΔL, R²", _fig_pred),
    (
        "sequence_offsets",
        "each cell's deviation from the law by target sequence; σ between and within",
        _fig_sequences,
    ),
    ("fig2c_loss_recall", "loss after and exact match vs rank: decoupling", _fig_loss_recall),
    ("token_histograms", "p of the correct token before/after training", _fig_hist),
    (
        "recall_vs_p",
        "greedy recall vs p_after, logistic p* and CI (with the threshold flags)",
        _fig_recall,
    ),
    ("phase_diagram", "rank × length recall map with the law's ln 2 boundary", _fig_phase),
    (
        "phase_diagram_frac_above",
        "rank × length map of the share of tokens with p > 0.5, with the law's boundary",
        _fig_phase_frac,
    ),
    ("cascade", "earliest sub-threshold token vs first greedy error, ρ", _fig_cascade),
    ("methods", "SFT vs MemFT: recall and ΔL vs rank", _fig_methods),
    (
        "memft_paired",
        "MemFT against SFT on the same targets: ΔL ratio, token accuracy, greedy recall",
        _fig_memft_paired,
    ),
    ("trajectories", "SFT vs MemFT (or SFT alone): loss and share above 0.5 over steps", _fig_traj),
    ("model_comparison", "ΔAICc/weights and held-out extrapolation error per form", _fig_compare),
    ("capacity", "rank needed for recall vs target length", _fig_capacity),
    ("bits_per_parameter", "bits per adapter parameter vs rank, 2 and 3.6 anchors", _fig_bits),
    (
        "budget_sensitivity",
        "α, β refitted at smaller step budgets; ΔL still growing at the budget",
        _fig_budget,
    ),
]


def _values_with_cells(ds, dim: str) -> list:
    """The values of ``dim`` (models, carriers) that hold an ok cell of ``ds``."""
    if dim not in ds.dims or "status" not in ds:
        return []
    ok = (ds["status"] == "ok").any([d for d in ds["status"].dims if d != dim])
    return [v for v, has in zip(ds[dim].values, ok.values, strict=True) if has]


def _fig_carriers(ds):
    """Bits stored and recalled per carrier against parameters and bytes (all tasks)."""
    if "modules" not in ds.dims or "status" not in ds:
        raise Skip(
            "needs ok cells of >= 2 carriers; the dataset has no 'modules' dimension "
            "(one value per carrier) or no 'status'"
        )
    found = _values_with_cells(ds, "modules")
    if len(found) < 2:  # checked before the information bits are computed
        raise Skip(
            f"needs ok cells of >= 2 carriers (modules); found {[str(m) for m in found] or 'none'}"
        )
    try:
        cells = carrier_cells(ds)
    except LawfitError as exc:
        raise Skip(f"no carrier comparison: {exc}") from exc
    carriers = sorted(cells["carrier"].unique()) if len(cells) else []
    if len(carriers) < 2:
        raise Skip(
            f"needs ok cells of >= 2 carriers (modules) with n_params; found {carriers or 'none'}"
        )
    return plot_carriers(cells), ds


#: Figures over a whole dataset (every setting in one figure), drawn once per model.
DATASET_FIGURES = [
    (
        "carriers",
        "bits stored and recalled vs parameters and bytes, a series per carrier, "
        "a row per task, 2 and 3.6 bits/parameter references",
        _fig_carriers,
    ),
]


def _fig_models(ds):
    """Bits stored and recalled per model against parameters and bytes (SFT, all tasks)."""
    if "objective" in ds.dims and "sft" in ds["objective"].values:
        ds = ds.sel(objective=["sft"])  # the MemFT subsets differ from model to model
    models = _values_with_cells(ds, "model")
    if len(models) < 2:
        raise Skip(f"needs ok cells of >= 2 models; found {[str(m) for m in models] or 'none'}")
    try:
        cells = carrier_cells(ds.sel(model=models))
    except LawfitError as exc:
        raise Skip(f"no model comparison: {exc}") from exc
    return plot_carriers(across_models(cells)), ds


def _fig_transfer(ds):
    """The largest model's law carried to a model too small for its own, with its cells."""
    from lawfit.transfer import carry_across_models

    if "objective" in ds.dims and "sft" in ds["objective"].values:
        ds = ds.sel(objective=["sft"])
    many = [d for d in ("task", "random_ratio") if d in ds.dims and ds.sizes[d] > 1]
    if many:
        raise Skip(f"one setting at a time: the dataset has several values of {many}")
    models = _values_with_cells(ds, "model")
    if len(models) < 2:
        raise Skip(f"needs ok cells of >= 2 models; found {[str(m) for m in models] or 'none'}")
    carried = carry_across_models(ds.sel(model=models))
    if not carried.laws:
        why = "every model has a law of its own (see the models' shared-exponent test)"
        raise Skip(why if carried.source else "no model has a law of its own")
    model, law = next(iter(carried.laws.items()))
    cells = lawfit.data.as_frame(ds.sel(model=[model]), inputs=law.source.inputs)[0]
    own = law.anchors[carried.cluster].unique()
    title = f"{carried.source}'s law carried to {model}"
    fig = plot_transfer(law, cells, in_cluster=own[0] if len(own) == 1 else None, title=title)
    return fig, ds


#: Figures across the models of a dataset (``collect combine`` of two model families' sweeps),
#: drawn once where it holds two or more models.
ACROSS_MODEL_FIGURES = [
    (
        "models",
        "SFT bits stored and recalled vs parameters and bytes, a series per model and "
        "adapter, a row per task, 2 and 3.6 bits/parameter references",
        _fig_models,
    ),
    (
        "transfer",
        "ΔL vs length per rank: the largest model's law, the law carried to a model too "
        "small for its own (scale refitted, 95 % prediction band) and that model's cells",
        _fig_transfer,
    ),
]


def _models_of(ds):
    """(key, dataset) per model (the whole dataset when it has no model dimension)."""
    if data_status(ds)["synthetic"]:
        yield "synthetic", ds
    elif "model" not in ds.dims:
        yield "all", ds
    else:
        for m in ds["model"].values:
            yield _tag("model", m), ds.sel(model=[m])


def _draw_one(rows, name, what, label, stem, build, *, formats, dpi, tag=()):
    """Draw one figure into ``rows`` (drawn / skipped with the reason / error)."""
    t0 = time.perf_counter()
    try:
        fig, src, *extra = build()
        tag = [*tag, *(t for t in extra if t)]
        annotate_provenance(fig, src, text="; ".join(tag) or None)
        files = save_figure(fig, stem, formats=formats, dpi=dpi)
        rows.append(
            dict(
                figure=name,
                setting=label,
                status="drawn",
                reason=what,
                files=files,
                seconds=round(time.perf_counter() - t0, 2),
            )
        )
        log.info("  drew    %-28s %.1fs", name, time.perf_counter() - t0)
    except (Skip, LawfitError) as exc:
        rows.append(dict(figure=name, setting=label, status="skipped", reason=str(exc), files=[]))
        log.warning("  skipped %-28s %s", name, exc)
    except Exception as exc:  # noqa: BLE001 - one broken figure must not stop the rest
        rows.append(
            dict(
                figure=name,
                setting=label,
                status="error",
                reason=f"{type(exc).__name__}: {exc}",
                files=[],
            )
        )
        log.error("  ERROR   %-28s %s\n%s", name, exc, traceback.format_exc())
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")


def _settings_of(cells, tokens, bootstrap):
    if tokens is cells:
        for label, key, sub in settings(cells):
            yield Setting(label, key, sub, sub, bootstrap)
    else:  # synthetic: two datasets, one setting each
        yield Setting("synthetic", "synthetic", cells, tokens, bootstrap)


def draw_all(
    cells,
    tokens=None,
    *,
    out="figures",
    bootstrap=200,
    formats=("pdf", "png"),
    only=None,
    dpi=300,
    setting=None,
):
    """Draw every figure; return a list of dicts (figure, setting, status, reason, files)."""
    tokens = cells if tokens is None else tokens
    os.makedirs(out, exist_ok=True)
    rows = []
    synthetic = data_status(cells)["synthetic"]
    for s in _settings_of(cells, tokens, bootstrap):
        if setting and s.key not in setting:
            continue
        log.info("setting %s (%s)", s.label, s.key)
        for name, what, build in FIGURES:
            if only and name not in only:
                continue
            stem = os.path.join(
                out,
                f"{name}__{s.key}"
                + ("_SYNTHETIC" if synthetic and "synthetic" not in s.key else ""),
            )
            tag = [s.label] if s.label and s.label != "synthetic" else []
            _draw_one(
                rows,
                name,
                what,
                s.label,
                stem,
                lambda b=build, s=s: b(s),
                formats=formats,
                dpi=dpi,
                tag=tag,
            )
        for n in s.notes:
            log.info("  note: %s", n)
            rows.append(dict(figure="(note)", setting=s.label, status="note", reason=n, files=[]))
    for key, ds in _models_of(tokens):
        for name, what, build in DATASET_FIGURES:
            if (only and name not in only) or (setting and key not in setting):
                continue
            log.info("dataset figure %s (%s)", name, key)
            stem = os.path.join(out, f"{name}__{key}")
            _draw_one(
                rows, name, what, key, stem, lambda b=build, d=ds: b(d), formats=formats, dpi=dpi
            )
    if len(_values_with_cells(tokens, "model")) >= 2 and not synthetic:
        for name, what, build in ACROSS_MODEL_FIGURES:
            if (only and name not in only) or (setting and "all_models" not in setting):
                continue
            log.info("figure %s (all models)", name)
            stem = os.path.join(out, f"{name}__all_models")
            _draw_one(
                rows,
                name,
                what,
                "all models",
                stem,
                lambda b=build: b(tokens),
                formats=formats,
                dpi=dpi,
            )
    _write_index(rows, cells, out)
    return rows


def _write_index(rows, ds, out):
    st = data_status(ds)
    lines = ["# Figures", ""]
    if st["synthetic"]:
        lines.append("**SYNTHETIC data** (lawfit.testing): the figures describe the simulator.")
    if st["partial"]:
        lines.append(
            f"**Partial data**: {st['n_ok']} of {st['n_cells']} cells of the grid "
            f"have status ok ({st['n_not_run']} not run yet)."
        )
    for k in ("created", "git_revision"):
        if k in getattr(ds, "attrs", {}):
            lines.append(f"- {k}: {ds.attrs[k]}")
    lines += [
        "",
        "| figure | setting | status | what / why skipped | files |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        files = ", ".join(os.path.basename(f) for f in r["files"])
        reason = str(r["reason"]).replace("|", "/").replace("\n", " ")[:300]
        lines.append(f"| {r['figure']} | {r['setting']} | {r['status']} | {reason} | {files} |")
    with open(os.path.join(out, "INDEX.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA, help="contract dataset (.nc)")
    ap.add_argument("--out", default="figures", help="output folder (default: figures/)")
    ap.add_argument(
        "--bootstrap",
        type=int,
        default=500,
        help="bootstrap replicates for bands and CIs (default 500)",
    )
    ap.add_argument(
        "--synthetic",
        action="store_true",
        help="draw everything from lawfit.testing synthetic data instead",
    )
    ap.add_argument("--only", nargs="*", help="figure names to draw (default: all)")
    ap.add_argument(
        "--setting", nargs="*", help="setting keys to draw, e.g. long_context_r100 (default: all)"
    )
    ap.add_argument("--formats", nargs="*", default=["pdf", "png"])
    ap.add_argument("--dpi", type=int, default=300)
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.WARNING if a.quiet else logging.INFO)
    if a.synthetic:
        from lawfit.plotting.demo import synthetic_figure_data

        d = synthetic_figure_data()
        cells, tokens = d["cells"], d["tokens"]
        log.info("SYNTHETIC data from lawfit.testing")
    else:
        if not os.path.exists(a.data):
            log.error(
                "no dataset at %s: collect it or merge the cells first:\n  python -m "
                "collect merge sweeps/law_cpu_converged.toml --out data/law_cpu_converged -o %s\n"
                "or draw the synthetic set with --synthetic",
                a.data,
                a.data,
            )
            return 2
        from lawfit.data import open_dataset
        from lawfit.errors import LawfitError

        try:
            cells = tokens = open_dataset(a.data)
        except LawfitError as exc:  # a folder, or a file that is not NetCDF
            log.error("%s", exc)
            return 2
        st = data_status(cells)
        log.info(
            "data %s: %d of %d cells ok%s",
            a.data,
            st["n_ok"],
            st["n_cells"],
            f" (PARTIAL: {st['n_not_run']} not run yet)" if st["partial"] else "",
        )
    rows = draw_all(
        cells,
        tokens,
        out=a.out,
        bootstrap=a.bootstrap,
        formats=a.formats,
        only=a.only,
        dpi=a.dpi,
        setting=a.setting,
    )
    n = {k: sum(r["status"] == k for r in rows) for k in ("drawn", "skipped", "error")}
    log.info(
        "%d figures drawn, %d skipped, %d errors -> %s (see INDEX.md)",
        n["drawn"],
        n["skipped"],
        n["error"],
        a.out,
    )
    with open(os.path.join(a.out, "figures.json"), "w") as fh:
        json.dump(rows, fh, indent=1, default=str)
    return 1 if n["error"] else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
