"""One report from one dataset: every analysis, each degrading to a note when it cannot run.

:func:`build_report` runs, for every setting of the sweep (model × task × random_ratio ×
modules) that holds collected cells, one function per section on the SFT cells: model
selection (:func:`lawfit.compare`), the paper's law with bootstrap CIs (:func:`lawfit.fit`),
its sensitivity to the step budget (:func:`lawfit.budget_sensitivity`), capacity predictions
(:func:`lawfit.predict_capacity`), bits per parameter, the phase transition
(:func:`lawfit.phase_transition`) and the MemFT savings (:func:`lawfit.memft_savings`). A
one-screen summary opens the report, the provenance closes it in a collapsed appendix. A
section that cannot run on the data becomes a note that says why. The result renders as
Markdown or HTML.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from lawfit import _validate as V
from lawfit import space as _space
from lawfit._tokens import CELL_DIMS, GROUP_DIMS, load
from lawfit.bootstrap import MIN_BOOTSTRAP_CLUSTERS
from lawfit.data import LN2, collected_lengths, ok_cells
from lawfit.errors import LawfitError
from lawfit.robust import preferred_interval

__all__ = ["Report", "build_report"]


@dataclass(frozen=True)
class Report:
    """A rendered-on-demand analysis report.

    Attributes
    ----------
    blocks : tuple
        ``(kind, payload)`` pairs: ``("h1"|"h2"|"h3", str)``, ``("p", str)``,
        ``("note", str)``, ``("pre", str)``, ``("table", pandas.DataFrame)`` or
        ``("details", (title, text))`` (a collapsed block of preformatted text).
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
            elif kind == "details":
                title, text = x
                out.append(
                    f"<details><summary>{html.escape(title)}</summary>\n\n```\n{text}"
                    "\n```\n\n</details>"
                )
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
                body.append(
                    x.to_html(index=False, na_rep="", float_format=_fmt, border=0, classes="tbl")
                )
            elif kind == "details":
                title, text = x
                body.append(
                    f"<details><summary>{html.escape(title)}</summary>"
                    f"<pre>{html.escape(text)}</pre></details>"
                )
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            ".tbl{border-collapse:collapse;font-size:90%}"
            ".tbl td,.tbl th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
            ".note{color:#7a4b00}pre{background:#f6f6f6;padding:8px}"
        )
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lawfit report</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>"
        )

    def save(self, path, format: str | None = None) -> None:  # noqa: A002
        """Write the report; format from the suffix (:func:`report_format`) unless given.

        Parameters
        ----------
        path : str or path-like
            Output file.
        format : {"md", "html"}, optional
            Output format.
        """
        fmt = report_format(path, format)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_html() if fmt == "html" else self.to_markdown())


#: the suffixes a report's format is read from
REPORT_SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


def report_format(path, format: str | None = None) -> str:  # noqa: A002
    """Return the format a report written to ``path`` takes: ``format``, else its suffix's.

    Parameters
    ----------
    path : str or path-like
        The output file.
    format : {"md", "html"}, optional
        The format asked for; then the suffix does not matter.

    Returns
    -------
    str
        ``"md"`` or ``"html"``.

    Raises
    ------
    LawfitError
        An unknown ``format``, or none with a suffix that names neither format.
    """
    if format is not None:
        return V.one_of(format, "format", ("md", "html"))
    suffix = Path(path).suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise LawfitError(
            f"{path}: the format is taken from the suffix (.md or .html), and "
            f"{suffix or 'no suffix'} is neither; name the file .md or .html, or give the "
            "format (format='md', lawfit report --format md)."
        )
    return REPORT_SUFFIXES[suffix]


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


#: Breusch-Pagan level of the log-space decision (one rule for lawfit: :mod:`lawfit.space`)
HETEROSCEDASTIC_P = _space.HETEROSCEDASTIC_P
#: a MemFT method whose shared-exponent law misses its cells by more than this multiple of
#: the SFT law's RMSE gets no saving claimed: the law does not describe its cells
RMSE_RATIO_LIMIT = 2.0


@dataclass
class _Setting:
    """One setting of the sweep (every method) and what its sections computed."""

    label: str
    data: xr.Dataset
    sft: xr.Dataset | None
    results: dict


@dataclass(frozen=True)
class _Options:
    bootstrap: int
    level: float
    rng: int
    targets_length: tuple[float, ...] | None


def _collected_mask(ds: xr.Dataset) -> xr.DataArray | None:
    """Cells that hold data (collected in any state), or None when the data cannot say."""
    if "status" in ds:
        return ds["status"] != "not_run"
    if "loss_reduction" in ds:
        return ds["loss_reduction"].notnull()
    return None


def _split_settings(ds: xr.Dataset) -> tuple[list[tuple[str, xr.Dataset]], list[str]]:
    """Split the settings (grouping dims other than objective) into those with and without data."""
    dims = [d for d in GROUP_DIMS if d != "objective" and d in ds.dims]
    multi = [d for d in dims if ds.sizes[d] > 1]
    if not multi:
        label = ", ".join(f"{d}={ds[d].values[0]}" for d in dims) or "all cells"
        return [(label, ds)], []
    found, empty = [], []
    for combo in itertools.product(*[ds[d].values.tolist() for d in multi]):
        sel = dict(zip(multi, combo, strict=True))
        sub = ds.sel({k: [v] for k, v in sel.items()})
        label = ", ".join(f"{k}={v}" for k, v in sel.items())
        mask = _collected_mask(sub)
        (found if mask is None or bool(mask.any()) else empty).append((label, sub))
    return found, [label for label, _ in empty]


def _sft(ds: xr.Dataset):
    if "objective" not in ds.dims:
        return ds
    if "sft" in ds["objective"].values:
        return ds.sel({"objective": ["sft"]})
    return None


def _has_ok_cells(ds: xr.Dataset) -> bool:
    return "loss_reduction" in ds and bool(ok_cells(ds).any())


def _notes(result) -> list:
    """Report blocks for a result's structured flags, then its plain notes."""
    flags = [("note", str(f)) for f in getattr(result, "flags", ())]
    return flags + [("note", n) for n in getattr(result, "notes", ())]


