"""How much a capacity answer depends on the law's functional form.

:func:`lawfit.predict_capacity` inverts one fitted form, and its interval covers the
sampling error of that form's parameters only. Where the data do not single out a form
(:func:`lawfit.compare` spreads its Akaike weights over several), the answer can move more
between forms than within one form's interval, above all when it is extrapolated.
:func:`capacity_by_form` inverts every form of a comparison at the same queries and
summarises the spread: the estimate of each form beside its weight, the weighted average
over forms (Buckland, Burnham & Augustin 1997, Biometrics 53:603) and the weighted
standard deviation between forms, the part of the uncertainty a single form's interval
leaves out (it is not an interval: the sampling error of each form comes on top).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lawfit.errors import LawfitError
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag

__all__ = ["FormSensitivity", "capacity_by_form"]

#: forms below this weight are listed but do not enter the range between forms
MIN_WEIGHT = 0.01


@dataclass(frozen=True)
class FormSensitivity(ResultProtocol):
    """Capacity answers of every form of a comparison, and their spread.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (form, query): ``form``, ``weight`` (the comparison's Akaike or
        Schwarz weight), the query (``length`` or ``rank``), ``estimate`` (the form's
        point answer; ``inf`` or 0 where the form never reaches the target) and
        ``extrapolated``. Forms whose answer could not be computed are in ``notes``.
    averaged : pandas.DataFrame
        One row per query: ``estimate`` (weighted average over the forms with a finite
        answer, weights renormalised over them), ``between_form_sd`` (their weighted
        standard deviation), ``low_form`` and ``high_form`` (the smallest and largest
        answer among forms of weight ≥ :data:`MIN_WEIGHT`), ``best_form``,
        ``best_estimate``, ``weight_finite`` (the total weight of the forms averaged).
    quantity : str
        ``"rank"`` (or ``"n_params"``) needed, or ``"length"`` that can be held.
    criterion : str
        ``"aicc"`` or ``"bic"``: which weights.
    notes : tuple of str
        Forms left out and why; what the spread is and is not.
    flags : tuple of Flag
        ``form_sensitive`` (info) where the range between the forms' finite answers is
        wider than 20 % of the average at some query; ``form_never_reaches`` (info) for
        each form of weight ≥ :data:`MIN_WEIGHT` whose answer is infinite somewhere.
    """

    table: pd.DataFrame
    averaged: pd.DataFrame
    quantity: str
    criterion: str
    notes: tuple[str, ...] = field(default=())
    flags: tuple[Flag, ...] = field(default=())

    _main_table = "averaged"

    def _tables(self) -> list[tuple[str, pd.DataFrame]]:
        return [("averaged over forms", self.averaged), ("each form", self.table)]

    def summary(self) -> SummaryText:
        """Plain-text summary: the averaged answers, then every form's.

        Returns
        -------
        str
            Multi-line text.
        """
        out = [f"Capacity by form: {self.quantity} ({self.criterion} weights)", "=" * 40]
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            out += [self.averaged.to_string(index=False), "", self.table.to_string(index=False)]
        out += [f"flag: {f}" for f in self.flags]
        out += [f"note: {n}" for n in self.notes]
        return self._summary_text("\n".join(out))


def capacity_by_form(comparison, *, criterion: str = "aicc", **query) -> FormSensitivity:
    """Invert every fitted form of a comparison at the same queries.

    Parameters
    ----------
    comparison : lawfit.compare.ComparisonResult
        The result of :func:`lawfit.compare`, whose ``fits`` are inverted.
    criterion : {"aicc", "bic"}
        Which of the comparison's weights average the forms.
    **query
        What :func:`lawfit.predict_capacity` takes besides the fit: ``length=`` or
        ``rank=``, ``target=``, ``target_kind=``, ``data=`` (needed by forms that read
        ``loss_before``), ``loss_before=``, ``search=``. Intervals are not computed here.

    Returns
    -------
    FormSensitivity

    Raises
    ------
    LawfitError
        An unknown criterion, a comparison without fits, or no form that can be inverted.
    """
    if criterion not in ("aicc", "bic"):
        raise LawfitError(f"criterion must be 'aicc' or 'bic'; got {criterion!r}.")
    fits = getattr(comparison, "fits", None)
    if not fits:
        raise LawfitError(
            "capacity_by_form needs a lawfit.compare result with fitted forms; got "
            f"{type(comparison).__name__}. Run lawfit.compare(data) first."
        )
    if {"interval", "cluster"} & set(query) or np.size(query.get("target", 0.0)) != 1:
        raise LawfitError(
            "capacity_by_form takes one target and computes point answers only; got "
            f"{sorted(query)} with target={query.get('target')!r}. Pass a single target and "
            "leave interval/cluster to lawfit.predict_capacity on the form you report."
        )
    weights = comparison.table.set_index("form")[f"weight_{criterion}"]
    rows, notes, quantity = [], [], "rank"
    for form, fit in fits.items():
        try:
            pred = _invert_quietly(fit, query)
        except LawfitError as exc:
            notes.append(f"{form}: not inverted ({exc})")
            continue
        quantity = pred.quantity
        part = pred.table[[_query_column(pred.table), "estimate", "extrapolated"]].copy()
        part.insert(0, "weight", float(weights.get(form, np.nan)))
        part.insert(0, "form", form)
        rows.append(part)
    if not rows:
        raise LawfitError("no form of the comparison could be inverted: " + "; ".join(notes))
    table = pd.concat(rows, ignore_index=True)
    averaged = _average(table, _query_column(table))
    notes.append(
        "between_form_sd is the spread of the point answers between forms (Buckland et al. "
        "1997); each form's own sampling error comes on top, so it is not an interval"
    )
    return FormSensitivity(
        table=table,
        averaged=averaged,
        quantity=quantity,
        criterion=criterion,
        notes=tuple(notes),
        flags=_flags(averaged, table),
    )


def _invert_quietly(fit, query: dict):
    """:func:`predict_capacity` of one form, point answers only, its warnings silenced."""
    from lawfit.capacity import predict_capacity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return predict_capacity(fit, interval="bootstrap", **query)


def _query_column(table: pd.DataFrame) -> str:
    return "length" if "length" in table.columns else "rank"


def _average(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per query: the weighted average and spread of the forms' finite answers."""
    out = []
    for value, rows in table.groupby(by, sort=True):
        finite = rows[np.isfinite(rows["estimate"]) & (rows["weight"] > 0)]
        w = finite["weight"].to_numpy(float)
        est = finite["estimate"].to_numpy(float)
        mean = float(np.sum(w * est) / w.sum()) if w.sum() > 0 else np.nan
        sd = float(np.sqrt(np.sum(w * (est - mean) ** 2) / w.sum())) if w.sum() > 0 else np.nan
        weighty = rows[rows["weight"] >= MIN_WEIGHT]["estimate"]
        best = rows.loc[rows["weight"].idxmax()]
        out.append(
            {
                by: value,
                "estimate": mean,
                "between_form_sd": sd,
                "low_form": float(weighty.min()) if len(weighty) else np.nan,
                "high_form": float(weighty.max()) if len(weighty) else np.nan,
                "best_form": best["form"],
                "best_estimate": float(best["estimate"]),
                "weight_finite": float(w.sum()),
            }
        )
    return pd.DataFrame(out)


