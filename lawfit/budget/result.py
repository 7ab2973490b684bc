""":class:`BudgetSensitivity`: the law refitted at several step budgets, and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag


@dataclass(frozen=True)
class BudgetSensitivity(ResultProtocol):
    """The law refitted at several step budgets, plus the per-cell convergence table.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per budget: ``budget``, ``n_obs``, ``n_excluded`` (collected cells left
        out, e.g. memorized; grid points without a cell are not counted), ``n_truncated``
        (cells trained past that budget), ``r2`` and, per parameter, the estimate and
        its interval (``alpha``, ``alpha_low``, ``alpha_high``, ...).
    convergence : pandas.DataFrame
        :func:`convergence` at the full budget.
    fits : dict
        The :class:`~lawfit.FitResult` per budget.
    drift : dict
        Per parameter, the change between the last two budgets relative to the final
        interval's half-width (> 1 means the estimate still moves by more than its
        uncertainty).
    notes : list of str
        Plain-language findings.
    flags : tuple of Flag
        Warnings (none set yet; the field completes the common result interface).
    """

    table: pd.DataFrame
    convergence: pd.DataFrame
    fits: dict
    drift: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    flags: tuple[Flag, ...] = ()

    _main_table = "table"

    def _tables(self):
        return [("law per step budget", self.table), ("convergence per cell", self.convergence)]

    def summary(self) -> SummaryText:
        """Return the findings as text.

        Returns
        -------
        str
            Convergence counts, the per-budget table and the notes.
        """
        conv = self.convergence
        counts = conv["stop_reason"].value_counts().to_dict() if len(conv) else {}
        lines = [
            f"Stop reasons over {len(conv)} ok cells: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            f"Still improving at the budget (ΔL gain > {conv.attrs.get('tol', 0):.0%} over "
            f"the {conv.attrs.get('window_text', 'window')}): "
            f"{int(conv['still_improving'].sum())}",
            "",
            self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        ]
        lines += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(lines))