def _require_law_data(st: _Setting) -> xr.Dataset:
    """Return the SFT cells of a setting, or raise a LawfitError that says what is missing."""
    if st.sft is None:
        raise LawfitError("no 'sft' objective in this setting; the law is fitted on SFT cells.")
    if "rank" not in st.sft.dims or "length" not in st.sft.dims:
        raise LawfitError("the data has no rank and length dims; the law needs both.")
    if not _has_ok_cells(st.sft):
        raise LawfitError("no SFT cell with status 'ok' and a loss_reduction.")
    return st.sft


def _rank_context(sft: xr.Dataset) -> str:
    """Which ranks were collected and which the law can use (memorized cells are excluded)."""
    if "loss_after" not in sft or "rank" not in sft.dims:
        return ""
    ok = sft["loss_reduction"].notnull()
    if "status" in sft:
        ok = ok & (sft["status"] == "ok")
    fitted = ok & (sft["loss_after"] > LN2)
    others = [d for d in ok.dims if d != "rank"]
    have = sft["rank"].values[ok.any(others).values].tolist()
    used = sft["rank"].values[fitted.any(others).values].tolist()
    if have == used:
        return ""
    return (
        f" Ranks collected: {have}; not memorized (loss_after > ln 2, what the law fits): {used}."
    )


def _count_cells(ds: xr.Dataset) -> dict:
    """Cells of the dataset by state: collected statuses, memorized, not yet run."""
    out: dict = {"statuses": {}, "memorized": 0, "sweep": None, "not_run": None}
    if "status" in ds:
        st = pd.Series(np.asarray(ds["status"].values).ravel().astype(str))
        out["statuses"] = st[st != "not_run"].value_counts().to_dict()
        out["not_run"] = int((st == "not_run").sum())
    elif "loss_reduction" in ds:
        out["statuses"] = {"ok": int(ds["loss_reduction"].notnull().sum())}
    if "loss_after" in ds:
        mem = ds["loss_after"] <= LN2
        if "status" in ds:
            mem = mem & (ds["status"] == "ok")
        out["memorized"] = int(mem.sum())
    if "n_cells" in ds.attrs and "n_cells_done" in ds.attrs:
        out["sweep"] = (int(ds.attrs["n_cells_done"]), int(ds.attrs["n_cells"]))
    return out


def _data_status(counts: dict) -> str:
    """One sentence on what the dataset holds, in cells of the sweep."""
    st = counts["statuses"]
    n = sum(st.values())
    ok = st.get("ok", 0)
    parts = [f"{ok} ok ({counts['memorized']} of them memorized, loss_after ≤ ln 2)"]
    parts += [f"{v} {k}" for k, v in st.items() if k != "ok"]
    text = f"{n} cells collected: " + ", ".join(parts) + "."
    if counts["sweep"] is not None:
        done, total = counts["sweep"]
        text += f" The sweep has {total} cells: {done} finished, {total - done} not yet run" + (
            " (a PARTIAL dataset)." if done < total else "."
        )
    elif counts["not_run"]:
        text += (
            f" {counts['not_run']} other points of the dataset's grid (the product of its "
            "coordinates) hold no cell."
        )
    return text


def _ci(d: pd.DataFrame, param: str) -> str:
    r = d.loc[d["param"] == param].iloc[0]
    return f"{r['estimate']:.3g} [{r['low']:.3g}, {r['high']:.3g}]"


def _summary_law(res: dict) -> str:
    law = res.get("law")
    if law is None:
        return "not fitted"
    d = law.to_dataframe().reset_index()
    if "low" not in d:
        return f"α = {law.params['alpha']:.3g}, β = {law.params['beta']:.3g}"
    ci, method, reason = preferred_interval(law)
    d = d.drop(columns=["low", "high"]).merge(ci, left_on="param", right_index=True)
    how = f" ({method}: {reason})" if method else ""
    text = f"α = {_ci(d, 'alpha')}, β = {_ci(d, 'beta')}{how}"
    return f"{text}; R² = {law.r2:.3f}, n = {law.n_obs}{_summary_lack_of_fit(law)}"


def _summary_lack_of_fit(law) -> str:
    """``"; lack of fit p = ..."`` where the law's design points are replicated, else ``""``."""
    from lawfit.lack_of_fit import lack_of_fit

    try:
        return f"; lack of fit p = {lack_of_fit(law).pvalue:.2g}"
    except LawfitError:
        return ""


def _summary_best_form(res: dict) -> str:
    if "compare_log" in res:
        return f"{res['compare_log'].best} (log space: heteroscedastic residuals)"
    return res["compare"].best if "compare" in res else "not compared"


def _summary_threshold(res: dict) -> str:
    pt = res.get("transition")
    if pt is None:
        return "not computed"
    row = pt.to_dataframe().set_index("quantity")
    if "threshold_p_star" not in row.index:
        return "not computed"
    r = row.loc["threshold_p_star"]
    text = f"p* = {r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"
    unreliable = ("few_informative_runs", "threshold_not_logistic", "one_miss_per_run")
    if any(f.code in unreliable for f in pt.flags):
        text += " (flagged: interval not reliable, see the section)"
    return text


def _summary_capacity(res: dict) -> str:
    bits = res.get("bits")
    if bits is None or not math.isfinite(bits.max_bits_per_param):
        return "not computed"
    text = f"{bits.max_bits_per_param:.3g} bits/param (largest measured)"
    by_rank = bits.by_rank
    if len(by_rank) and "saturated" in by_rank and by_rank["saturated"].any():
        text += "; a lower bound where targets were memorized"
    if len(by_rank) and "at_longest" in by_rank and by_rank["at_longest"].any():
        text += "; a lower bound where a rank stored the most at its longest target"
    return text


def _summary_memft(res: dict) -> str:
    claims = res.get("memft_claims")
    if claims is None:
        return "no MemFT comparison"
    return "; ".join(claims) if claims else "no MemFT saving computable"


def _summary(settings: list[_Setting], counts: dict, empty: list[str]) -> list:
    """Build the one-screen summary: one row per setting, then the data's status."""
    rows = [
        {
            "setting": st.label,
            "law (SFT, 95% CI)": _summary_law(st.results),
            "best form": _summary_best_form(st.results),
            "recall threshold": _summary_threshold(st.results),
            "capacity": _summary_capacity(st.results),
            "MemFT vs SFT": _summary_memft(st.results),
        }
        for st in settings
    ]
    blocks: list = [("h2", "Summary")]
    if rows:
        blocks.append(("table", pd.DataFrame(rows)))
    blocks.append(("p", "Data: " + _data_status(counts)))
    if empty:
        blocks.append(
            ("p", "Settings with nothing collected (no section): " + "; ".join(empty) + ".")
        )
    failed = [f"{st.label}: {t}" for st in settings for t in st.results.get("errors", {})]
    if failed:
        blocks.append(
            (
                "note",
                "sections that failed on an unexpected error (a bug, please "
                "report it): " + "; ".join(failed) + ".",
            )
        )
    return blocks


