"""The core of both tests, :func:`compare_shared`: the laws per group, the shared law, the verdict.

It fits each group's law and the shared law on one scale, compares them
(:mod:`~lawfit.shared.likelihood_ratio`), adds the cluster-robust intervals, differences
and test (:mod:`~lawfit.shared.cluster_robust`) with ``cluster=``, decides the verdict and
builds the table of every law's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lawfit.compare import _quiet_fit
from lawfit.errors import LawfitError
from lawfit.forms import Form
from lawfit.protocol import Flag
from lawfit.result import FitResult
from lawfit.shared.cluster_robust import (
    _differences,
    _robust_note,
    _robust_test,
    _usable_cluster,
)
from lawfit.shared.joint_form import GROUP, GROUP_INDEX, shared_form
from lawfit.shared.likelihood_ratio import _comparison
from lawfit.shared.result import F_TEST, ROBUST_TEST


def compare_shared(
    frame: pd.DataFrame,
    form: Form,
    *,
    shared: tuple[str, ...],
    kw: dict,
    significance: float,
    cluster: str | None = None,
    drop: Sequence[str] = (),
    noun: str = "group",
) -> dict:
    """Fit per group and with ``shared`` common, and compare: the core of both tests.

    Parameters
    ----------
    frame : pandas.DataFrame
        Usable cells with a ``group`` column and the form's inputs.
    form : Form
        The law of one group.
    shared : tuple of str
        Parameters common to all groups in the restricted law.
    kw : dict
        Options of :func:`lawfit.fit` (exclusion, space, bootstrap, ...).
    significance : float
        Level of the F test.
    cluster : str, optional
        Column of the cluster-robust intervals.
    drop : sequence of str
        Columns that tell the groups apart and so are not inputs of a fit.
    noun : str
        What a group is, in notes and flag codes (``"carrier"``: ``carrier_skipped``).

    Returns
    -------
    dict
        ``exponents``, ``comparison``, ``fits``, ``shared_fit``, ``verdict``, ``notes``
        and ``flags``: the fields of :class:`SharedExponents`.
    """
    notes: list[str] = []
    drop = [GROUP, *drop]
    kw = _one_space(frame, form, shared, kw, drop, notes)
    fits, flags = _fit_each_group(frame, form, kw, notes, drop, noun)
    shared_fit, comparison = None, pd.DataFrame()
    if len(fits) >= 2:
        labels = sorted(fits)
        joint = _joint_frame(frame, labels, drop)
        shared_fit = _quiet_fit(joint, shared_form(form, labels, shared), **kw)
        comparison = _comparison(fits, shared_fit, labels, kw["space"], notes, flags, noun)
    else:
        notes.append(f"{len(fits)} {noun}(s) with a fitted law: shared exponents not tested")
    differences, robust = pd.DataFrame(), pd.DataFrame()
    cluster = _usable_cluster(fits, cluster, noun, notes)
    if cluster:
        notes.append(f"intervals: cluster-robust over {cluster} (CR2, Bell-McCaffrey dof)")
        differences = _differences(fits, shared, cluster, kw["confidence_level"])
        notes.append(
            f"differences: each pair of {noun}s' estimates with the CR2 standard errors "
            "combined as independent (Welch-Satterthwaite dof); groups that share target "
            "sequences have positively correlated errors, which makes them conservative"
        )
        if len(fits) >= 2:
            robust = _robust_test(fits, shared, cluster)
    verdict, verdict_test = _verdict(comparison, robust, significance, shared, flags, noun)
    if len(robust) and (verdict != "separate" or not robust["reason"].iloc[0]):
        notes.append(_robust_note(robust.iloc[0], comparison, cluster))
    return dict(
        exponents=_parameter_table(fits, shared_fit, cluster),
        differences=differences,
        comparison=comparison,
        robust_test=robust,
        fits=fits,
        shared_fit=shared_fit,
        verdict=verdict,
        verdict_test=verdict_test,
        notes=tuple(notes),
        flags=tuple(flags),
    )


def _joint_frame(frame: pd.DataFrame, labels: Sequence[str], drop) -> pd.DataFrame:
    """Return the cells of ``labels`` with each one's group index (the shared law's input)."""
    joint = frame[frame[GROUP].isin(labels)]
    index = joint[GROUP].map({c: j for j, c in enumerate(labels)})
    return _fit_columns(joint.assign(**{GROUP_INDEX: index}), drop)


def _one_space(frame, form, shared, kw, drop, notes) -> dict:
    """Resolve ``space="auto"`` once for every law: lawfit.fit's rule on the shared law."""
    if kw["space"] != "auto":
        return kw
    labels = sorted(frame[GROUP].unique())
    try:
        probe = _quiet_fit(
            _joint_frame(frame, labels, drop),
            shared_form(form, labels, shared),
            **{**kw, "bootstrap": 0},
        )
    except LawfitError as exc:
        notes.append(
            f"space: linear (the shared law over all groups could not be fitted to "
            f"choose it: {exc})"
        )
        return {**kw, "space": "linear"}
    reason = (probe.meta.get("space_choice") or {}).get("reason", "")
    notes.append(
        f"space: {probe.space}, chosen on the shared law (lawfit.space.choose_space"
        + (f": {reason})" if reason else ")")
    )
    return {**kw, "space": probe.space}


