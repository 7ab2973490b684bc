"""The result of :func:`lawfit.compare`: forms ranked, with their fits and tests.

:class:`ComparisonResult` holds the ranking table, each form's fit, the likelihood-ratio
and Vuong tests, notes and flags; :data:`SHOWN_COLUMNS` are the table's columns a reader
is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

#: The comparison table's columns a reader is shown (summary, report, analysis/03).
SHOWN_COLUMNS = (
    "form",
    "k",
    "n_obs",
    "delta_aicc",
    "weight_aicc",
    "delta_bic",
    "weight_bic",
    "r2",
    "rmse",
    "extrap_rank_rmse",
    "extrap_length_rmse",
    "loto_rmse",
)


@dataclass(frozen=True)
class ComparisonResult(ResultProtocol):
    """Ranked comparison of scaling forms fitted on the same points.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per form, best first: ``form, k`` (parameters incl. error variance),
        ``n_obs, loglik, aicc, delta_aicc, weight_aicc, bic, delta_bic, weight_bic,
        r2, rmse, extrap_rank_rmse, extrap_length_rmse`` (held-out RMSE of ΔL, nats, at
        the largest rank / length that has cells left after the memorized exclusion,
        from a fit on the smaller values), ``loto_rmse`` (leave one target sequence out:
        RMSE of ΔL on each ``data_seed``'s cells from a fit on the other sequences, pooled;
        the held-out error that respects cells sharing their content; NaN with one
        sequence), ``converged, flags``.
    fits : dict
        Form name → :class:`lawfit.result.FitResult` on all points.
    lr_tests : pandas.DataFrame
        Nested pairs: ``restricted, general, restriction, df, statistic, pvalue,
        valid`` (False where Wilks' theorem does not apply; then pvalue is NaN).
    vuong : pandas.DataFrame
        Non-nested pairs: ``form_1, form_2, z, pvalue, favours`` (None when p ≥ 0.05).
    best : str
        Form with the lowest ``criterion``.
    criterion : str
        ``"aicc"`` or ``"bic"``.
    notes : tuple of str
        Skipped forms and why, pooled dims, assumptions.
    flags : tuple of Flag
        Warnings (codes ``local_optimum``, ``heteroscedastic``).
    heteroscedasticity_pvalue : float or None
        Breusch-Pagan p-value of the best form's residuals against its fitted values
        (None when not computable; :func:`lawfit.space.breusch_pagan_pvalue`); below
        :data:`lawfit.space.HETEROSCEDASTIC_P` in linear space the ``heteroscedastic``
        flag is set and a log-space comparison is advised (the report decides with
        :func:`lawfit.space.choose_space`).
    significance : float
        Level at which a Vuong test names the favoured form.
    """

    table: pd.DataFrame
    fits: dict = field(repr=False)
    lr_tests: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    vuong: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    best: str = ""
    criterion: str = "aicc"
    notes: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    heteroscedasticity_pvalue: float | None = None
    significance: float = 0.05

    _main_table = "table"

    @property
    def heteroscedastic(self) -> bool:
        """True when the ``heteroscedastic`` flag is set (rerun with ``space="log"``)."""
        return any(f.code == "heteroscedastic" for f in self.flags)

    def summary(self) -> SummaryText:
        """Plain-text summary: ranking, tests, notes.

        Returns
        -------
        str
            Multi-line text.
        """
        cols = ["form", "k", "n_obs", "aicc", *SHOWN_COLUMNS[3:]]
        out = [f"Model comparison ({self.criterion}); best: {self.best}", "=" * 40]
        with pd.option_context(
            "display.width", 160, "display.max_columns", 30, "display.float_format", "{:.4g}".format
        ):
            out.append(self.table[[c for c in cols if c in self.table]].to_string(index=False))
            if len(self.lr_tests):
                out += [
                    "",
                    "Likelihood-ratio tests (nested):",
                    self.lr_tests.to_string(index=False),
                ]
            if len(self.vuong):
                out += [
                    "",
                    "Vuong tests (non-nested; z > 0 favours form_1):",
                    self.vuong.to_string(index=False),
                ]
        if self.fits:
            out += ["", "Estimates of each form (the exponents are the form's own):"]
            out += [
                f"  {form}: "
                + ", ".join(f"{k} = {v:.4g}" for k, v in self.fits[form].params.items())
                for form in self.table["form"]
                if form in self.fits
            ]
        out += [f"flag: {f}" for f in self.flags]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))

    def _tables(self):
        return [
            ("ranking", self.table),
            ("likelihood-ratio tests (nested)", self.lr_tests),
            ("Vuong tests (non-nested)", self.vuong),
        ]

    def __str__(self) -> str:
        return str(self.summary())
