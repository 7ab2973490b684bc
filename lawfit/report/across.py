"""Parts across settings: one capacity law across carriers, exponents across models."""

from __future__ import annotations

import itertools

import xarray as xr

from lawfit._tokens import GROUP_DIMS
from lawfit.data import target_cluster
from lawfit.errors import LawfitError
from lawfit.report.settings import (
    _has_ok_cells,
    _notes,
    _Options,
    _Setting,
    _sft,
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

    res = shared_exponents(
        st.sft, by="model", confidence_level=opt.level, cluster=target_cluster(st.sft)
    )
    st.results["shared_exponents"] = res
    blocks = _shared_blocks(res, "law", "Exponents shared across models")
    return blocks + _transfers(st, opt)


def _transfers(st: _Setting, opt: _Options) -> list:
    """Report the law of the model with the most fitted cells, carried to the lawless ones.

    The scale C is refitted on the other model's cells (:func:`lawfit.transfer_law`), and
    each of them is predicted from the rest (:func:`lawfit.transfer.transfer_check`): the
    check that needs no law of the other model's own, so it speaks from its second cell on.
    Only models too small for a law of their own get it: where every model has one, the
    shared-exponent test compares them.
    """
    from lawfit.transfer import carry_across_models, transfer_check

    carried = carry_across_models(st.sft)
    if not carried.lawless or carried.source is None:  # all have laws (the test above), or none
        return []
    source, cluster = carried.source, carried.cluster
    blocks: list = [("h3", f"The law of {source} carried to models without a law of their own")]
    blocks += [("note", f"{m}: not carried ({why})") for m, why in carried.refused.items()]
    for m, law in carried.laws.items():
        st.results[f"transfer to {m}"] = law
        blocks += [
            (
                "p",
                f"{m}: {source}'s exponents and offset kept, its scale refitted on "
                f"{len(law.anchors)} unmemorized cell(s) of {m} (lawfit.transfer_law; the "
                f"scatter between and within {cluster} values carried over too).",
            ),
            ("table", law.parameters),
        ]
        check = transfer_check(carried.fit, st.sft.sel(model=[m]), cluster=cluster, level=opt.level)
        blocks += _check_blocks(m, check, opt.level)
    return blocks


def _check_blocks(model: str, check, level: float) -> list:
    """Return the leave-one-out table of a carried law and its count, or why there is none."""
    if not len(check):
        why = "one unmemorized cell, none left to check the carried law on"
        return [("note", f"{model}: {why}")]
    inside = int(check["inside"].sum())
    return [
        ("table", check),
        (
            "p",
            f"Each of {model}'s cells predicted from its others: {inside} of {len(check)} "
            f"inside their {level:.0%} prediction intervals (the folds share their anchors: "
            "not independent tests).",
        ),
    ]


def _shared_blocks(res, law_col: str, what: str) -> list:
    """Blocks of a shared-exponent test: α and β per group, differences, test, notes.

    ``law_col`` names the separate/shared column (``"model"`` in a ``CarrierLaw``).
    """
    blocks: list = [("table", res.exponents[res.exponents["parameter"].isin(("alpha", "beta"))])]
    if len(res.differences):
        blocks.append(("table", res.differences))
    if len(res.comparison):
        cols = [law_col, "k", "n_obs", "aicc", "weight_aicc", "f_statistic", "f_pvalue"]
        blocks.append(("table", res.comparison[cols]))
        if len(res.robust_test):
            blocks.append(("table", res.robust_test))
        blocks += [
            (
                "p",
                f"{what}, {res.verdict_test or 'F likelihood-ratio'} test at "
                f"{res.significance:g}: {res.verdict}.",
            ),
        ]
    return blocks + _notes(res)


def _carriers(st: _Setting, opt: _Options) -> list:
    """Report the law per carrier, the shared-exponent test and bits per parameter and byte."""
    from lawfit.carriers import carrier_bits, carrier_law

    law = carrier_law(
        st.sft,
        bootstrap=opt.bootstrap,
        confidence_level=opt.level,
        rng=opt.rng,
        cluster=target_cluster(st.sft),
    )
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
