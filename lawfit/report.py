"""One report from one dataset: every analysis, each degrading to a note when it cannot run.

:func:`build_report` runs, for every setting of the sweep (model × task × random_ratio ×
modules) on the SFT cells: model selection (:func:`lawfit.compare`), the paper's law with
bootstrap CIs (:func:`lawfit.fit`), its sensitivity to the step budget
(:func:`lawfit.budget_sensitivity`), capacity predictions (:func:`lawfit.predict_capacity`),
bits per parameter, the phase transition (:func:`lawfit.phase_transition`) and the MemFT
savings (:func:`lawfit.memft_savings`). The result renders as Markdown or HTML.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import xarray as xr

from lawfit._tokens import GROUP_DIMS, load
from lawfit.errors import LawfitError

__all__ = ["Report", "build_report"]

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Report:
    """A rendered-on-demand analysis report.

    Attributes
    ----------
    blocks : tuple
        ``(kind, payload)`` pairs: ``("h1"|"h2"|"h3", str)``, ``("p", str)``,
        ``("note", str)``, ``("pre", str)`` or ``("table", pandas.DataFrame)``.
    results : dict
        The result objects by setting label and analysis (for programmatic use).
    """

    blocks: tuple
    results: dict

    def to_markdown(self) -> str:
        """Render as GitHub-flavoured Markdown.

        Returns
        -------
        str
            The report.
        """
        out = []
        for kind, x in self.blocks:
            if kind in ("h1", "h2", "h3"):
                out.append("#" * int(kind[1]) + " " + x)
            elif kind == "p":
                out.append(x)
            elif kind == "note":
                out.append(f"> **Note.** {x}")
            elif kind == "pre":
                out.append("```\n" + x + "\n```")
            elif kind == "table":
                out.append(_md_table(x))
            out.append("")
        return "\n".join(out)

    def to_html(self) -> str:
        """Render as a standalone HTML page.

        Returns
        -------
        str
            The report.
        """
        body = []
        for kind, x in self.blocks:
            if kind in ("h1", "h2", "h3"):
                body.append(f"<{kind}>{html.escape(x)}</{kind}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(x)}</p>")
            elif kind == "note":
                body.append(f'<p class="note"><b>Note.</b> {html.escape(x)}</p>')
            elif kind == "pre":
                body.append(f"<pre>{html.escape(x)}</pre>")
            elif kind == "table":
                body.append(x.to_html(index=False, na_rep="", float_format=_fmt,
                                      border=0, classes="tbl"))
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
                 ".tbl{border-collapse:collapse;font-size:90%}"
                 ".tbl td,.tbl th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
                 ".note{color:#7a4b00}pre{background:#f6f6f6;padding:8px}")
        return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>lawfit report</title>"
                f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>")

    def save(self, path, format: str | None = None) -> None:  # noqa: A002
        """Write the report; format from the suffix (``.html``/``.htm``) unless given.

        Parameters
        ----------
        path : str or path-like
            Output file.
        format : {"md", "html"}, optional
            Output format.
        """
        p = str(path)
        fmt = format or ("html" if p.lower().endswith((".html", ".htm")) else "md")
        if fmt not in ("md", "html"):
            raise LawfitError(f"format must be 'md' or 'html'; got {format!r}.")
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(self.to_html() if fmt == "html" else self.to_markdown())


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "inf" if v == np.inf else ("-inf" if v == -np.inf else "")
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "_(empty)_"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _settings(ds: xr.Dataset):
    """Yield (label, sub-dataset) for every combination of grouping dims other than objective."""
    dims = [d for d in GROUP_DIMS if d != "objective" and d in ds.dims]
    multi = [d for d in dims if ds.sizes[d] > 1]
    if not multi:
        label = ", ".join(f"{d}={ds[d].values[0]}" for d in dims) or "all cells"
        yield label, ds
        return
    for combo in itertools.product(*[ds[d].values.tolist() for d in multi]):
        sel = dict(zip(multi, combo, strict=True))
        sub = ds.sel({k: [v] for k, v in sel.items()})
        yield ", ".join(f"{k}={v}" for k, v in sel.items()), sub


def _sft(ds: xr.Dataset):
    if "objective" not in ds.dims:
        return ds
    if "sft" in ds["objective"].values:
        return ds.sel({"objective": ["sft"]})
    return None


def _has_ok_cells(ds: xr.Dataset) -> bool:
    if "loss_reduction" not in ds:
        return False
    v = ds["loss_reduction"]
    ok = v.notnull()
    if "status" in ds:
        ok = ok & (ds["status"] == "ok")
    return bool(ok.any())


def build_report(
    ds,
    *,
    bootstrap: int = 500,
    confidence_level: float = 0.95,
    targets_length: tuple[float, ...] | None = None,
    rng: int = 0,
) -> Report:
    """Run every analysis on a dataset and collect the results into one report.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset (any subset of the variables: each section says what it
        needs and is skipped with a note when the data lacks it).
    bootstrap : int
        Bootstrap replicates for the law, the capacity predictions, p* and the
        MemFT savings.
    confidence_level : float
        Level of every interval.
    targets_length : tuple of float, optional
        Lengths at which to predict the rank needed for recall (default: observed
        lengths and twice the longest).
    rng : int
        Seed (the report is reproducible).

    Returns
    -------
    Report
        Blocks to render with ``to_markdown()`` / ``to_html()`` / ``save()``.

    Raises
    ------
    LawfitError
        If ``ds`` is not a dataset or a readable path.
    """
    from lawfit.budget import budget_sensitivity
    from lawfit.capacity import bits_per_parameter, predict_capacity
    from lawfit.compare import compare
    from lawfit.fitting import fit
    from lawfit.memft import memft_savings
    from lawfit.transition import phase_transition

    ds = load(ds)
    B: list = []
    results: dict = {}
    B.append(("h1", "lawfit report"))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    B.append(("p", f"Generated {created} by lawfit; bootstrap {bootstrap} replicates, "
                   f"{confidence_level:.0%} intervals, seed {rng}."))
    # -- overview
    B.append(("h2", "Dataset"))
    B.append(("p", "Dims: " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
                   + ". Variables: " + ", ".join(sorted(ds.data_vars)) + "."))
    if str(ds.attrs.get("synthetic", "")).lower() == "true":
        B.append(("note", "this dataset is SYNTHETIC (attrs synthetic=true): numbers below "
                          "describe the simulator, not a model."))
    if str(ds.attrs.get("complete", "true")).lower() == "false":
        B.append(("note", f"this dataset is PARTIAL: {ds.attrs.get('n_cells_done', '?')} of "
                          f"{ds.attrs.get('n_cells', '?')} cells of its sweep are collected "
                          "(attrs complete=false); cells not yet run have status 'not_run' and "
                          "every number below rests on the collected cells only."))
    if "status" in ds:
        st = pd.Series(np.asarray(ds["status"].values).ravel().astype(str)).value_counts()
        B.append(("table", st.rename_axis("status").reset_index(name="cells")))
    for key in ("git_revision", "created", "schema_version"):
        if key in ds.attrs:
            B.append(("p", f"{key}: {ds.attrs[key]}"))
    if "loss_reduction" not in ds or "rank" not in ds.dims or "length" not in ds.dims:
        B.append(("note", "no loss_reduction over rank and length: the law, model selection "
                          "and capacity sections are skipped."))
    for label, sub in _settings(ds):
        res: dict = {}
        results[label] = res
        B.append(("h2", f"Setting: {label}"))
        if "status" in sub and not bool((sub["status"] == "ok").any()):
            B.append(("note", "no cell of this setting has status 'ok' (nothing collected): "
                              "skipped."))
            continue
        sft = _sft(sub)
        law_ok = sft is not None and _has_ok_cells(sft) and "rank" in sub.dims \
            and "length" in sub.dims
        if sft is None:
            B.append(("note", "no 'sft' objective in this setting: law sections skipped."))
        # 1. model selection
        B.append(("h3", "Which form? (model selection on SFT cells)"))
        if law_ok:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cmp = compare(sft)
                res["compare"] = cmp
                cols = ["form", "k", "n_obs", "delta_aicc", "weight_aicc", "delta_bic",
                        "weight_bic", "r2", "rmse", "extrap_rank_rmse", "extrap_length_rmse"]
                B.append(("p", f"Best form by AICc: **{cmp.best}** "
                               f"(Akaike weight {cmp.table['weight_aicc'].iloc[0]:.3f})."))
                B.append(("table", cmp.table[cols]))
                if len(cmp.lr_tests):
                    B.append(("p", "Likelihood-ratio tests of nested pairs:"))
                    B.append(("table", cmp.lr_tests))
                for n in [*cmp.flags, *cmp.notes]:
                    B.append(("note", str(n)))
                if cmp.heteroscedastic:
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            cmp_log = compare(sft, space="log")
                    except LawfitError as exc:
                        B.append(("note", f"log-space comparison not possible: {exc}"))
                        cmp_log = None
                if cmp.heteroscedastic and cmp_log is not None:
                    res["compare_log"] = cmp_log
                    B.append(("p", "Heteroscedastic residuals: the same comparison in log space "
                                   f"(preferred here). Best form: **{cmp_log.best}** (Akaike "
                                   f"weight {cmp_log.table['weight_aicc'].iloc[0]:.3f})."))
                    B.append(("table", cmp_log.table[cols]))
            except LawfitError as exc:
                B.append(("note", f"model selection skipped: {exc}"))
        else:
            B.append(("note", "skipped: no ok SFT cells with loss_reduction over rank and "
                              "length."))
        # 2. the paper's law with CIs
        B.append(("h3", "The Parametric Memory Law ΔL = C·r^α·ℓ^(−β) + b (SFT)"))
        law = None
        if law_ok:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    law = fit(sft, "power_law", bootstrap=int(bootstrap), unit="cell",
                              confidence_level=confidence_level, rng=rng)
                res["law"] = law
                tab = law.to_dataframe().reset_index()
                B.append(("table", tab))
                B.append(("p", f"n = {law.n_obs} cells fitted ({law.n_excluded} excluded: "
                               f"not ok or memorized), R² = {law.r2:.4f}, RMSE = "
                               f"{law.rmse:.4g} nats. Paper: α ≈ 0.6, β ≈ 0.5, R² > 0.98."))
                for fl in law.flags:
                    B.append(("note", f"flag: {fl}"))
            except LawfitError as exc:
                B.append(("note", f"law not fitted: {exc}"))
        else:
            B.append(("note", "skipped: no ok SFT cells."))
        # 2b. training budget
        B.append(("h3", "Training budget: had ΔL stopped moving?"))
        if law is not None and "loss_curve" in sft:
            try:
                bs = budget_sensitivity(sft, bootstrap=int(bootstrap), rng=rng,
                                        confidence_level=confidence_level)
                res["budget"] = bs
                conv = bs.convergence
                counts = conv["stop_reason"].value_counts()
                B.append(("p", f"Stop reasons of the {len(conv)} ok SFT cells: "
                               + ", ".join(f"{k} {v}" for k, v in counts.items())
                               + f". Still improving at the budget (ΔL grew by more than "
                               f"{conv.attrs['tol']:.0%} over the last {conv.attrs['window']} "
                               f"steps): {int(conv['still_improving'].sum())}."))
                B.append(("p", "The law refitted as if the sweep had stopped earlier (ΔL read "
                               "from the recorded trajectories):"))
                cols = [c for c in ("budget", "n_obs", "n_truncated", "r2", "alpha", "alpha_low",
                                    "alpha_high", "beta", "beta_low", "beta_high")
                        if c in bs.table]
                B.append(("table", bs.table[cols]))
                for n in bs.notes:
                    B.append(("note", n))
            except LawfitError as exc:
                B.append(("note", f"budget analysis skipped: {exc}"))
        else:
            B.append(("note", "skipped: needs the fitted law and trajectories (loss_curve)."))
        # 3. capacity
        B.append(("h3", "Capacity: rank needed for verbatim recall (loss_after ≤ ln 2)"))
        if law is not None:
            try:
                obs = np.unique(sft["length"].values).astype(float)
                lens = (np.asarray(targets_length, float) if targets_length is not None
                        else np.concatenate([obs, [2 * obs.max()]]))
                pc = predict_capacity(law, length=lens, target=LN2, target_kind="loss_after",
                                      data=sft)
                res["capacity"] = pc
                cols = [c for c in ("length", "loss_before", "target_dL", "estimate", "low",
                                    "high", "n_params_estimate", "n_unreachable",
                                    "extrapolated")
                        if c in pc.table]
                B.append(("table", pc.table[cols].rename(columns={"estimate": "rank_needed"})))
                rmax = float(sft["rank"].max())
                pl = predict_capacity(law, rank=rmax, target=0.5)
                res["capacity_length"] = pl
                t = pl.table.iloc[0]
                est = (f"{t['estimate']:.4g} tokens" if np.isfinite(t["estimate"])
                       else "beyond the search range (the law never falls below the target)"
                       if t["estimate"] > 0 else "none (unreachable even for short targets)")
                B.append(("p", f"Longest target over which rank {rmax:g} still reduces the loss "
                               f"by ΔL ≥ 0.5 nats/token: {est} "
                               f"[{_fmt(float(t['low']))}, {_fmt(float(t['high']))}]"
                               + (" (extrapolated)." if t["extrapolated"] else ".")))
                for n in [*map(str, pc.flags), *pc.notes]:
                    B.append(("note", n))
            except LawfitError as exc:
                B.append(("note", f"capacity predictions skipped: {exc}"))
        else:
            B.append(("note", "skipped: needs the fitted law."))
        B.append(("h3", "Bits stored per adapter parameter"))
        if sft is not None:
            try:
                bits = bits_per_parameter(sft)
                res["bits"] = bits
                if len(bits.by_rank):
                    B.append(("table", bits.by_rank))
                B.append(("p", "Anchors: " + "; ".join(
                    f"{k}: {v} bits/param" for k, v in bits.anchors.items())
                    + (f". Largest measured: {bits.max_bits_per_param:.3g} bits/param."
                       if math.isfinite(bits.max_bits_per_param) else ".")))
                for n in bits.notes:
                    B.append(("note", n))
            except LawfitError as exc:
                B.append(("note", f"bits per parameter skipped: {exc}"))
        # 4. phase transition
        B.append(("h3", "Phase transition of verbatim recall (SFT)"))
        if sft is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pt = phase_transition(sft, bootstrap=int(bootstrap), rng=rng,
                                          confidence_level=confidence_level)
                res["transition"] = pt
                B.append(("table", pt.to_dataframe()))
                if pt.sufficiency is not None:
                    s = pt.sufficiency
                    B.append(("p", f"Sufficiency: {s.n_violations} of {s.n_eligible} tokens with "
                                   f"p_after > 0.5 and an intact prefix were not recalled "
                                   f"(ties: {s.n_ties}); necessity rate "
                                   f"{s.necessity_rate:.4f}."))
                if pt.cascade is not None:
                    c = pt.cascade
                    B.append(("p", f"Cascade: Spearman ρ = {c.rho:.3f} [{c.ci[0]:.3f}, "
                                   f"{c.ci[1]:.3f}] over {c.n_units} {c.unit}s "
                                   "(paper: ρ = 0.908 over 155 runs)."))
                if pt.sequence is not None:
                    B.append(("table", pt.sequence.table.reset_index()))
                if pt.bimodality is not None:
                    B.append(("table", pt.bimodality))
                for n in [*map(str, pt.flags), *pt.notes]:
                    B.append(("note", n))
            except LawfitError as exc:
                B.append(("note", f"phase transition skipped: {exc}"))
        # 5. memft
        B.append(("h3", "MemFT savings over SFT"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ms = memft_savings(sub.squeeze(drop=False), bootstrap=int(bootstrap), rng=rng,
                                   confidence_level=confidence_level)
            res["memft"] = ms
            if ms.budget is not None:
                tb = ms.budget.summary_table
                B.append(("p", "Share of SFT's loss weight spent on tokens already above "
                               "p = 0.5 (what MemFT-OT masks):"))
                B.append(("table", tb[tb["rank"].astype(str) == "all"]))
            if len(ms.predictions):
                cols = [c for c in ms.predictions.columns if not c.startswith("n_unreach")]
                B.append(("p", f"Predicted capacity for {ms.target}:"))
                B.append(("table", ms.predictions[cols]))
            if len(ms.validation):
                keep = [c for c in ("objective", "rank", "length", "dL_measured",
                                    "dL_sft_measured",
                                    "exact_match", "exact_match_sft", "steps", "steps_sft",
                                    "steps_ratio", "dL_memft_law",
                                    "inside_memft_pi", "dL_memft_law_heldout", "dL_sft_law",
                                    "gain_over_sft_law", "sft_equivalent_rank",
                                    "saving_measured") if c in ms.validation]
                B.append(("p", "Measured MemFT cells against the laws:"))
                B.append(("table", ms.validation[keep]))
            for n in [*map(str, ms.flags), *ms.notes]:
                B.append(("note", n))
        except LawfitError as exc:
            B.append(("note", f"MemFT section skipped: {exc}"))
    B.append(("h2", "Provenance"))
    cfg = ds.attrs.get("config")
    if cfg:
        try:
            cfg = json.dumps(json.loads(cfg), indent=1)[:4000]
        except (TypeError, ValueError):
            cfg = str(cfg)[:4000]
        B.append(("pre", cfg))
    else:
        B.append(("note", "the dataset carries no 'config' attribute."))
    return Report(blocks=tuple(B), results=results)
