"""Sections on what the law predicts: capacity, bits per parameter, the phase transition."""

from __future__ import annotations

import math

import numpy as np

from lawfit.data import LN2, collected_lengths
from lawfit.errors import LawfitError
from lawfit.report.document import _fmt
from lawfit.report.settings import _notes, _Options, _Setting

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