def _verdict(comparison, robust, significance, shared, flags, noun) -> tuple[str, str]:
    """Return the verdict and its test: cluster-robust when it ran, else the F test.

    ``"shared"`` or ``"separate"`` (flagged when separate); ``""`` untested.
    """
    ran = len(robust) and not robust["reason"].iloc[0]
    if ran:
        p, test = float(robust["pvalue"].iloc[0]), ROBUST_TEST
    elif len(comparison):
        p, test = float(comparison["f_pvalue"].iloc[-1]), F_TEST
    else:
        return "", ""
    if p >= significance:
        return "shared", test
    caveat = ""
    if len(robust) and not ran:
        caveat = (
            f"; this F test treats cells of one {robust['cluster'].iloc[0]} as independent "
            f"and the cluster-robust test could not run ({robust['reason'].iloc[0]}), so "
            "p may be much too small"
        )
    flags.append(
        Flag(
            "exponents_differ",
            f"the {noun}s do not share {list(shared)}: {test} p = {p:.3g} < "
            f"{significance:g}; compare {noun}s by their own laws{caveat}",
        )
    )
    return "separate", test


def _fit_columns(frame: pd.DataFrame, drop: Sequence[str]) -> pd.DataFrame:
    """Return the frame lawfit.fit reads: without the columns that tell groups apart."""
    return frame.drop(columns=[c for c in drop if c in frame.columns]).reset_index(drop=True)


def _fit_each_group(frame, form, kw, notes, drop, noun) -> tuple[dict, list[Flag]]:
    """One law per group; groups whose law cannot be fitted are skipped with a note."""
    fits, flags = {}, []
    for label, sub in frame.groupby(GROUP, sort=True):
        try:
            fits[label] = _quiet_fit(_fit_columns(sub, drop), form, **kw)
        except LawfitError as exc:
            notes.append(f"{noun} {label}: no law fitted ({exc})")
            flags.append(
                Flag(
                    f"{noun}_skipped",
                    f"{noun} {label} has too few usable cells "
                    "for its own law; it is left out of the comparison",
                )
            )
    if not fits:
        raise LawfitError(
            f"no {noun} has enough usable cells for a law (each needs 2+ sizes, "
            "2+ lengths and more distinct (size, length) points than parameters after "
            "the memorized exclusion); see the notes: " + "; ".join(notes)
        )
    return fits, flags


def _parameter_rows(law: str, fit: FitResult, names: dict, cluster: str | None) -> list[dict]:
    """Rows of one law's parameters; ``names`` maps a parameter to (base name, group)."""
    ci = fit.conf_int("cluster", cluster=cluster) if cluster else fit.conf_int()
    return [
        {
            "law": law,
            GROUP: names[q][1],
            "parameter": names[q][0],
            "estimate": fit.params[q],
            "low": ci.loc[q, "low"],
            "high": ci.loc[q, "high"],
            "n_obs": fit.n_obs,
        }
        for q in fit.param_names
    ]


def _parameter_table(fits, shared_fit, cluster: str | None = None) -> pd.DataFrame:
    """Estimates and intervals of every law's parameters, in base-parameter names."""
    rows = []
    for label, f in fits.items():
        rows += _parameter_rows("separate", f, {p: (p, label) for p in f.param_names}, cluster)
    if shared_fit is not None:
        labels = sorted(fits)
        names = {q: (q, "all") for q in shared_fit.param_names}
        names.update(
            {
                q: (p, labels[j])
                for p, qs in shared_fit.form.func.names.items()
                for j, q in enumerate(qs)
            }
        )
        rows += _parameter_rows("shared", shared_fit, names, cluster)
    return pd.DataFrame(rows)
