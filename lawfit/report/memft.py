"""The MemFT section: savings over SFT, claimed only where the law describes the cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from lawfit.report.settings import RMSE_RATIO_LIMIT, _notes, _Options, _Setting


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


def _gains_text(row: pd.Series) -> str:
    """Say the gains in token accuracy (points) and greedy recall (tokens) of a paired row."""
    text = ""
    for stem, what, scale in (
        ("accuracy_gain", "token accuracy {:+.1f} points", 100),
        ("recalled_gain", "tokens recalled greedily {:+.1f}", 1),
    ):
        if math.isfinite(row.get(f"{stem}_low", math.nan)):
            gain, low, high = (scale * row[c] for c in (stem, f"{stem}_low", f"{stem}_high"))
            text += ", " + what.format(gain) + f" [{low:+.1f}, {high:+.1f}]"
    return text


def _with_paired(claims: list[str] | None, paired: pd.DataFrame) -> list[str] | None:
    """Append to each method's claim its measured ΔL ratio to SFT where targets give an interval.

    Parameters
    ----------
    claims : list of str or None
        One claim per MemFT method, each starting with the method's name.
    paired : pandas.DataFrame
        ``MemftSavings.paired``; per method the (rank, length) with the most target
        sequences is quoted, only where it has an interval (2+ sequences).

    Returns
    -------
    list of str or None
        The claims, extended; None stays None.
    """
    if claims is None or not len(paired):
        return claims
    out = []
    for claim in claims:
        method = claim.split(":", 1)[0]
        rows = paired[(paired["objective"] == method) & paired["low"].notna()]
        if len(rows):
            r = rows.sort_values("sequences", ascending=False, kind="stable").iloc[0]
            claim += (
                f"; measured ΔL {r['ratio']:.3f}× SFT's [{r['low']:.3f}, {r['high']:.3f}]"
                + _gains_text(r)
                + f" on the same {int(r['sequences'])} targets (rank {r['rank']:g}, "
                f"ℓ = {r['length']:g})"
            )
        out.append(claim)
    return out


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
    st.results["memft_claims"] = _with_paired(claims, ms.paired)
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
    if len(ms.paired):
        blocks += [
            (
                "p",
                "MemFT's ΔL over SFT's on the same cells (same rank, length, seeds and target; "
                "unmemorized pairs), no law in between: the geometric-mean ratio, the gain "
                "in token accuracy (share of target tokens that are the first choice) and "
                "in tokens recalled by greedy decoding before the first error (recalled: "
                f"MemFT/SFT per pair), each with a {opt.level:.0%} t interval over target "
                "sequences (none with one sequence):",
            ),
            ("table", ms.paired),
        ]
    return blocks + _notes(ms) + [("note", n) for n in notes]
