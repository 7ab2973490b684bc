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

import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime

import xarray as xr

from lawfit import _validate as V
from lawfit._tokens import load
from lawfit.errors import LawfitError
from lawfit.report.across import _carrier_settings, _carriers, _models, _settings_across
from lawfit.report.capacity import _bits, _capacity, _transition
from lawfit.report.document import Report, report_format
from lawfit.report.law import _budget, _law, _model_selection
from lawfit.report.memft import _memft
from lawfit.report.overview import _count_cells, _dataset_section, _summary
from lawfit.report.settings import _Options, _Setting, _sft, _split_settings

__all__ = ["SECTIONS", "Report", "build_report", "report_format"]

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
        + _summary(settings, counts, empty, combined="combined_from" in ds.attrs)
        + _dataset_section(ds, counts)
        + body
        + _provenance(ds)
    )
    results = {st.label: st.results for st in settings}
    results.update({f"carriers: {st.label}": st.results for st in carriers})
    results.update({f"models: {st.label}": st.results for st in models})
    return Report(blocks=tuple(blocks), results=results)