def _dims_sentence(ds: xr.Dataset, counts: dict) -> str:
    """Name the grid's coordinates, how many of their combinations are cells, then the rest.

    A merged sweep is stored on the product of its coordinates, so the sizes alone overstate
    what was collected (a sequence with one cell still counts once along ``data_seed``).
    """
    grid = {d: n for d, n in ds.sizes.items() if d in CELL_DIMS}
    other = {d: n for d, n in ds.sizes.items() if d not in CELL_DIMS}
    product = int(np.prod(list(grid.values()))) if grid else 0
    cells = counts["sweep"][1] if counts["sweep"] is not None else sum(counts["statuses"].values())
    text = "Cell coordinates: " + ", ".join(f"{d}={n}" for d, n in grid.items())
    text += f": {product:,} combinations, of which {cells:,} are "
    text += "the sweep's cells" if counts["sweep"] is not None else "collected cells"
    text += " (the others are stored as not_run)." if cells < product else "."
    if other:
        text += " Per-cell axes: " + ", ".join(f"{d}={n}" for d, n in other.items()) + "."
    return text + " Variables: " + ", ".join(sorted(map(str, ds.data_vars))) + "."


def _dataset_section(ds: xr.Dataset, counts: dict) -> list:
    """Dims, variables, synthetic/partial warnings and the cell counts."""
    blocks: list = [("h2", "Dataset"), ("p", _dims_sentence(ds, counts))]
    if str(ds.attrs.get("synthetic", "")).lower() == "true":
        blocks.append(
            (
                "note",
                "this dataset is SYNTHETIC (attrs synthetic=true): numbers below "
                "describe the simulator, not a model.",
            )
        )
    if str(ds.attrs.get("complete", "true")).lower() == "false":
        blocks.append(
            (
                "note",
                f"this dataset is PARTIAL: {ds.attrs.get('n_cells_done', '?')} "
                f"of {ds.attrs.get('n_cells', '?')} cells of its sweep are "
                "collected (attrs complete=false); every number below rests on "
                "the collected cells only.",
            )
        )
    rows = [
        {"cells": "ok, not memorized", "n": counts["statuses"].get("ok", 0) - counts["memorized"]},
        {"cells": "ok, memorized (loss_after ≤ ln 2)", "n": counts["memorized"]},
    ]
    rows += [{"cells": k, "n": v} for k, v in counts["statuses"].items() if k != "ok"]
    if counts["sweep"] is not None:
        done, total = counts["sweep"]
        rows.append({"cells": "not yet run (of the sweep)", "n": total - done})
    blocks.append(("table", pd.DataFrame(rows)))
    if "loss_reduction" not in ds or "rank" not in ds.dims or "length" not in ds.dims:
        blocks.append(
            (
                "note",
                "no loss_reduction over rank and length: the law, model "
                "selection and capacity sections are skipped.",
            )
        )
    return blocks


def _model_selection(st: _Setting, opt: _Options) -> list:
    from lawfit.compare import compare

    sft = _require_law_data(st)
    try:
        cmp = compare(sft)
    except LawfitError as exc:
        raise LawfitError(f"{exc}{_rank_context(sft)}") from exc
    st.results["compare"] = cmp
    from lawfit.compare import SHOWN_COLUMNS

    cols = [c for c in SHOWN_COLUMNS if c in cmp.table]
    blocks: list = [
        (
            "p",
            f"Best form by AICc: **{cmp.best}** "
            f"(Akaike weight {cmp.table['weight_aicc'].iloc[0]:.3f}).",
        ),
        ("table", cmp.table[cols]),
    ]
    if len(cmp.lr_tests):
        blocks += [("p", "Likelihood-ratio tests of nested pairs:"), ("table", cmp.lr_tests)]
    blocks += _lack_of_fit_blocks(cmp)
    blocks += _notes(cmp)
    best = cmp.fits[cmp.best]
    log_cmp: dict = {}
    choice = _space.choose_space(
        cmp.heteroscedasticity_pvalue,
        lambda: _log_space_pvalue(sft, log_cmp),
        positive=bool(np.all(best.points[best.response] > 0)),
    )
    if "error" in log_cmp:
        return blocks + [("note", f"log-space comparison not possible: {log_cmp['error']}")]
    if choice.space != "log":
        return blocks
    cmp_log = log_cmp["result"]
    st.results["compare_log"] = cmp_log
    return blocks + [
        (
            "p",
            f"Log space preferred here ({choice.reason}): the same comparison in log "
            f"space. Best form: **{cmp_log.best}** (Akaike weight "
            f"{cmp_log.table['weight_aicc'].iloc[0]:.3f}).",
        ),
        ("table", cmp_log.table[cols]),
    ]


def _lack_of_fit_blocks(cmp) -> list:
    """Each form's lack-of-fit F test against the scatter of replicated cells, as a table."""
    from lawfit.lack_of_fit import lack_of_fit_by_form

    table, skipped = lack_of_fit_by_form(cmp)
    if table.empty:
        return [("note", f"Lack-of-fit tests not possible: {r}") for r in skipped.values()][:1]
    blocks: list = [
        (
            "p",
            "Lack of fit against the scatter of replicated cells (cells sharing every input "
            "of a form; lawfit.lack_of_fit): a small p-value says the form misses the "
            "design points' means by more than their replicates scatter. Forms whose "
            "replicates differ only in seed (those reading loss_before, which differs "
            "between target sequences) count the scatter between sequences as misfit: "
            "their p-values do not compare with the others'.",
        ),
        ("table", table.rename(columns={"replicates": "replicates differ in"})),
    ]
    blocks += [("note", f"lack of fit not tested for {f}: {r}") for f, r in skipped.items()]
    return blocks + _lack_of_fit_within_sequence(cmp, table)