def _flags(averaged: pd.DataFrame, table: pd.DataFrame) -> tuple[Flag, ...]:
    """``form_sensitive`` where the finite answers spread; ``form_never_reaches`` per such form."""
    by = _query_column(table)
    weighty = table[table["weight"] >= MIN_WEIGHT]
    finite = weighty[np.isfinite(weighty["estimate"])].groupby(by)["estimate"]
    width = ((finite.max() - finite.min()) / averaged.set_index(by)["estimate"]).dropna()
    flags = []
    if len(width) and width.max() > 0.2:
        flags.append(
            Flag(
                "form_sensitive",
                f"the forms' finite answers span {100 * width.max():.0f} % of their average "
                f"at {by} = {width.idxmax():g}: the form, not only its parameters, sets the "
                "answer there",
                "info",
            )
        )
    for form, rows in weighty[~np.isfinite(weighty["estimate"])].groupby("form", sort=False):
        at = rows[by].to_numpy(float)
        where = f"{at.min():g}" if len(at) == 1 else f"{at.min():g}-{at.max():g}"
        flags.append(
            Flag(
                "form_never_reaches",
                f"{form} (weight {rows['weight'].iloc[0]:.2g}) never reaches the target at "
                f"{by} = {where} under its fit (answer inf): it is left out of the average, "
                "whose weights are renormalised over the other forms (weight_finite)",
                "info",
            )
        )
    return tuple(flags)
