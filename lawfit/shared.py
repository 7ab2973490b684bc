"""Do groups of cells share the law's exponents? Model families, tasks, memory carriers.

The question of issue 10 (two model families: do SmolLM2 and Gemma obey one law?) and of
issue 15 (do LoRA, memory tokens and a KV memory?) is the same nested-model test:

- the **separate** laws: the form fitted once per group (every parameter its own);
- the **shared** law: one fit over all groups in which the parameters named by ``shared``
  (default the exponents α and β) are common and the others (C, b) stay per group;
- their comparison by AICc, BIC and a likelihood-ratio test (χ² and F forms; the verdict
  uses the F form, which keeps its level with few cells where the χ² form rejects too
  often), with one Gaussian error variance common to all groups on the fit's scale.

:func:`shared_exponents` asks it of any grouping dims of a dataset (``by="model"``);
:func:`lawfit.carrier_law` asks it of the carriers of one setting, against their size.
Both are built from :func:`compare_shared`.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import block_diag

from lawfit import _validate as V
from lawfit.cluster_wald import cluster_wald_test
from lawfit.compare import (
    _heteroscedasticity,
    _quiet_fit,
    akaike_weights,
    likelihood_ratio_test,
    pointwise_loglik,
)
from lawfit.data import GROUP_DIMS, as_frame, load_data
from lawfit.errors import LawfitError
from lawfit.forms import Form, form_from_spec, get_form
from lawfit.protocol import Flag, ResultProtocol, SummaryText
from lawfit.result import FitResult
from lawfit.robust import linearised
from lawfit.space import HETEROSCEDASTIC_P

__all__ = ["SharedExponents", "shared_exponents", "compare_shared"]

#: The verdict's test: under independent cells, and with ``cluster=``.
F_TEST, ROBUST_TEST = "F likelihood-ratio", "cluster-robust Wald (CR2, HTZ)"
#: Column of the group label, and of the group's integer index in the joint fit.
GROUP, GROUP_INDEX = "group", "group_index"


class _PerGroup:
    """A form evaluated per group: shared parameters common, the others one per group."""

    def __init__(self, base: Form, n: int, shared: Sequence[str], names: dict):
        self.base, self.n, self.shared, self.names = base, n, tuple(shared), names

    def to_spec(self) -> dict:
        """JSON-safe recipe (:meth:`Form.to_spec` stores it, so a saved law loads back)."""
        return {
            "base": self.base.to_spec(),
            "n": self.n,
            "shared": list(self.shared),
            "names": {p: list(v) for p, v in self.names.items()},
        }

    @classmethod
    def from_spec(cls, spec: dict) -> _PerGroup:
        """Rebuild from :meth:`to_spec` output."""
        return cls(form_from_spec(spec["base"]), int(spec["n"]), spec["shared"], spec["names"])

    def _kw(self, j, params):
        return {p: params[p if p in self.shared else self.names[p][j]] for p in self.base.params}

    def __call__(self, *inputs, **params):
        *xs, idx = inputs
        out = 0.0
        for j in range(self.n):
            out = np.where(idx == j, self.base.func(*xs, **self._kw(j, params)), out)
        return out

    def jac(self, *inputs, **params):
        *xs, idx = inputs
        cols = {}
        for j in range(self.n):
            mask = idx == j
            for p, d in zip(
                self.base.params, self.base.jac(*xs, **self._kw(j, params)), strict=True
            ):
                name = p if p in self.shared else self.names[p][j]
                cols[name] = np.where(mask, d, cols.get(name, 0.0))
        return [cols[p] for p in self.param_order()]

    def param_order(self) -> tuple[str, ...]:
        """Parameter names: per-group copies grouped by base parameter, shared ones once."""
        return tuple(
            p if p in self.shared else self.names[p][j]
            for p in self.base.params
            for j in (range(1) if p in self.shared else range(self.n))
        )


def shared_form(base: Form, labels: Sequence[str], shared: Sequence[str]) -> Form:
    """One form over every group (extra input ``group_index``) with ``shared`` common.

    Parameters
    ----------
    base : Form
        The law of one group.
    labels : sequence of str
        The groups, in the order of their index (0, 1, ...).
    shared : sequence of str
        Parameters of ``base`` common to all groups.

    Returns
    -------
    Form
        Parameters ``alpha`` (shared) and ``C_<label>`` (per group), and so on.
    """
    tags = [re.sub(r"\W", "_", str(lab)) for lab in labels]
    if len(set(tags)) != len(tags):
        tags = [str(j) for j in range(len(labels))]
    names = {p: [f"{p}_{t}" for t in tags] for p in base.params if p not in shared}
    func = _PerGroup(base, len(labels), shared, names)
    params = func.param_order()
    origin = {q: p for p in base.params for q in ([p] if p in shared else names[p])}
    return Form(
        name=f"{base.name}_shared_{'_'.join(shared)}",
        func=func,
        inputs=(*base.inputs, GROUP_INDEX),
        params=params,
        bounds={q: base.bounds[origin[q]] for q in params},
        linear=tuple(q for q in params if origin[q] in base.linear),
        search={q: base.search[origin[q]] for q in params if origin[q] in base.search},
        jac=func.jac if base.jac is not None else None,
        latex=base.latex,
        text=f"{base.text}, {', '.join(shared)} shared across groups",
        description=f"{base.name} per group with {', '.join(shared)} shared",
    )


class TableResult(ResultProtocol):
    """A result whose main table (``to_dataframe``) is the attribute named by ``_main``."""

    _main = "table"

    def to_dataframe(self) -> pd.DataFrame:
        """Return the main table (a copy).

        Returns
        -------
        pandas.DataFrame
            One row per group (and target, or parameter).
        """
        return getattr(self, self._main).copy()


@dataclass(frozen=True)
class SharedExponents(TableResult):
    """The law per group, the law with shared exponents, and their comparison.

    Attributes
    ----------
    exponents : pandas.DataFrame
        One row per (law, group, parameter): ``estimate``, ``low``, ``high`` (the fit's
        default interval, or the cluster-robust one), ``n_obs``. ``law`` is ``"separate"``
        (one law per group) or ``"shared"`` (group ``"all"`` for a shared parameter).
    differences : pandas.DataFrame
        With ``cluster=``: per pair of groups and shared parameter, ``estimate`` (group_1
        minus group_2), ``se``, ``dof``, ``low``, ``high``, ``pvalue`` (cluster-robust;
        empty without ``cluster``).
    comparison : pandas.DataFrame
        Two rows (``law`` ``separate``, ``shared``): ``k`` (parameters with the common
        error variance), ``n_obs``, ``loglik``, ``aicc``, ``delta_aicc``, ``weight_aicc``,
        ``bic``, ``delta_bic``, ``weight_bic``, and on the shared row the likelihood-ratio
        ``statistic``, ``df`` and χ² ``pvalue`` against the separate laws, and its F form
        ``f_statistic``, ``f_pvalue`` (F(df, n − k_separate + 1)). It treats the cells as
        independent: with cells that share target sequences it rejects too often.
    robust_test : pandas.DataFrame
        With ``cluster=`` and two fitted groups: one row, the cluster-robust Wald test of
        the same restrictions (:func:`lawfit.cluster_wald.cluster_wald_test`):
        ``statistic``, ``q``, ``eta``, ``f_statistic``, ``df1``, ``df2``, ``pvalue``,
        ``n_clusters``, ``cluster`` and ``reason`` (why it could not run, e.g. fewer
        clusters than restrictions + 1; then NaN). Empty without ``cluster``.
    fits : dict
        Group label → :class:`~lawfit.FitResult` of its own law.
    shared_fit : FitResult or None
        The law with shared parameters (None with fewer than two fitted groups).
    by : tuple of str
        The grouping dims (the group label joins their values with ``/``).
    shared : tuple of str
        The parameters held common in the shared law.
    significance : float
        Level of the likelihood-ratio test.
    verdict : str
        ``"shared"`` (the verdict's test does not reject shared exponents at
        ``significance``), ``"separate"``, or ``""`` when not tested.
    verdict_test : str
        The test behind the verdict: the cluster-robust Wald test when it ran, else the
        F likelihood-ratio test (``""`` when not tested).
    notes, flags
        Context and warnings (``group_skipped``, ``exponents_differ``, ``local_optimum``,
        ``heteroscedastic``: refit with ``space="log"``).
    """

    _main = "exponents"
    _noun = "group"

    exponents: pd.DataFrame
    comparison: pd.DataFrame
    fits: dict = field(repr=False)
    differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    robust_test: pd.DataFrame = field(default_factory=pd.DataFrame)
    shared_fit: FitResult | None = field(repr=False, default=None)
    by: tuple[str, ...] = ()
    shared: tuple[str, ...] = ("alpha", "beta")
    significance: float = 0.05
    verdict: str = ""
    verdict_test: str = ""
    notes: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()

    @property
    def pvalue(self) -> float:
        """p-value of the verdict's test of shared exponents (NaN when not run).

        The cluster-robust Wald test's when it ran (``cluster=``), else the F
        likelihood-ratio test's.
        """
        if self.verdict_test == ROBUST_TEST and len(self.robust_test):
            return float(self.robust_test["pvalue"].iloc[0])
        if "f_pvalue" not in self.comparison or not len(self.comparison):
            return math.nan
        return float(self.comparison["f_pvalue"].iloc[-1])

    def _tables(self):
        tables = [(f"parameters per {self._noun}", self.exponents)]
        if len(self.differences):
            tables.append((f"differences between {self._noun}s", self.differences))
        tables.append(("shared vs separate exponents", self.comparison))
        if len(self.robust_test):
            tables.append(("cluster-robust test of shared exponents", self.robust_test))
        return tables

    def _title(self) -> str:
        return f"Shared exponents across {' × '.join(self.by) or 'groups'}"

    def summary(self) -> SummaryText:
        """Plain-text summary: parameters per group, the comparison and the verdict.

        Returns
        -------
        SummaryText
            Text, with HTML and LaTeX renderings.
        """
        title = self._title()
        out = [title, "=" * len(title)]
        with pd.option_context(
            "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format
        ):
            out.append(self.exponents.to_string(index=False))
            if len(self.differences):
                out += [
                    "",
                    f"differences between {self._noun}s:",
                    self.differences.to_string(index=False),
                ]
            if len(self.comparison):
                out += ["", self.comparison.to_string(index=False)]
            if len(self.robust_test):
                out += ["", self.robust_test.to_string(index=False)]
        if self.verdict:
            out.append(
                f"verdict ({self.verdict_test or F_TEST} test at {self.significance:g}): "
                f"{self.verdict} exponents"
            )
        out += [f"flag: {f}" for f in self.flags] + [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def shared_exponents(
    data,
    by: str | Sequence[str] = "model",
    *,
    form: str | Form = "power_law",
    shared: Sequence[str] = ("alpha", "beta"),
    exclude: str | float | None = "memorized",
    space: str = "auto",
    bootstrap: int = 0,
    unit: str = "cell",
    confidence_level: float = 0.95,
    significance: float = 0.05,
    rng: int | np.random.Generator | None = None,
    cluster: str | None = None,
) -> SharedExponents:
    """Fit the law per group and test whether the groups share its exponents.

    Parameters
    ----------
    data : xarray.Dataset, pandas.DataFrame or path
        Cells of the data contract whose grouping dims other than ``by`` have one value
        (select them first, e.g. ``ds.sel(task="long_context")``).
    by : str or sequence of str
        Grouping dims whose values are the groups (default ``"model"``: model families).
    form : str or Form
        The law (default the paper's power law C·r^α·ℓ^(−β) + b). Its capacity input is
        read per group, so model families whose adapters differ in parameters per rank
        still compare exponents: the constant factor goes into each group's own C.
    shared : sequence of str
        Parameters common to all groups in the restricted law (default the exponents);
        the others are fitted per group.
    exclude : {"memorized"} or float or None
        Passed to :func:`lawfit.fit`; it depends on the data only, so every law sees the
        same cells.
    space : {"auto", "linear", "log"}
        Fit ΔL or log ΔL. The test assumes one error variance on that scale: with
        multiplicative noise fit in ``"log"``, or the test rejects too often (flagged).
        ``"auto"`` (default) chooses one scale for every law by :func:`lawfit.fit`'s rule
        (:func:`lawfit.space.choose_space`) applied to the shared law, and notes it.
    bootstrap : int
        Bootstrap replicates of every law (intervals of ``exponents``).
    unit : str
        Resampling unit of the bootstrap, as in :func:`lawfit.fit`.
    confidence_level : float
        Level of the intervals.
    significance : float
        Level of the likelihood-ratio test.
    rng : int or numpy.random.Generator, optional
        Seed of the bootstrap.
    cluster : str, optional
        Give the intervals as cluster-robust ones over this column (``"data_seed"``:
        target sequences; CR2 with Bell-McCaffrey dof, :mod:`lawfit.robust`), and decide
        the verdict by the cluster-robust Wald test (:mod:`lawfit.cluster_wald`) when the
        data hold more clusters than restrictions; the F test treats cells as independent.

    Returns
    -------
    SharedExponents
        Parameters per group, the shared law, and their comparison.

    Raises
    ------
    LawfitError
        Bad options, fewer than two groups in the data, or no group whose law can be
        fitted.

    Examples
    --------
    >>> from lawfit.testing import synthetic_dataset
    >>> import xarray as xr
    >>> a = synthetic_dataset(alpha=0.6, beta=0.5, noise=0.01, rng=0)
    >>> b = synthetic_dataset(alpha=0.6, beta=0.5, C=0.2, noise=0.01, rng=1)
    >>> ds = xr.concat([a.expand_dims(model=["a"]), b.expand_dims(model=["b"])], "model")
    >>> shared_exponents(ds, by="model").verdict
    'shared'
    """
    base, shared, significance = _check_options(form, shared, significance, space)
    by = (by,) if isinstance(by, str) else tuple(by)
    if not by:
        raise LawfitError("by must name at least one grouping dim (e.g. 'model'); got none.")
    frame = _group_frame(load_data(data), by, base)
    kw = fit_options(exclude, space, bootstrap, unit, confidence_level, rng)
    out = compare_shared(
        frame,
        base,
        shared=shared,
        kw=kw,
        significance=significance,
        cluster=cluster,
        drop=by,
    )
    return SharedExponents(by=by, shared=shared, significance=significance, **out)


def fit_options(exclude, space, bootstrap, unit, confidence_level, rng) -> dict:
    """Return the :func:`lawfit.fit` options every law of a comparison is fitted with."""
    return dict(
        exclude=exclude,
        space=space,
        bootstrap=bootstrap,
        unit=unit,
        confidence_level=confidence_level,
        rng=V.random_generator(rng),
        profile=False,
    )


def _check_options(
    form, shared, significance, space="linear"
) -> tuple[Form, tuple[str, ...], float]:
    """Validate the form, the shared parameters, the fit scale and the test's level."""
    if space not in ("auto", "linear", "log"):
        raise LawfitError(
            f"space must be 'auto', 'linear' or 'log' (one scale for every law the test "
            f"compares); got {space!r}. With multiplicative noise use 'log'."
        )
    significance = V.significance_level(significance)
    base = get_form(form)
    shared = tuple(shared)
    bad = [p for p in shared if p not in base.params]
    if not shared or bad or len(set(shared)) == len(base.params):
        raise LawfitError(
            f"shared must name some, not all, of the form's parameters {base.params}; got {shared}."
        )
    return base, shared, significance


def _group_frame(data, by: tuple[str, ...], base: Form) -> pd.DataFrame:
    """Usable cells with a ``group`` label from the values of ``by``; 2+ groups required.

    Another grouping dim may vary with the groups, one value per group: two model families
    with their adapters at different layers (``mlp_block@20`` and ``mlp_block@12``).
    """
    extra = [d for d in _varying_dims(data) if d not in by]
    frame, _ = as_frame(data, variables=("loss_reduction",), by=[*by, *extra], inputs=base.inputs)
    labels = frame[list(by)].astype(str).agg("/".join, axis=1)
    mixed = [d for d in extra if frame.groupby(labels)[d].nunique().max() > 1]
    if mixed:
        raise LawfitError(
            f"within a group of {list(by)} the cells differ in {mixed}; one law per group "
            f"needs one setting each. Select one first, e.g. ds.sel({mixed[0]}=...), or add "
            f"{mixed[0]!r} to by."
        )
    if labels.nunique() < 2:
        raise LawfitError(
            f"a test of shared exponents needs 2+ groups; the data's usable cells have "
            f"{sorted(labels.unique())} over {list(by)}. Add the other group's cells "
            "(e.g. xr.concat of two models' datasets along 'model') or group by another dim."
        )
    return frame.drop(columns=extra).assign(**{GROUP: labels.to_numpy()})


def _varying_dims(data) -> list[str]:
    """Return the grouping dims (model, task, ..., modules) with 2+ values in the data."""
    if isinstance(data, pd.DataFrame):
        return [d for d in GROUP_DIMS if d in data.columns and data[d].nunique() > 1]
    return [d for d in GROUP_DIMS if d in data.dims and data.sizes[d] > 1]


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


def _differences(fits: dict, shared: Sequence[str], cluster: str, level: float) -> pd.DataFrame:
    """Cluster-robust difference of each shared parameter between every pair of groups."""
    ci = {
        g: f.conf_int("cluster", cluster=cluster, confidence_level=level) for g, f in fits.items()
    }
    rows = []
    for a, b in itertools.combinations(sorted(fits), 2):
        for p in shared:
            sa, sb = ci[a].loc[p, "se"], ci[b].loc[p, "se"]
            va, vb = sa**2, sb**2
            se = math.sqrt(va + vb)
            dof = (va + vb) ** 2 / (va**2 / ci[a].loc[p, "dof"] + vb**2 / ci[b].loc[p, "dof"])
            est = fits[a].params[p] - fits[b].params[p]
            half = stats.t.ppf(0.5 + level / 2, dof) * se
            rows.append(
                {
                    "group_1": a,
                    "group_2": b,
                    "parameter": p,
                    "estimate": est,
                    "se": se,
                    "dof": dof,
                    "low": est - half,
                    "high": est + half,
                    "pvalue": float(2 * stats.t.sf(abs(est) / se, dof)),
                }
            )
    return pd.DataFrame(rows)


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


def _robust_test(fits: dict, shared: Sequence[str], cluster: str) -> pd.DataFrame:
    """Test with the CR2 covariance that every group has the first group's ``shared``.

    The separate laws are one model with a block-diagonal Jacobian (each group its own
    parameters); clusters (target sequences) cut across the groups, so the CR2 covariance
    sees that cells of one sequence err together under every group's law.
    """
    labels = sorted(fits)
    parts = [linearised(fits[g]) for g in labels]
    J = block_diag(*[j for j, _ in parts])
    e = np.concatenate([r for _, r in parts])
    values = np.concatenate([fits[g].points[cluster].to_numpy() for g in labels])
    groups = np.unique(values, return_inverse=True)[1].ravel()
    names = [(g, p) for g in labels for p in fits[g].param_names]
    C = np.zeros((len(shared) * (len(labels) - 1), len(names)))
    for row, (p, g) in enumerate(itertools.product(shared, labels[1:])):
        C[row, names.index((g, p))], C[row, names.index((labels[0], p))] = 1.0, -1.0
    theta = np.concatenate([fits[g].theta for g in labels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a confined cluster: said per fit
        test = cluster_wald_test(J, e, groups, theta, C)
    if test.reason and len(labels) > 2:
        pair = len(shared) + 1
        test = test._replace(reason=f"{test.reason} (two groups at a time need {pair})")
    return pd.DataFrame([{**test._asdict(), "cluster": cluster}])


def _usable_cluster(fits: dict, cluster: str | None, noun: str, notes: list) -> str | None:
    """``cluster`` when every fitted group spans 2+ of its values, else None (noted)."""
    if not cluster:
        seqs = {v for f in fits.values() if "data_seed" in f.points for v in f.points["data_seed"]}
        if len(seqs) > 1:
            notes.append(
                f"the cells come from {len(seqs)} target sequences (data_seed), and the F "
                "test treats them as independent, which rejects shared exponents too often "
                "when sequences differ; pass cluster='data_seed' (--cluster data_seed) for "
                "cluster-robust intervals and a cluster-robust test"
            )
        return None
    single = sorted(
        g for g, f in fits.items() if cluster in f.points and f.points[cluster].nunique() < 2
    )
    if not single:
        return cluster
    notes.append(
        f"cluster-robust intervals and test skipped: {noun}(s) {single} have all their "
        f"cells on one {cluster}; the intervals are the fits' own, and the F test treats "
        "cells as independent (its p-value may be much too small)"
    )
    return None


def _robust_note(row: pd.Series, comparison: pd.DataFrame, cluster: str) -> str:
    """Say what the cluster-robust test found, beside the F test's independent-cell p."""
    f_p = comparison["f_pvalue"].iloc[-1] if len(comparison) else math.nan
    if row["reason"]:
        return (
            f"cluster-robust Wald test over {cluster} not run: {row['reason']}; the F test "
            f"(p = {f_p:.3g}) treats cells of one {cluster} as independent, so its p-value "
            "may be much too small"
        )
    return (
        f"cluster-robust Wald test over {cluster} (CR2, HTZ F reference; Pustejovsky & "
        f"Tipton 2018): F({row['df1']:.0f}, {row['df2']:.2f}) = {row['f_statistic']:.3g}, "
        f"p = {row['pvalue']:.3g} over {row['n_clusters']} clusters (the verdict's test); "
        f"the F likelihood-ratio test, which treats the cells as independent, gives "
        f"p = {f_p:.3g}"
    )


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


def _information_criteria(loglik: float, k: int, n: int) -> dict:
    """AICc and BIC of a Gaussian model with ``k`` parameters (error variance included)."""
    aicc = -2 * loglik + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    return {
        "k": k,
        "n_obs": n,
        "loglik": loglik,
        "aicc": aicc,
        "bic": -2 * loglik + k * math.log(n),
    }


def _loglik(points: pd.DataFrame, space: str) -> float:
    """Gaussian log-likelihood of fitted points with one error variance for all of them."""
    resid, y = points["residual"].to_numpy(float), points["loss_reduction"].to_numpy(float)
    return float(pointwise_loglik(resid, y, space).sum())


def _comparison(fits, shared_fit, labels, space, notes, flags, noun) -> pd.DataFrame:
    """Separate laws (common error variance) against the shared-exponent law."""
    points = pd.concat([fits[c].points for c in labels], ignore_index=True)
    resid = points["residual"].to_numpy(float)
    n = resid.size
    if n != shared_fit.n_obs:
        notes.append(
            f"the shared law saw {shared_fit.n_obs} cells, the separate laws {n}: "
            "comparison skipped"
        )
        return pd.DataFrame()
    k_sep = sum(len(fits[c].param_names) for c in labels) + 1
    k_sh = len(shared_fit.param_names) + 1
    ll_sep, ll_sh = _loglik(points, space), _loglik(shared_fit.points, space)
    rows = [
        {"law": "separate", **_information_criteria(ll_sep, k_sep, n)},
        {"law": "shared", **_information_criteria(ll_sh, k_sh, n)},
    ]
    df = k_sep - k_sh
    stat, p = likelihood_ratio_test(ll_sh, ll_sep, df)
    sse_sep = float(np.sum(resid**2))
    sse_sh = float(np.sum(shared_fit.points["residual"].to_numpy(float) ** 2))
    f_stat = max(sse_sh - sse_sep, 0.0) / df / (sse_sep / (n - k_sep + 1))
    rows[1].update(
        statistic=stat,
        df=df,
        pvalue=p,
        f_statistic=f_stat,
        f_pvalue=float(stats.f.sf(f_stat, df, n - k_sep + 1)),
    )
    flags += _fit_flags(shared_fit, space, ll_sep, ll_sh)
    table = pd.DataFrame(rows)
    for c in ("aicc", "bic"):
        table[f"delta_{c}"] = table[c] - table[c].min()
        table[f"weight_{c}"] = akaike_weights(table[c])
    notes.append(
        f"likelihoods are Gaussian with one error variance common to all {noun}s; "
        "the likelihood-ratio test is read in its F form (exact for a linear model, "
        "close to its level with few cells where the χ² form rejects too often); both "
        "forms assume independent cells and no parameter at a bound"
    )
    return table


def _fit_flags(shared_fit, space, ll_sep, ll_sh) -> list[Flag]:
    """Warnings on the comparison: a heteroscedastic linear fit, a separate local optimum."""
    flags = []
    het = _heteroscedasticity(shared_fit.points)
    if space == "linear" and het is not None and het < HETEROSCEDASTIC_P:
        flags.append(
            Flag(
                "heteroscedastic",
                f"the residual spread grows with the fitted ΔL "
                f"(Breusch-Pagan p = {het:.2g}): the one-variance likelihood is wrong "
                "and the test rejects shared exponents too often; rerun with "
                "space='log'",
            )
        )
    if ll_sep < ll_sh - 1e-6:
        flags.append(
            Flag(
                "local_optimum",
                "the separate laws fit worse than the shared law, "
                "their restriction: a separate fit stopped at a local optimum",
            )
        )
    return flags


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