def _lack_of_fit_within_sequence(cmp, table: pd.DataFrame) -> list:
    """Every form on the footing of the forms replicated by seed only, where both kinds exist."""
    from lawfit.lack_of_fit import lack_of_fit_by_form

    kinds = set(table["replicates"])
    if "seed" not in kinds or not any("data_seed" in k for k in kinds):
        return []
    same, skipped = lack_of_fit_by_form(cmp, within=("data_seed",))
    notes = [("note", f"not tested within sequences: {f}: {r}") for f, r in skipped.items()]
    return [
        (
            "p",
            "Like with like: every form tested with replicates that share their target "
            "sequence as well (lawfit.lack_of_fit(..., within=('data_seed',))), the footing of "
            "the forms above replicated by seed only. The pure error is then the scatter "
            "between initialisation seeds, and the scatter between sequences is misfit for "
            "every form: here the forms replicated by seed only compare with the others.",
        ),
        ("table", same.rename(columns={"replicates": "replicates differ in"})),
        *notes,
    ]


def _log_space_pvalue(sft: xr.Dataset, out: dict) -> float | None:
    """Run the log-space comparison (kept in ``out["result"]``); its Breusch-Pagan p-value."""
    from lawfit.compare import compare

    try:
        out["result"] = compare(sft, space="log")
    except LawfitError as exc:
        out["error"] = exc
        return None
    return out["result"].heteroscedasticity_pvalue


def _exclusion_text(law) -> str:
    """Why cells were left out of the fit: memorized, not collected, other statuses."""
    ex = law.exclusions
    if not len(ex) or "reason" not in ex:
        return f"{law.n_excluded} excluded"
    reasons = ex["reason"].astype(str)
    named = {
        "memorized": reasons.str.contains("memorized|loss_after", regex=True),
        "grid points without a cell": reasons.str.contains("not_run"),
    }
    parts = [f"{int(m.sum())} {k}" for k, m in named.items() if m.any()]
    rest = ~(named["memorized"] | named["grid points without a cell"])
    parts += [f"{n} {r}" for r, n in reasons[rest].value_counts().items()]
    return "excluded: " + ", ".join(parts)


def _law_unit(sft: xr.Dataset) -> tuple[str, str | None]:
    """Resampling unit of the law's bootstrap, and a note saying what it generalises over.

    With several target sequences (``data_seed``) the intervals cluster over them, so that
    they speak for other content, not only for the sequences collected; otherwise cells.
    """
    from lawfit.data import n_targets, target_unit

    n = n_targets(sft)
    if target_unit(sft) == "cell":
        return "cell", None
    note = (
        f"bootstrap clustered over the {n} target sequences (data_seed): the intervals "
        "generalise over the content memorized"
    )
    if n < MIN_BOOTSTRAP_CLUSTERS:
        note += (
            f"; with {n} clusters they are too narrow (a cluster bootstrap wants 10 or "
            "more): read the cluster-robust interval below"
        )
    return "data_seed", note


def _cluster_robust_text(law, unit: str, level: float) -> str:
    """One sentence with the CR2 interval of the exponents over the target sequences."""
    ci = law.conf_int("cluster", confidence_level=level, cluster=unit)
    shown = [p for p in ("alpha", "beta") if p in ci.index] or list(ci.index)
    parts = [
        f"{p} [{ci.loc[p, 'low']:.3g}, {ci.loc[p, 'high']:.3g}] ({ci.loc[p, 'dof']:.1f} dof)"
        for p in shown
    ]
    return (
        f"Cluster-robust {level:.0%} intervals over the {ci.attrs['n_clusters']} target "
        f"sequences (CR2 sandwich, Bell-McCaffrey t dof; calibrated down to 3 clusters, "
        f"lawfit.robust): {', '.join(parts)}."
    )


def _sequence_spread_text(law, unit: str) -> str:
    """One sentence with how much target sequences differ and cells scatter around the law."""
    from lawfit.robust import variance_components

    try:
        vc = variance_components(law, cluster=unit)
    except LawfitError as exc:
        return f"Spread between target sequences: not estimated ({exc})"
    return (
        f"Between target sequences the law's level varies by {100 * vc['sd_between']:.2g} % "
        f"and cells scatter by {100 * vc['sd_within']:.2g} % around their sequence's law "
        f"(standard deviations of the log residuals, one-way ANOVA over {unit} with "
        f"{vc['df_between']:.0f} and {vc['df_within']:.0f} dof; "
        f"lawfit.robust.variance_components). A new cell on a new sequence: "
        f"lawfit.robust.law_prediction_interval."
    )


def _sequence_blocks(law, unit: str) -> list:
    """Return the spread between target sequences and each sequence's offset from the law."""
    from lawfit.robust import sequence_offsets

    blocks: list = [("p", _sequence_spread_text(law, unit))]
    try:
        offsets = sequence_offsets(law, cluster=unit)
    except LawfitError:  # the sentence above says why
        return blocks
    table = pd.DataFrame(
        {
            unit: offsets.index,
            "cells": offsets["cells"].to_numpy(),
            "its cells vs the law": [f"{v:+.1f} %" for v in offsets["percent"]],
            "k (shrinkage)": [f"{v:.2f}" for v in offsets["k"]],
            "a new cell's offset": [f"{v:+.1f} %" for v in offsets["offset_percent"]],
        }
    )
    return blocks + [
        ("table", table),
        (
            "note",
            f"Per {unit}: its fitted cells' ΔL against the law (their mean log residual), "
            "and the offset a new cell of it is predicted with, k times that (lawfit fit "
            f"--at ... --cluster {unit} --in-cluster VALUE; lawfit.robust.sequence_offsets).",
        ),
    ]


def _law(st: _Setting, opt: _Options) -> list:
    from lawfit.fitting import fit

    sft = _require_law_data(st)
    unit, unit_note = _law_unit(sft)
    try:
        law = fit(
            sft,
            "power_law",
            bootstrap=opt.bootstrap,
            unit=unit,
            confidence_level=opt.level,
            rng=opt.rng,
        )
    except LawfitError as exc:
        raise LawfitError(f"{exc}{_rank_context(sft)}") from exc
    st.results["law"] = law
    blocks: list = [
        ("table", law.to_dataframe().reset_index()),
        (
            "p",
            f"n = {law.n_obs} cells fitted ({_exclusion_text(law)}), "
            f"R² = {law.r2:.4f}, RMSE = {law.rmse:.4g} nats. "
            "Paper: α ≈ 0.6, β ≈ 0.5, R² > 0.98.",
        ),
    ]
    blocks += [("note", unit_note)] if unit_note else []
    if unit != "cell":
        blocks.append(("p", _cluster_robust_text(law, unit, opt.level)))
        blocks += _sequence_blocks(law, unit)
    cluster = None if unit == "cell" else unit
    blocks.append(("p", _difference_text(law, cluster, opt.level)))
    blocks.append(("p", _gamma_text(sft, law, cluster, opt.level)))
    blocks += _best_form_exponents(st, unit, opt.level)
    return blocks + [("note", f"flag: {fl}") for fl in law.flags]


