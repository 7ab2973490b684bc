"""Sections on the law: which form, the law with its intervals, the step budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from lawfit import space as _space
from lawfit._tokens import CELL_DIMS
from lawfit.bootstrap import MIN_BOOTSTRAP_CLUSTERS
from lawfit.data import target_cluster
from lawfit.errors import LawfitError
from lawfit.report.settings import (
    _notes,
    _Options,
    _rank_context,
    _require_law_data,
    _Setting,
)


def _model_selection(st: _Setting, opt: _Options) -> list:
    from lawfit.compare import compare

    sft = _require_law_data(st)
    try:
        cmp = compare(sft, cluster=target_cluster(sft))
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
    blocks += _nested_test_blocks(cmp)
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


def _nested_test_blocks(cmp) -> list:
    """Return the likelihood-ratio tests of nested pairs with their cluster-robust versions."""
    if not len(cmp.lr_tests):
        return []
    lead = "Likelihood-ratio tests of nested pairs"
    if "robust_pvalue" in cmp.lr_tests:
        lead += (
            " (pvalue treats the cells as independent; robust_pvalue tests the same "
            "restriction on the general form with the cluster-robust covariance over the "
            "target sequences, CR2 Wald with the HTZ F reference, which holds its level "
            "when the cells of a sequence err together)"
        )
    return [("p", f"{lead}:"), ("table", cmp.lr_tests)]


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
        out["result"] = compare(sft, space="log", cluster=target_cluster(sft))
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
