"""The result of a test of shared exponents, :class:`SharedExponents`, and its rendering.

:class:`TableResult` is the base it shares with :mod:`lawfit.carriers`' results: one main
table, named by ``_main``. ``F_TEST`` and ``ROBUST_TEST`` name the verdict's test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from lawfit.protocol import Flag, ResultProtocol, SummaryText
from lawfit.result import FitResult

#: The verdict's test: under independent cells, and with ``cluster=``.
F_TEST, ROBUST_TEST = "F likelihood-ratio", "cluster-robust Wald (CR2, HTZ)"


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