def _best_form_exponents(st: _Setting, unit: str, level: float) -> list:
    """Report the exponents under the form the model selection preferred, if not the law."""
    cmp = st.results.get("compare")
    best = cmp.fits.get(cmp.best) if cmp is not None else None
    if best is None or cmp.best == "power_law" or not {"alpha", "beta"} <= set(best.params):
        return []
    a, b = best.params["alpha"], best.params["beta"]
    cluster = None if unit == "cell" else unit
    text = (
        f"Under the form the model selection prefers ({cmp.best}) the exponents read "
        f"α = {a:.3g}, β = {b:.3g}: their values belong to the form. "
    )
    try:
        if cluster is not None:
            text += _cluster_robust_text(best, unit, level) + " "
        text += _difference_text(best, cluster, level)
    except LawfitError as exc:
        text += f"(intervals not computed: {exc})"
    return [("p", text)]


def _gamma_text(sft, law, cluster: str | None, level: float) -> str:
    """One sentence with γ, the exponent of the one-variable law C·(r/ℓ)^γ + b, fitted."""
    from lawfit.fitting import fit

    try:
        one = fit(sft, "ratio", confidence_level=level, profile=False)
        method = "wald" if cluster is None else "cluster"
        ci = one.conf_int(method, confidence_level=level, cluster=cluster).loc["alpha"]
    except LawfitError as exc:
        return f"The one-variable law C·(r/ℓ)^γ + b: not fitted ({exc})"
    how = "asymptotic" if cluster is None else f"cluster-robust over {cluster}"
    if cluster is not None:
        how += f", {ci['dof']:.1f} dof"
    return (
        f"The one-variable law C·(r/ℓ)^γ + b (lawfit fit --form ratio) gives "
        f"γ = {one.params['alpha']:.3g} [{ci['low']:.3g}, {ci['high']:.3g}] ({how}), "
        f"R² = {one.r2:.4f} against the power law's {law.r2:.4f}."
    )


def _difference_text(law, cluster: str | None, level: float) -> str:
    """One sentence testing α = β, the one-variable law C·(r/ℓ)^γ."""
    d = law.contrast({"alpha": 1, "beta": -1}, cluster=cluster, confidence_level=level)
    how = "asymptotic" if cluster is None else f"cluster-robust over {cluster}"
    verdict = "rejected" if d["pvalue"] < 1 - level else "not rejected"
    return (
        f"α − β = {d['estimate']:.3g} [{d['low']:.3g}, {d['high']:.3g}] ({how}, "
        f"{d['dof']:.1f} dof, p = {d['pvalue']:.2g}): α = β, the one-variable law "
        f"C·(r/ℓ)^γ, is {verdict} at {1 - level:.2g}."
    )


def _budget(st: _Setting, opt: _Options) -> list:
    from lawfit.budget import budget_sensitivity

    if "law" not in st.results or "loss_curve" not in st.sft:
        raise LawfitError("needs the fitted law and trajectories (loss_curve).")
    bs = budget_sensitivity(
        st.sft,
        bootstrap=opt.bootstrap,
        rng=opt.rng,
        confidence_level=opt.level,
        unit=_law_unit(st.sft)[0],
    )
    st.results["budget"] = bs
    conv = bs.convergence
    counts = conv["stop_reason"].value_counts()
    cols = [
        c
        for c in (
            "budget",
            "n_obs",
            "n_truncated",
            "r2",
            "alpha",
            "alpha_low",
            "alpha_high",
            "beta",
            "beta_low",
            "beta_high",
            "ci",
        )
        if c in bs.table
    ]
    return (
        [
            (
                "p",
                f"Stop reasons of the {len(conv)} ok SFT cells: "
                + ", ".join(f"{k} {v}" for k, v in counts.items())
                + f". Still improving at the budget (ΔL grew by more than "
                f"{conv.attrs['tol']:.0%} over the {conv.attrs['window_text']}): "
                f"{int(conv['still_improving'].sum())}.",
            ),
        ]
        + _still_improving(conv)
        + [
            (
                "p",
                "The law refitted as if the sweep had stopped earlier (ΔL read from the "
                "recorded trajectories):",
            ),
            ("table", bs.table[cols]),
        ]
        + _notes(bs)
    )


def _still_improving(conv: pd.DataFrame) -> list:
    """Tabulate the cells still gaining ΔL at the budget (nothing when there are none)."""
    rows = conv[conv["still_improving"]]
    if rows.empty:
        return []
    varying = [c for c in CELL_DIMS if c in rows.columns and conv[c].nunique() > 1]
    table = rows[varying + ["steps", "loss_reduction"]].copy()
    table["gain_last_window_percent"] = (100 * rows["rel_gain_last_window"]).round(2)
    return [("table", table.reset_index(drop=True))]


#: what the three kinds of bits in the capacity table mean (lawfit.information)
BITS_KINDS = (
    "bits = information stored, Σₜ max(0, Hₜ − CE_after,ₜ/ln 2) with Hₜ the content's entropy "
    "per token; bits_recalled = entropy of the entries recalled exactly; bits_dl = ΔL in bits, "
    "which is not information (lawfit.information). Only information compares with the anchors."
)


