"""The lack-of-fit test: does the law miss its points by more than their replicates scatter.

A fitted law can have a high R² and still miss: its residuals mix two things, how far the
law is from the mean ΔL at each design point (lack of fit) and how far replicate cells at
one point lie from each other (pure error: other target sequences, other initialisations).
Where some design points hold several cells, the residual sum of squares splits exactly
into the two, and their mean squares compare as an F statistic (the classical lack-of-fit
test: Draper & Smith, *Applied Regression Analysis*, 3rd ed., 1998; for nonlinear models,
where the F distribution is an approximation, Bates & Watts, *Nonlinear Regression
Analysis and Its Applications*, 1988):

    SSE = Σ e² = SS_pure + SS_lack,   SS_pure = Σ_g Σ_i (e_i − ē_g)²,   SS_lack = Σ_g n_g ē_g²,
    F = (SS_lack / (m − k)) / (SS_pure / (n − m)),

with n fitted cells at m distinct design points (cells sharing every input of the form),
ē_g the mean residual at point g and k fitted parameters. Under the law (and the fit's own
noise model: constant variance in its fitting space) F follows F(m − k, n − m); a small
p-value says that the law's form, not noise, makes the residuals. Unlike the comparison of
forms by AICc, the test needs no alternative form, and unlike R² it does not reward a
form for fitting noise.

What counts as a replicate sets what the test asks. By default cells at one point may differ
in target sequence and initialisation, so the pure error is the scatter over content and
the test asks whether the law describes the average over sequences. With
``within=("data_seed",)`` replicates must share their sequence: the pure error is the
optimiser's scatter alone, and the test asks whether each sequence's cells follow the law to
within it, the only question a form that reads ``loss_before`` (which differs between
sequences) can be asked; forms compare like with like only on the same footing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from lawfit import _validate as V
from lawfit.errors import LawfitError
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

__all__ = ["LackOfFit", "lack_of_fit", "lack_of_fit_by_form"]

#: below this many pure-error degrees of freedom the test has little power (flagged)
MIN_PURE_DOF = 3


@dataclass(frozen=True)
class LackOfFit(ResultProtocol):
    """The lack-of-fit F test of one fitted law, and the misfit at each design point.

    Attributes
    ----------
    test : pandas.DataFrame
        The analysis of variance of the residuals: rows ``lack of fit``, ``pure error``
        and ``residual`` with ``ss``, ``df``, ``ms``; the first row also ``F`` and
        ``pvalue``.
    points : pandas.DataFrame
        One row per design point: its inputs, ``n`` (cells there), ``mean`` (their mean
        response), ``fitted`` (the law there), ``mean_residual`` (in the fit's space) and
        ``replicate_sd`` (SD of the cells' residuals around their mean; NaN for one cell).
    form, space : str
        The fitted form and the space its residuals are in (``"linear"`` or ``"log"``).
    statistic, pvalue : float
        F and its upper-tail probability under F(``df_lack``, ``df_pure``).
    df_lack, df_pure : int
        m − k and n − m.
    replicates : tuple of str
        The columns in which replicate cells of a point differ (``data_seed``, ``seed``):
        what the pure error is the scatter over. A form that reads ``loss_before`` has
        only ``seed`` replicates, so its lack of fit also holds the scatter between target
        sequences that the power law counts as pure error.
    within : tuple of str
        Columns the replicates of a point were also required to share (``within=``).
    notes : tuple of str
        What the replicates are and what the test assumes.
    flags : tuple of Flag
        ``lack_of_fit`` (warning) where p < 0.05; ``few_replicates`` (warning) where the
        pure error rests on fewer than :data:`MIN_PURE_DOF` degrees of freedom.
    """

    test: pd.DataFrame
    points: pd.DataFrame
    form: str
    space: str
    statistic: float
    pvalue: float
    df_lack: int
    df_pure: int
    replicates: tuple[str, ...] = ()
    within: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    flags: tuple[Flag, ...] = field(default=())

    _main_table = "test"

    def _tables(self) -> list[tuple[str, pd.DataFrame]]:
        return [("analysis of variance", self.test), ("design points", self.points)]

    def summary(self) -> SummaryText:
        """Plain-text summary: the verdict, the analysis of variance and every design point.

        Returns
        -------
        str
            Multi-line text.
        """
        out = [f"Lack of fit of {self.form} ({self.space} residuals)", "=" * 40]
        out.append(
            f"F = {self.statistic:.3g} on ({self.df_lack}, {self.df_pure}) dof, "
            f"p = {self.pvalue:.3g}"
        )
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            out += ["", self.test.to_string(index=False), "", self.points.to_string(index=False)]
        out += [f"flag: {f}" for f in self.flags]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def lack_of_fit(result, *, within: Sequence[str] = ()) -> LackOfFit:
    """Test whether a fitted law misses its design points by more than their replicate scatter.

    Cells that share every input of the form (``rank`` and ``length`` for the power law;
    also ``loss_before`` for a form that reads it) are replicates of one design point: the
    same law value, different target sequences or initialisations. The residual sum of
    squares of the fit splits into their scatter (pure error) and the misfit of the point
    means (lack of fit); see the module docstring for the statistic.

    Parameters
    ----------
    result : lawfit.FitResult
        A least-squares fit (``loss="l2"``) of one group; select one from a grouped fit
        with ``results.sel(...)``.
    within : sequence of str
        Columns that the replicates of a point must share as well. ``("data_seed",)``
        makes the pure error the scatter between initialisation seeds on one target
        sequence and moves the scatter between sequences into the lack of fit: the footing
        on which a form that reads ``loss_before`` is tested, so that forms compare like
        with like.

    Returns
    -------
    LackOfFit

    Raises
    ------
    LawfitError
        For a result that is not one least-squares fit, or a design without replicated
        points.
    """
    points, k = _fitted_points(result)
    inputs = list(result.inputs)
    within = _check_within(within, points, inputs)
    grouped = points.groupby(inputs + list(within), sort=True)
    table = _point_table(grouped, result.response)
    n, m = len(points), len(table)
    _check_design(n, m, inputs + list(within))
    ss_pure = float(((table["n"] - 1) * table["replicate_sd"].fillna(0.0) ** 2).sum())
    ss_lack = float((table["n"] * table["mean_residual"] ** 2).sum())
    df_lack, df_pure = m - k, n - m
    statistic = (ss_lack / df_lack) / (ss_pure / df_pure) if ss_pure > 0 else np.inf
    pvalue = float(stats.f.sf(statistic, df_lack, df_pure))
    replicates = _replicate_columns(grouped, points)
    return LackOfFit(
        test=_anova(ss_lack, ss_pure, df_lack, df_pure, statistic, pvalue),
        points=table,
        form=result.form.name,
        space=result.space,
        statistic=float(statistic),
        pvalue=pvalue,
        df_lack=df_lack,
        df_pure=df_pure,
        replicates=replicates,
        within=within,
        notes=_notes(replicates, result, within),
        flags=_flags(pvalue, df_pure),
    )


def lack_of_fit_by_form(fits, *, within: Sequence[str] = ()) -> tuple[pd.DataFrame, dict[str, str]]:
    """Run :func:`lack_of_fit` on every fit of a comparison; one row per form it can test.

    Parameters
    ----------
    fits : mapping of str to lawfit.FitResult, or a lawfit.compare result
        Form name to fit (``comparison.fits``).
    within : sequence of str
        Passed to :func:`lack_of_fit` for every form (``("data_seed",)``: every form
        against the scatter between initialisation seeds on one sequence, like with like).

    Returns
    -------
    table : pandas.DataFrame
        ``form``, ``F``, ``df_lack``, ``df_pure``, ``pvalue``, ``replicates`` (what
        replicate cells differ in) and ``flags`` (codes), in the order of ``fits``.
    skipped : dict of str to str
        Forms that could not be tested, with the reason.
    """
    fits = getattr(fits, "fits", fits)
    rows, skipped = [], {}
    for name, res in fits.items():
        try:
            lof = lack_of_fit(res, within=within)
        except LawfitError as exc:
            skipped[name] = str(exc)
            continue
        rows.append(
            {"form": name, "F": lof.statistic, "df_lack": lof.df_lack, "df_pure": lof.df_pure}
            | {"pvalue": lof.pvalue, "replicates": ", ".join(lof.replicates) or "-"}
            | {"flags": ", ".join(f.code for f in lof.flags) or "-"}
        )
    return pd.DataFrame(rows), skipped


def _fitted_points(result) -> tuple[pd.DataFrame, int]:
    """Return the fitted cells of a single least-squares fit and its number of parameters."""
    points = getattr(result, "points", None)
    if not isinstance(points, pd.DataFrame) or "residual" not in points:
        raise LawfitError(
            "lack_of_fit needs one lawfit.FitResult; got "
            f"{type(result).__name__}. From a grouped fit pass one group: results.sel(...)."
        )
    if result.loss != "l2":
        raise LawfitError(
            f"lack_of_fit splits a sum of squares, but this fit used loss={result.loss!r}, "
            "whose residuals are not least-squares residuals; refit with loss='l2'."
        )
    return points, len(result.param_names)


def _check_within(within: Sequence[str], points: pd.DataFrame, inputs: list[str]) -> tuple:
    """Return ``within`` as a tuple of the columns not already inputs; refuse unknown ones."""
    names = V.known_columns(within, points.columns, "within")
    return tuple(c for c in names if c not in inputs)


def _check_design(n: int, m: int, inputs: list[str]) -> None:
    """Refuse a design without replicates, saying what to collect.

    ``lawfit.fit`` already refuses as many distinct points as parameters, so m > k here.
    """
    if n == m:
        how = (
            "a second initialisation (seed) of some cells (target sequences differ in "
            "loss_before, so they do not replicate a point of this form)"
            if "loss_before" in inputs
            else "a second target sequence (data_seed) or initialisation (seed) at some points"
        )
        raise LawfitError(
            f"no replicated design point: each of the {n} fitted cells has its own "
            f"({', '.join(inputs)}), so the pure error has no degree of freedom. Collect {how}."
        )


def _anova(ss_lack, ss_pure, df_lack, df_pure, statistic, pvalue) -> pd.DataFrame:
    rows = [
        ("lack of fit", ss_lack, df_lack, statistic, pvalue),
        ("pure error", ss_pure, df_pure, np.nan, np.nan),
        ("residual", ss_lack + ss_pure, df_lack + df_pure, np.nan, np.nan),
    ]
    table = pd.DataFrame(rows, columns=["source", "ss", "df", "F", "pvalue"])
    table.insert(3, "ms", table["ss"] / table["df"])
    return table


def _point_table(grouped, response: str) -> pd.DataFrame:
    """One row per design point: its cells, their mean, the law there, residual mean and SD."""
    table = grouped.agg(
        n=("residual", "size"),
        mean=(response, "mean"),
        fitted=("fitted", "mean"),
        mean_residual=("residual", "mean"),
        replicate_sd=("residual", "std"),
    )
    return table.reset_index()


def _replicate_columns(grouped, points: pd.DataFrame) -> tuple[str, ...]:
    """Return the seed columns that vary among the cells of some replicated design point."""
    return tuple(
        c for c in ("data_seed", "seed") if c in points and (grouped[c].nunique() > 1).any()
    )


def _notes(replicates: tuple[str, ...], result, within: tuple[str, ...]) -> tuple[str, ...]:
    what = " and ".join(replicates) if replicates else "the cells' coordinates"
    return (
        f"replicates: cells at one ({', '.join(list(result.inputs) + list(within))}), "
        f"differing in {what}; the "
        "pure error is their scatter, so a target sequence that shifts all its cells "
        "(lawfit.robust.variance_components) enters it and the point means share it",
        f"assumes the fit's noise model: independent cells with constant variance in its "
        f"{result.space} space (refit with space='log' for multiplicative scatter); for a "
        "nonlinear form F(m - k, n - m) is an approximation",
    )


def _flags(pvalue: float, df_pure: int) -> tuple[Flag, ...]:
    flags = []
    if pvalue < 0.05:
        flags.append(
            Flag(
                "lack_of_fit",
                f"the law misses its design points' means by more than their replicates "
                f"scatter (p = {pvalue:.3g}): its form, not noise, leaves the residuals",
            )
        )
    if df_pure < MIN_PURE_DOF:
        flags.append(
            Flag(
                "few_replicates",
                f"the pure error rests on {df_pure} degree(s) of freedom: the test has little "
                "power; replicate more design points",
            )
        )
    return tuple(flags)