def _capacity(st: _Setting, opt: _Options) -> list:
    from lawfit.capacity import predict_capacity

    law = st.results.get("law")
    if law is None:
        raise LawfitError("needs the fitted law.")
    sft = st.sft
    obs = collected_lengths(sft).astype(float)
    lens = (
        np.asarray(opt.targets_length, float)
        if opt.targets_length is not None
        else np.concatenate([obs, [2 * obs.max()]])
    )
    pc = predict_capacity(law, length=lens, target=LN2, target_kind="loss_after", data=sft)
    st.results["capacity"] = pc
    from lawfit.capacity import SHOWN_COLUMNS

    cols = [c for c in SHOWN_COLUMNS if c in pc.table]
    rmax = float(sft["rank"].max())
    pl = predict_capacity(law, rank=rmax, target=0.5)
    st.results["capacity_length"] = pl
    t = pl.table.iloc[0]
    est = (
        f"{t['estimate']:.4g} tokens"
        if np.isfinite(t["estimate"])
        else "beyond the search range (the law never falls below the target)"
        if t["estimate"] > 0
        else "none (unreachable even for short targets)"
    )
    low, high = float(t["low"]), float(t["high"])
    ci = "" if np.isnan(low) and np.isnan(high) else f" [{_fmt(low)}, {_fmt(high)}]"
    return (
        [
            ("table", pc.table[cols].rename(columns={"estimate": "rank_needed"})),
            (
                "p",
                f"Longest target over which rank {rmax:g} still reduces the loss by "
                f"ΔL ≥ 0.5 nats/token: {est}{ci}"
                + (" (extrapolated)." if t["extrapolated"] else "."),
            ),
        ]
        + _notes(pc)
        + _capacity_by_form(st, lens)
    )


def _capacity_by_form(st: _Setting, lengths: np.ndarray) -> list:
    """Answer the capacity table's question with every form of the model selection."""
    from lawfit.capacity_forms import capacity_by_form

    cmp = st.results.get("compare")
    if cmp is None:
        return []
    try:
        res = capacity_by_form(
            cmp, length=lengths, target=LN2, target_kind="loss_after", data=st.sft
        )
    except LawfitError as exc:
        return [("note", f"capacity by form not computed: {exc}")]
    st.results["capacity_forms"] = res
    return [
        (
            "p",
            "The same question answered by every form of the model selection (point "
            "answers; `lawfit.capacity_forms.capacity_by_form`): `estimate` is their average "
            "weighted by the Akaike weights, `between_form_sd` their spread, which the "
            "interval above (one form's sampling error) leaves out.",
        ),
        ("table", res.averaged),
    ] + _notes(res)


def _bits(st: _Setting, opt: _Options) -> list:
    from lawfit.capacity import bits_per_parameter

    if st.sft is None:
        raise LawfitError("no 'sft' objective in this setting.")
    bits = bits_per_parameter(st.sft)
    st.results["bits"] = bits
    blocks: list = [("table", bits.by_rank)] if len(bits.by_rank) else []
    blocks.append(("p", BITS_KINDS))
    blocks.append(
        (
            "p",
            "Anchors: "
            + "; ".join(f"{k}: {v} bits/param" for k, v in bits.anchors.items())
            + (
                f". Largest measured: {bits.max_bits_per_param:.3g} bits/param."
                if math.isfinite(bits.max_bits_per_param)
                else "."
            ),
        )
    )
    return blocks + _notes(bits)


def _transition(st: _Setting, opt: _Options) -> list:
    from lawfit.transition import phase_transition

    if st.sft is None:
        raise LawfitError("no 'sft' objective in this setting.")
    pt = phase_transition(st.sft, bootstrap=opt.bootstrap, rng=opt.rng, confidence_level=opt.level)
    st.results["transition"] = pt
    blocks: list = [("table", pt.to_dataframe())]
    if pt.sufficiency is not None:
        s = pt.sufficiency
        blocks.append(
            (
                "p",
                f"Sufficiency: {s.n_violations} of {s.n_eligible} tokens with "
                f"p_after > 0.5 and an intact prefix were not recalled (ties: "
                f"{s.n_ties}); necessity rate {s.necessity_rate:.4f}.",
            )
        )
    if pt.cascade is not None:
        c = pt.cascade
        blocks.append(
            (
                "p",
                f"Cascade: Spearman ρ = {c.rho:.3f} [{c.ci[0]:.3f}, {c.ci[1]:.3f}] "
                f"over {c.n_units} {c.unit}s (paper: ρ = 0.908 over 155 runs).",
            )
        )
    if pt.sequence is not None:
        blocks.append(("table", pt.sequence.table.reset_index()))
    if pt.bimodality is not None:
        blocks.append(("table", pt.bimodality))
    return blocks + _notes(pt)


def _loss_before_by_length(ds: xr.Dataset) -> pd.Series | None:
    """Mean loss before training per target length (ΔL can never exceed it)."""
    if "loss_before" not in ds or "length" not in ds["loss_before"].dims:
        return None
    lb = ds["loss_before"]
    return lb.mean([d for d in lb.dims if d != "length"]).to_series()


def _plausible_validation(val: pd.DataFrame, ds: xr.Dataset) -> tuple[pd.DataFrame, list]:
    """Blank law values above loss_before and measured savings on memorized cells."""
    val, notes = val.copy(), []
    lb = _loss_before_by_length(ds)
    if lb is not None and "length" in val:
        ceiling = val["length"].map(lb).to_numpy(float)
        law_cols = [
            c
            for c in val
            if c.startswith(("dL_sft_law", "dL_memft_law")) and not c.endswith(("_low", "_high"))
        ]
        n_bad = 0
        for col in law_cols:
            bad = val[col].to_numpy(float) > ceiling
            n_bad += int(bad.sum())
            stem = [c for c in val if c.startswith(col)]
            if col == "dL_sft_law" and "gain_over_sft_law" in val:
                stem.append("gain_over_sft_law")
            val.loc[bad, stem] = np.nan
        if n_bad:
            notes.append(
                f"FLAG: {n_bad} law value(s) above the cell's loss_before omitted "
                "(blank): ΔL cannot exceed loss_before (loss_after would be negative); "
                "the law extrapolates past saturation there."
            )
    if "memorized" in val and val["memorized"].astype(bool).any():
        mem = val["memorized"].astype(bool).to_numpy()
        cols = [c for c in val if c.startswith(("saving_measured", "sft_equivalent_rank"))]
        val.loc[mem, cols] = np.nan
        notes.append(
            f"saving_measured omitted (blank) on {int(mem.sum())} memorized MemFT "
            "cell(s): ΔL saturates there, so it says nothing about capacity."
        )
    return val, notes


def _claimable_predictions(ms) -> tuple[pd.DataFrame, list, list]:
    """Drop methods whose law does not describe their cells; verdicts for the summary."""
    preds, notes, claims = ms.predictions, [], []
    sft = ms.fits.get("sft")
    if not len(preds) or sft is None:
        return preds, notes, claims
    keep = np.ones(len(preds), bool)
    for method, rows in preds.groupby("objective", sort=False):
        rmse = float(rows["memft_rmse"].iloc[0]) if "memft_rmse" in rows else float("nan")
        if math.isfinite(rmse) and rmse > RMSE_RATIO_LIMIT * sft.rmse:
            keep &= (preds["objective"] != method).to_numpy()
            notes.append(
                f"FLAG: no saving is claimed for {method}: its law misses its cells "
                f"by RMSE {rmse:.3g} nats, more than {RMSE_RATIO_LIMIT:g}× the SFT "
                f"law's {sft.rmse:.3g}; its predictions are omitted."
            )
            claims.append(f"{method}: law does not describe its cells, no saving claimed")
            continue
        r = rows.iloc[0]
        lo, hi = float(r["saving_low"]), float(r["saving_high"])
        verdict = (
            "no saving detected"
            if lo <= 0 <= hi
            else "saves capacity"
            if lo > 0
            else "needs more capacity than SFT"
        )
        claims.append(f"{method}: {verdict}, rank saving {r['saving']:.1%} [{lo:.1%}, {hi:.1%}]")
    return preds[keep], notes, claims


def _measured_memft_claims(validation: pd.DataFrame) -> list[str]:
    """Say, per MemFT objective without a law, how its cells compare with SFT's on their targets.

    Parameters
    ----------
    validation : pandas.DataFrame
        ``MemftResult.validation``: measured MemFT cells with ``gain_measured`` (ΔL minus
        that of the SFT cells on the same targets).

    Returns
    -------
    list of str
        One claim per objective with a paired cell, e.g. ``"memft_ot: measured only, ΔL
        -0.088 nats/token vs SFT on the same targets (1 cell), no saving claimed"``.
    """
    if "gain_measured" not in validation:
        return []
    claims = []
    for method, rows in validation.groupby("objective", sort=False):
        gain = rows["gain_measured"].dropna()
        if len(gain):
            cells = f"{len(gain)} cell{'s' if len(gain) > 1 else ''}"
            claims.append(
                f"{method}: measured only, ΔL {gain.mean():+.3g} nats/token vs SFT on the same "
                f"targets ({cells}), no saving claimed"
            )
    return claims


def _memft(st: _Setting, opt: _Options) -> list:
    from lawfit.memft import memft_savings

    # the SFT law of the law section, not a second fit of it: one interval per quantity
    given = {"sft": st.results["law"]} if "law" in st.results else None
    ms = memft_savings(
        st.data, bootstrap=opt.bootstrap, rng=opt.rng, confidence_level=opt.level, fits=given
    )
    st.results["memft"] = ms
    blocks: list = []
    if ms.budget is not None:
        tb = ms.budget.summary_table
        blocks += [
            (
                "p",
                "Share of SFT's loss weight spent on tokens already above p = 0.5 "
                "(what MemFT-OT masks):",
            ),
            ("table", tb[tb["rank"].astype(str) == "all"]),
        ]
    preds, notes, claims = _claimable_predictions(ms)
    if not len(ms.predictions):
        claims = _measured_memft_claims(ms.validation) or None
    st.results["memft_claims"] = claims
    if len(preds):
        cols = [c for c in preds.columns if not c.startswith("n_unreach")]
        blocks += [("p", f"Predicted capacity for {ms.target}:"), ("table", preds[cols])]
    if len(ms.validation):
        val, more = _plausible_validation(ms.validation, st.data)
        notes += more
        keep = [
            c
            for c in (
                "objective",
                "rank",
                "length",
                "memorized",
                "dL_measured",
                "dL_sft_measured",
                "n_paired",
                "gain_measured",
                "exact_match",
                "exact_match_sft",
                "steps",
                "steps_sft",
                "steps_ratio",
                "dL_memft_law",
                "inside_memft_pi",
                "dL_memft_law_heldout",
                "dL_sft_law",
                "gain_over_sft_law",
                "sft_equivalent_rank",
                "saving_measured",
            )
            if c in val
        ]
        blocks += [
            (
                "p",
                "Measured MemFT cells against the laws (dL_sft_measured: the SFT cells on "
                "the same targets, n_paired of them):",
            ),
            ("table", val[keep]),
        ]
    return blocks + _notes(ms) + [("note", n) for n in notes]


#: the sections of every setting, in report order: (title, function)
SECTIONS: tuple[tuple[str, Callable[[_Setting, _Options], list]], ...] = (
    ("Which form? (model selection on SFT cells)", _model_selection),
    ("The Parametric Memory Law ΔL = C·r^α·ℓ^(−β) + b (SFT)", _law),
    ("Training budget: had ΔL stopped moving?", _budget),
    ("Capacity: rank needed for verbatim recall (loss_after ≤ ln 2)", _capacity),
    ("Bits stored per adapter parameter", _bits),
    ("Phase transition of verbatim recall (SFT)", _transition),
    ("MemFT savings over SFT", _memft),
)


def _settings_across(
    ds: xr.Dataset, dim: str, kind=lambda v: v, within: tuple[str, ...] = ()
) -> list[_Setting]:
    """SFT cells of every setting (the grouping dims but ``dim``) with 2+ kinds along ``dim``.

    ``kind`` maps a value of ``dim`` to what is compared (a carrier label for ``modules``);
    the dims in ``within`` may vary with ``dim`` (a model's adapter layer) and do not split
    the settings.
    """
    if dim not in ds.dims or ds.sizes[dim] < 2:
        return []
    skip = ("objective", dim, *within)
    dims = [d for d in GROUP_DIMS if d not in skip and d in ds.dims and ds.sizes[d] > 1]
    out = []
    for combo in itertools.product(*[ds[d].values.tolist() for d in dims]):
        sft = _sft(ds.sel({d: [v] for d, v in zip(dims, combo, strict=True)}))
        if sft is None:
            continue
        kept = [v for v in sft[dim].values.tolist() if _has_ok_cells(sft.sel({dim: [v]}))]
        if len({kind(v) for v in kept}) >= 2:
            label = ", ".join(f"{d}={v}" for d, v in zip(dims, combo, strict=True))
            sub = sft.sel({dim: kept})
            out.append(_Setting(label or "all cells", sub, sub, {}))
    return out


def _carrier_settings(ds: xr.Dataset) -> list[_Setting]:
    """SFT cells of every setting (all grouping dims but modules) that holds 2+ carriers."""
    from lawfit.carriers import carrier_of

    return _settings_across(ds, "modules", lambda m: carrier_of(m)[0])


def _models(st: _Setting, opt: _Options) -> list:
    """Report the law per model and the test of exponents shared across models."""
    from lawfit.shared import shared_exponents

    seqs = "data_seed" in st.sft.dims and st.sft.sizes["data_seed"] > 1
    res = shared_exponents(
        st.sft, by="model", confidence_level=opt.level, cluster="data_seed" if seqs else None
    )
    st.results["shared_exponents"] = res
    return _shared_blocks(res, "law", "Exponents shared across models")


def _shared_blocks(res, law_col: str, what: str) -> list:
    """Blocks of a shared-exponent test: α and β per group, differences, test, notes.

    ``law_col`` names the separate/shared column (``"model"`` in a ``CarrierLaw``).
    """
    blocks: list = [("table", res.exponents[res.exponents["parameter"].isin(("alpha", "beta"))])]
    if len(res.differences):
        blocks.append(("table", res.differences))
    if len(res.comparison):
        cols = [law_col, "k", "n_obs", "aicc", "weight_aicc", "f_statistic", "f_pvalue"]
        blocks += [
            ("table", res.comparison[cols]),
            ("p", f"{what}, F likelihood-ratio test at {res.significance:g}: {res.verdict}."),
        ]
    return blocks + _notes(res)


def _carriers(st: _Setting, opt: _Options) -> list:
    """Report the law per carrier, the shared-exponent test and bits per parameter and byte."""
    from lawfit.carriers import carrier_bits, carrier_law

    law = carrier_law(st.sft, bootstrap=opt.bootstrap, confidence_level=opt.level, rng=opt.rng)
    st.results["carrier_law"] = law
    blocks = _shared_blocks(law, "model", "Shared exponents")
    try:
        bits = carrier_bits(
            st.sft, bootstrap=opt.bootstrap, confidence_level=opt.level, rng=opt.rng
        )
    except LawfitError as exc:
        return blocks + [("note", f"bits per parameter skipped: {exc}")]
    st.results["carrier_bits"] = bits
    cols = [
        "carrier",
        "bits_per_param",
        "bits_per_param_low",
        "bits_per_param_high",
        "bits_per_byte",
        "bits_per_byte_low",
        "bits_per_byte_high",
        "n_sizes",
        "lower_bound",
        "n_still_improving",
        "bits_kind",
    ]
    return blocks + [("table", bits.table[cols])] + _notes(bits)


def _run_section(title: str, section, st: _Setting, opt: _Options) -> list:
    """Run one section; a failure becomes a note that says why, never a crash."""
    blocks: list = [("h3", title)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks += section(st, opt)
    except LawfitError as exc:
        blocks.append(("note", f"skipped: {exc}"))
    except Exception as exc:  # one analysis failing must not sink the others
        st.results.setdefault("errors", {})[title] = exc
        blocks.append(
            (
                "note",
                f"failed: {type(exc).__name__}: {exc}. The data passed the "
                "checks, so this is a bug in lawfit: please report it.",
            )
        )
    return blocks


def _provenance(ds: xr.Dataset) -> list:
    """Show the dataset's recorded origin, collapsed (it is long and rarely read)."""
    parts = [
        f"{k}: {ds.attrs[k]}"
        for k in ("git_revision", "created", "schema_version", "fingerprint")
        if k in ds.attrs
    ]
    for key in ("versions", "combined_from", "config"):  # combined: each sweep, then the first's
        raw = ds.attrs.get(key)
        if raw:
            try:
                text = json.dumps(json.loads(raw), indent=1)
            except (TypeError, ValueError):
                text = str(raw)
            parts.append(f"{key}:\n{text}")
    if not parts:
        return [
            ("h2", "Appendix: provenance"),
            ("note", "the dataset carries no provenance attributes (config, versions)."),
        ]
    return [("h2", "Appendix: provenance"), ("details", ("dataset attributes", "\n".join(parts)))]


def build_report(
    ds,
    *,
    bootstrap: int = 500,
    confidence_level: float = 0.95,
    targets_length: tuple[float, ...] | None = None,
    rng: int = 0,
    progress: Callable[[str], None] | None = None,
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
    progress : callable, optional
        Called with a short text (``"<setting>: <section>"``) before each section runs.

    Returns
    -------
    Report
        Blocks to render with ``to_markdown()`` / ``to_html()`` / ``save()``: a summary,
        the dataset, one part per setting with collected cells, the provenance appendix.

    Raises
    ------
    LawfitError
        If ``ds`` is not a dataset or a readable path.
    """
    ds = load(ds)
    bootstrap, confidence_level = V.bootstrap_count(bootstrap), V.confidence_level(confidence_level)
    V.random_generator(rng)
    say = progress or (lambda _text: None)
    opt = _Options(
        int(bootstrap),
        float(confidence_level),
        rng,
        None if targets_length is None else tuple(targets_length),
    )
    found, empty = _split_settings(ds)
    settings = [_Setting(label, sub, _sft(sub), {}) for label, sub in found]
    body: list = []
    for st in settings:
        body.append(("h2", f"Setting: {st.label}"))
        for title, section in SECTIONS:
            say(f"{st.label}: {title}")
            body += _run_section(title, section, st, opt)
    carriers = _carrier_settings(ds)
    for st in carriers:  # only with 2+ carriers: otherwise the report is unchanged
        body.append(("h2", f"Carriers: {st.label}"))
        say(f"carriers, {st.label}: one capacity law across carriers")
        body += _run_section("One capacity law across carriers", _carriers, st, opt)
    models = _settings_across(ds, "model", within=("modules",))
    for st in models:  # only with 2+ models: otherwise the report is unchanged
        body.append(("h2", f"Across models: {st.label}"))
        say(f"models, {st.label}: exponents shared across models")
        body += _run_section("Exponents shared across models", _models, st, opt)
    counts = _count_cells(ds)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    head: list = [
        ("h1", "lawfit report"),
        (
            "p",
            f"Generated {created} by lawfit; bootstrap {bootstrap} replicates, "
            f"{confidence_level:.0%} intervals, seed {rng}.",
        ),
    ]
    blocks = (
        head
        + _summary(settings, counts, empty)
        + _dataset_section(ds, counts)
        + body
        + _provenance(ds)
    )
    results = {st.label: st.results for st in settings}
    results.update({f"carriers: {st.label}": st.results for st in carriers})
    results.update({f"models: {st.label}": st.results for st in models})
    return Report(blocks=tuple(blocks), results=results)
