"""Model selection: fit alternative scaling forms on the same points and rank them.

:func:`compare` fits every candidate form (see :mod:`lawfit.forms_extra`) on exactly the
same cells, then ranks them by AICc (or BIC) with Akaike weights, tests nested pairs by
likelihood ratio, non-nested pairs by Vuong's test on pointwise log-likelihoods, and
measures held-out extrapolation error (fit on the smaller ranks / shorter lengths,
predict the largest). All likelihoods are Gaussian on the fit scale (with the Jacobian
of the log transform when ``space="log"``, so that both scales compare), counting the
error variance as a parameter.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

import lawfit.forms_extra as _fx
from lawfit import _validate as V
from lawfit.data import LN2, as_frame
from lawfit.errors import LawfitError
from lawfit.fitting import fit
from lawfit.forms import get_form
from lawfit.protocol import ResultProtocol, SummaryText
from lawfit.result import Flag
from lawfit.space import HETEROSCEDASTIC_P, breusch_pagan_pvalue

__all__ = [
    "ComparisonResult",
    "akaike_weights",
    "compare",
    "likelihood_ratio_test",
    "pointwise_loglik",
    "vuong_test",
]


# --------------------------------------------------------------------- statistics
def pointwise_loglik(
    residuals: np.ndarray, y: np.ndarray | None = None, space: str = "linear"
) -> np.ndarray:
    """Gaussian log-likelihood of each point at the ML error variance.

    Parameters
    ----------
    residuals : array_like
        Residuals on the fit scale (ΔL, or log ΔL when ``space="log"``).
    y : array_like, optional
        Responses on the original scale; needed for ``space="log"`` (Jacobian −log y
        makes the likelihood one of ΔL, comparable with linear-space fits).
    space : {"linear", "log"}
        Fit scale.

    Returns
    -------
    numpy.ndarray
        ``log N(e_i; 0, σ̂²)`` with ``σ̂² = Σe²/n``; the sum is the model's log-likelihood.
    """
    e = np.asarray(residuals, float)
    s2 = float(np.mean(e * e))
    s2 = max(s2, 1e-300)
    ll = -0.5 * (math.log(2 * math.pi * s2) + e * e / s2)
    if space == "log":
        if y is None:
            raise LawfitError("space='log' needs y (the ΔL values) for the Jacobian term.")
        ll = ll - np.log(np.asarray(y, float))
    return ll


def akaike_weights(values: Sequence[float]) -> np.ndarray:
    """Akaike (or Schwarz) weights ``exp(−Δᵢ/2) / Σ exp(−Δⱼ/2)`` of criterion values.

    Parameters
    ----------
    values : sequence of float
        AIC, AICc or BIC values (non-finite values get weight 0).

    Returns
    -------
    numpy.ndarray
        Weights summing to 1.
    """
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    w = np.zeros_like(v)
    if ok.any():
        d = v[ok] - v[ok].min()
        e = np.exp(-0.5 * d)
        w[ok] = e / e.sum()
    return w


def likelihood_ratio_test(
    loglik_restricted: float, loglik_general: float, df: int
) -> tuple[float, float]:
    """Wilks likelihood-ratio test of a nested restriction.

    Parameters
    ----------
    loglik_restricted, loglik_general : float
        Maximised log-likelihoods of the restricted and general model.
    df : int
        Number of restrictions.

    Returns
    -------
    statistic, pvalue : float
        ``2 (ℓ_general − ℓ_restricted)`` (clipped at 0) and its χ²(df) upper tail.
    """
    stat = max(2.0 * (loglik_general - loglik_restricted), 0.0)
    return stat, float(stats.chi2.sf(stat, df))


def vuong_test(
    ll1: np.ndarray, ll2: np.ndarray, k1: int, k2: int, clusters: np.ndarray | None = None
) -> tuple[float, float]:
    """Vuong's (1989) test for non-nested models, with Schwarz correction.

    Parameters
    ----------
    ll1, ll2 : array_like
        Pointwise log-likelihoods of models 1 and 2 on the same points.
    k1, k2 : int
        Numbers of parameters (the correction is ``(k1 − k2) log(n) / 2``).
    clusters : array_like, optional
        Cluster labels (e.g. seeds): the log-likelihood differences are summed within
        clusters before the variance is taken (robust to correlated points).

    Returns
    -------
    z, pvalue : float
        ``z > 0`` favours model 1; two-sided p-value of H0 "equally close to the truth".
    """
    m = np.asarray(ll1, float) - np.asarray(ll2, float)
    n = m.size
    corr = 0.5 * (k1 - k2) * math.log(n)
    if clusters is not None:
        _, inv = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inv, weights=m)
        g = sums.size
        var = g / max(g - 1, 1) * float(np.sum((sums - sums.mean()) ** 2))
    else:
        var = n * float(np.var(m))
    if var <= 0:
        return 0.0, 1.0
    z = (m.sum() - corr) / math.sqrt(var)
    return float(z), float(2 * stats.norm.sf(abs(z)))


# ------------------------------------------------------------------------ result
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


# ------------------------------------------------------------------------ compare
def _frame(ds, forms, capacity, pool):
    """Return the validated tidy frame with every column any candidate needs."""
    need = ["loss_reduction"]
    for f in forms:
        for i in f.inputs:
            if i not in ("rank", "length") and i not in need:
                need.append(i)
    from lawfit.data import GROUP_DIMS, load_data

    ds = load_data(ds)
    if isinstance(ds, pd.DataFrame):
        multi = [
            c
            for c in GROUP_DIMS
            if c in ds.columns and c not in pool and ds[c].nunique(dropna=False) > 1
        ]
    elif hasattr(ds, "dims"):
        multi = [d for d in GROUP_DIMS if d in ds.dims and ds.sizes[d] > 1 and d not in pool]
    else:
        multi = []
    if multi:
        raise LawfitError(
            f"compare ranks forms within one setting, but the data has grouping dim(s) of size "
            f"> 1: {multi}. Select one setting first, e.g. ds.sel({{{multi[0]!r}: ...}}) (or "
            f"filter the frame), or pool them into one law with pool={tuple(multi)!r}."
        )
    if isinstance(ds, pd.DataFrame):
        variables = [v for v in need if v in ds.columns]
        frame, excl = as_frame(
            ds, variables=variables, by=list(pool) or None, inputs=("rank", "length")
        )
    else:
        import xarray as xr

        if not isinstance(ds, xr.Dataset):
            raise LawfitError(
                f"expected an xarray.Dataset or a pandas.DataFrame; got {type(ds).__name__}. "
                "Load the file first (xarray.load_dataset) or pass a tidy frame."
            )
        variables = [v for v in need if v in ds.data_vars]
        frame, excl = as_frame(
            ds, variables=variables, by=list(pool) or None, inputs=("rank", "length")
        )
        if "n_params" in ds.data_vars and "n_params" not in frame.columns:
            npar = ds["n_params"].to_dataframe().reset_index()
            keys = [c for c in npar.columns if c in frame.columns and c != "n_params"]
            frame = frame.merge(npar[keys + ["n_params"]], on=keys, how="left")
    if pool:
        cols = [c for c in list(pool) + ["seed"] if c in frame.columns]
        frame["run"] = pd.factorize(pd.MultiIndex.from_frame(frame[cols].astype(str)))[0]
        frame = frame.drop(columns=list(pool))
    return frame, excl


def _heteroscedasticity(points: pd.DataFrame) -> float | None:
    """Breusch-Pagan p-value of the residuals against the fitted values (or None)."""
    return breusch_pagan_pvalue(points["residual"], points["fitted"])


def _predict(form, params, frame):
    args = [frame[c].to_numpy(float) for c in form.inputs]
    with np.errstate(all="ignore"):
        out = form.func(*args, **{p: float(params[p]) for p in form.params})
    return np.broadcast_to(np.asarray(out, float), (len(frame),))


def _quiet_fit(data, form, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(data, form, **kw)


def _evaluable(frame: pd.DataFrame, exclude) -> pd.DataFrame:
    """Return the cells a held-out error is measured on: those the exclusion rule keeps."""
    if exclude is not None and "loss_after" in frame.columns:
        thr = LN2 if exclude == "memorized" else float(exclude)
        return frame[frame["loss_after"] > thr]
    return frame


def _errors(form, params, test: pd.DataFrame) -> np.ndarray:
    """Prediction errors of ΔL on ``test`` (not yet squared, so folds can be pooled)."""
    return _predict(form, params, test) - test["loss_reduction"].to_numpy(float)


def _leave_one_target_out(frame, form, kw, exclude) -> float:
    """RMSE of ΔL on each target sequence's cells, from the form fitted on the others.

    Cells of one sequence share its errors, so this is the held-out error that speaks for
    new content; NaN without 2+ ``data_seed`` values or when a fold cannot be fitted.
    """
    if "data_seed" not in frame.columns or frame["data_seed"].nunique() < 2:
        return math.nan
    evaluable, errors = _evaluable(frame, exclude), []
    for seq in sorted(frame["data_seed"].unique()):
        test = evaluable[evaluable["data_seed"] == seq]
        if test.empty:
            continue
        train = frame[frame["data_seed"] != seq].reset_index(drop=True)
        try:
            res = _quiet_fit(train, form, exclude=exclude, **kw)
        except LawfitError:
            return math.nan
        errors.append(_errors(form, res.params, test))
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2))) if errors else math.nan


def _holdout(frame, form, axis, kw, exclude):
    """Fit on cells with axis < top, RMSE of ΔL at top: the largest evaluable value."""
    evaluable = _evaluable(frame, exclude)
    if evaluable.empty:
        return math.nan
    # the largest value that still has cells that are not memorized
    top = evaluable[axis].max()
    train, test = frame[frame[axis] < top], evaluable[evaluable[axis] == top]
    if len(test) == 0 or train[axis].nunique() < 2:
        return math.nan
    try:
        res = _quiet_fit(train.reset_index(drop=True), form, exclude=exclude, **kw)
    except LawfitError:
        return math.nan
    return float(np.sqrt(np.mean(_errors(form, res.params, test) ** 2)))


def _check_options(
    loss: str, criterion: str, exclude: str | float | None, holdout: Sequence[str]
) -> str | float | None:
    """Reject options :func:`compare` cannot use; return the validated exclusion rule.

    Parameters
    ----------
    loss : str
        Must be ``"l2"``: the criteria need a likelihood.
    criterion : str
        ``"aicc"`` or ``"bic"``.
    exclude : {"memorized"} or float or None
        Exclusion rule passed on to :func:`lawfit.fit`.
    holdout : sequence of str
        Axes among ``"rank"`` and ``"length"``.

    Returns
    -------
    str or float or None
        ``exclude`` as :func:`lawfit._validate.exclude_rule` normalises it.

    Raises
    ------
    LawfitError
        Any option outside its allowed values (checked in the order above).
    """
    if loss != "l2":
        raise LawfitError(
            f"compare needs a likelihood, so loss must be 'l2'; got {loss!r}. Use "
            "lawfit.fit(..., loss='huber') for a robust fit of a single form."
        )
    V.one_of(criterion, "criterion", ("aicc", "bic"))
    exclude = V.exclude_rule(exclude)
    bad_h = [h for h in holdout if h not in ("rank", "length")]
    if bad_h:
        raise LawfitError(f"holdout axes must be 'rank' and/or 'length'; got {bad_h}.")
    return exclude


def _candidate_forms(forms: Sequence[str] | None) -> list:
    """Look up the candidate forms (the built-in candidates when ``forms`` is None).

    Parameters
    ----------
    forms : sequence of str or None
        Registered form names.

    Returns
    -------
    list of Form
        One form object per name, in the given order.

    Raises
    ------
    LawfitError
        A name listed twice, or an unknown form.
    """
    names = list(_fx.BUILTIN_CANDIDATES if forms is None else forms)
    if len(set(names)) != len(names):
        raise LawfitError(f"forms contains duplicates: {names}. List each form once.")
    return [get_form(n) for n in names]


def _nparams_is_rank(frame: pd.DataFrame) -> bool:
    """Return True when ``n_params`` is proportional to ``rank`` on every cell."""
    ratio = frame["n_params"].to_numpy(float) / frame["rank"].to_numpy(float)
    return bool(np.ptp(ratio) <= 1e-9 * ratio.max())


def _usable_forms(
    form_objs: list, frame: pd.DataFrame, notes: list[str], *, default_forms: bool
) -> list:
    """Keep the forms the data can fit; note each one skipped and why.

    Parameters
    ----------
    form_objs : list of Form
        Candidate forms.
    frame : pandas.DataFrame
        Tidy data from :func:`_frame`.
    notes : list of str
        Appended with one note per skipped form.
    default_forms : bool
        True when the user did not name the forms: then ``power_law_nparams`` is skipped
        where ``n_params`` is proportional to rank (the same law as ``power_law``).

    Returns
    -------
    list of Form
        The forms whose inputs the frame has.
    """
    usable = []
    for f in form_objs:
        missing = [c for c in f.inputs if c not in frame.columns]
        if missing:
            notes.append(f"{f.name} skipped: the data lacks {missing}")
            continue
        if (
            f.name == "power_law_nparams"
            and "n_params" in frame
            and default_forms
            and _nparams_is_rank(frame)
        ):
            notes.append(
                "power_law_nparams skipped: n_params is proportional to rank here, so it "
                "is the same law as power_law (pass pool=('modules',) over several "
                "modules/models to compare them)"
            )
            continue
        usable.append(f)
    return usable


def _fit_candidates(
    usable: list, frame: pd.DataFrame, kw: dict, exclude: str | float | None, notes: list[str]
) -> tuple[dict, dict]:
    """Fit every usable form on the same points, keeping pointwise log-likelihoods.

    Parameters
    ----------
    usable : list of Form
        Forms to fit.
    frame : pandas.DataFrame
        Tidy data.
    kw : dict
        Keyword arguments for :func:`lawfit.fit` (loss, space, profile, bootstrap).
    exclude : {"memorized"} or float or None
        Exclusion rule.
    notes : list of str
        Appended with a note per form that could not be fitted.

    Returns
    -------
    fits : dict
        Form name → FitResult, in fitting order.
    lls : dict
        Form name → (pointwise log-likelihood array, fitted points frame).

    Raises
    ------
    LawfitError
        Fewer than two forms could be fitted; the message groups the fit errors.
    """
    fits, lls = {}, {}
    failures: dict[str, list[str]] = {}
    n_ref = None
    for f in usable:
        try:
            res = _quiet_fit(frame, f, exclude=exclude, **kw)
        except LawfitError as exc:
            notes.append(f"{f.name} not fitted: {exc}")
            failures.setdefault(str(exc), []).append(f.name)
            continue
        pts = res.points
        if n_ref is None:
            n_ref = len(pts)
        elif len(pts) != n_ref:  # pragma: no cover - exclusion depends on data only
            notes.append(f"{f.name} fitted on {len(pts)} points, not {n_ref}: left out")
            continue
        y = pts["loss_reduction"].to_numpy(float)
        lls[f.name] = (pointwise_loglik(pts["residual"].to_numpy(float), y, kw["space"]), pts)
        fits[f.name] = res
    if len(fits) < 2:
        why = "; ".join(f"{', '.join(names)}: {msg}" for msg, names in failures.items())
        raise LawfitError(
            f"compare needs at least two forms that can be fitted; got {len(fits)} "
            f"({list(fits)}). {why or 'See the notes.'} Add cells, forms, or the "
            "variables they need (loss_before, n_params)."
        )
    return fits, lls


def _criteria_row(
    res,
    pts: pd.DataFrame,
    ll: np.ndarray,
    frame: pd.DataFrame,
    kw: dict,
    exclude: str | float | None,
    holdout: Sequence[str],
) -> dict:
    """One ranking-table row: likelihood, AICc, BIC, fit quality and held-out errors.

    Parameters
    ----------
    res : FitResult
        The form's fit on all points.
    pts : pandas.DataFrame
        Its fitted points (``loss_reduction``, ``fitted``).
    ll : numpy.ndarray
        Pointwise log-likelihoods.
    frame : pandas.DataFrame
        Tidy data, for the held-out fits.
    kw : dict
        Keyword arguments for :func:`lawfit.fit`.
    exclude : {"memorized"} or float or None
        Exclusion rule.
    holdout : sequence of str
        Axes whose held-out RMSE is computed (NaN for the others).

    Returns
    -------
    dict
        Columns of :attr:`ComparisonResult.table` before deltas and weights.
    """
    f = res.form
    y = pts["loss_reduction"].to_numpy(float)
    n = len(pts)
    k = len(f.params) + 1
    loglik = float(ll.sum())
    aicc = -2 * loglik + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)
    bic = -2 * loglik + k * math.log(n)
    row = {
        "form": f.name,
        "k": k,
        "n_obs": n,
        "loglik": loglik,
        "aicc": aicc,
        "bic": bic,
        "r2": res.r2,
        "rmse": float(np.sqrt(np.mean((y - pts["fitted"]) ** 2))),
        "converged": bool(res.meta.get("converged", True)),
        "flags": "; ".join(fl.code for fl in res.flags),
    }
    for axis in ("rank", "length"):
        row[f"extrap_{axis}_rmse"] = (
            _holdout(frame, f, axis, kw, exclude) if axis in holdout else math.nan
        )
    row["loto_rmse"] = _leave_one_target_out(frame, f, kw, exclude)
    return row


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

_TABLE_COLUMNS = [
    "form",
    "k",
    "n_obs",
    "loglik",
    "aicc",
    "delta_aicc",
    "weight_aicc",
    "bic",
    "delta_bic",
    "weight_bic",
    "r2",
    "rmse",
    "extrap_rank_rmse",
    "extrap_length_rmse",
    "loto_rmse",
    "converged",
    "flags",
]


def _ranking_table(rows: list[dict], criterion: str) -> pd.DataFrame:
    """Rank the forms by ``criterion`` with deltas and Akaike weights of AICc and BIC.

    Parameters
    ----------
    rows : list of dict
        One :func:`_criteria_row` per fitted form.
    criterion : {"aicc", "bic"}
        Sort key (ties broken by form name).

    Returns
    -------
    pandas.DataFrame
        The ranking table, best first, columns in documented order.
    """
    table = pd.DataFrame(rows)
    for c in ("aicc", "bic"):
        table[f"delta_{c}"] = table[c] - table[c].min()
        table[f"weight_{c}"] = akaike_weights(table[c])
    table = table.sort_values([criterion, "form"]).reset_index(drop=True)
    return table[_TABLE_COLUMNS]


def _nested_tests(
    fits: dict, lls: dict, notes: list[str], flags: list[Flag]
) -> tuple[pd.DataFrame, set[frozenset]]:
    """Likelihood-ratio tests of every fitted nested pair of forms.

    Parameters
    ----------
    fits : dict
        Form name → FitResult.
    lls : dict
        Form name → (pointwise log-likelihoods, points).
    notes : list of str
        Appended with the caveats when a test has no chi-square p-value.
    flags : list of Flag
        Appended with ``local_optimum`` where a general form fits worse than its
        restriction.

    Returns
    -------
    lr : pandas.DataFrame
        ``restricted, general, restriction, df, statistic, pvalue, valid``.
    nested_pairs : set of frozenset
        The pairs tested here (Vuong's test skips them).
    """
    lr_rows = []
    nested_pairs = set()
    for restr, gen, what, valid in _fx.NESTED:
        if restr in fits and gen in fits:
            nested_pairs.add(frozenset((restr, gen)))
            df = len(get_form(gen).params) - len(get_form(restr).params)
            l0, l1 = float(lls[restr][0].sum()), float(lls[gen][0].sum())
            stat, p = likelihood_ratio_test(l0, l1, df)
            lr_rows.append(
                {
                    "restricted": restr,
                    "general": gen,
                    "restriction": what,
                    "df": df,
                    "statistic": stat,
                    "pvalue": p if valid else math.nan,
                    "valid": valid,
                }
            )
            if l1 < l0 - 1e-6:
                flags.append(
                    Flag(
                        "local_optimum",
                        f"{gen} fits worse than its restriction "
                        f"{restr}: the optimizer of {gen} stopped at a local optimum",
                    )
                )
    if any(not r["valid"] for r in lr_rows):
        notes.append(
            "LR test of broken_power_law vs power_law has no chi-square p-value: the "
            "break point is not identified under the null (Davies' problem); use the "
            "criteria"
        )
        notes.append("LR tests assume no parameter at a bound; see each fit's flags")
    return pd.DataFrame(lr_rows), nested_pairs


def _vuong_table(
    ranked: list[str],
    lls: dict,
    nested_pairs: set[frozenset],
    vuong_clusters: str | None,
    significance: float,
) -> pd.DataFrame:
    """Vuong tests of every non-nested pair of fitted forms.

    Parameters
    ----------
    ranked : list of str
        Fitted form names, best first (pairs are taken in this order).
    lls : dict
        Form name → (pointwise log-likelihoods, points).
    nested_pairs : set of frozenset
        Pairs already tested by likelihood ratio: skipped.
    vuong_clusters : str or None
        Column of the points whose cells are correlated.
    significance : float
        Level below which ``favours`` names a form.

    Returns
    -------
    pandas.DataFrame
        ``form_1, form_2, z, pvalue, favours``.
    """
    v_rows = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            if frozenset((a, b)) in nested_pairs:
                continue
            la, pa = lls[a]
            lb, _ = lls[b]
            cl = pa[vuong_clusters].to_numpy() if vuong_clusters else None
            z, p = vuong_test(la, lb, len(get_form(a).params), len(get_form(b).params), cl)
            fav = (a if z > 0 else b) if p < significance else None
            v_rows.append({"form_1": a, "form_2": b, "z": z, "pvalue": p, "favours": fav})
    return pd.DataFrame(v_rows)


def _heteroscedastic_flag(best: str, pvalue: float) -> Flag:
    """Build the ``heteroscedastic`` flag for the best form's Breusch-Pagan ``pvalue``."""
    return Flag(
        "heteroscedastic",
        f"the residual spread of {best} grows with the fitted ΔL "
        f"(Breusch-Pagan p = {pvalue:.2g}): the Gaussian likelihood behind AICc/BIC is "
        "misspecified and selection in linear space over-rewards flexible forms "
        "(docs/analyses.md); rerun with space='log'",
    )


def compare(
    ds,
    forms: Sequence[str] | None = None,
    *,
    exclude: str | float | None = "memorized",
    loss: Literal["l2"] = "l2",
    space: Literal["linear", "log"] = "linear",
    criterion: Literal["aicc", "bic"] = "aicc",
    pool: Sequence[str] = (),
    holdout: Sequence[str] = ("rank", "length"),
    vuong_clusters: str | None = None,
    significance: float = 0.05,
    alpha: float | None = None,
) -> ComparisonResult:
    """Fit alternative scaling forms on the same points and rank them.

    Parameters
    ----------
    ds : xarray.Dataset or pandas.DataFrame
        One setting of the sweep (select or ``pool`` grouping dims first), with
        ``loss_reduction`` over ``rank`` and ``length``; ``loss_before`` is needed by
        ``saturating``, ``n_params`` by ``power_law_nparams``.
    forms : sequence of str, optional
        Registered form names; default
        :data:`lawfit.forms_extra.BUILTIN_CANDIDATES`. Forms whose inputs the data
        lacks are skipped with a note.
    exclude : {"memorized"} or float or None
        Passed to :func:`lawfit.fit`; the excluded cells depend on the data only, so
        every form sees the same points.
    loss : {"l2"}
        Only least squares: the criteria need a likelihood.
    space : {"linear", "log"}
        Fit scale, the same for every form.
    criterion : {"aicc", "bic"}
        Ranking criterion.
    pool : sequence of str
        Grouping dims (e.g. ``("modules",)``) whose settings are pooled into one law:
        then only a form in ``n_params`` can put adapters of different sizes on one
        curve, and the comparison says whether it does.
    holdout : sequence of {"rank", "length"}
        Axes for the held-out extrapolation error (fit below the largest value,
        predict the largest); empty to skip.
    vuong_clusters : str, optional
        Column (e.g. ``"seed"``) whose cells are correlated: Vuong's variance then
        uses cluster sums.
    significance : float
        Significance level used to name the favoured form of a Vuong test.
    alpha : float, optional
        Deprecated name of ``significance`` (alpha is the law's rank exponent here).

    Returns
    -------
    ComparisonResult
        Frozen ranking with fits and tests.

    Raises
    ------
    LawfitError
        Unknown forms or options, fewer than two forms that can be fitted, or bad
        data (see :func:`lawfit.data.as_frame`).
    """
    if alpha is not None:
        warnings.warn(
            "compare(alpha=...) is deprecated: use significance=... (alpha names the "
            "law's rank exponent).",
            DeprecationWarning,
            stacklevel=2,
        )
        significance = alpha
    significance = V.significance_level(significance)
    exclude = _check_options(loss, criterion, exclude, holdout)
    form_objs = _candidate_forms(forms)
    frame, _excl = _frame(ds, form_objs, "rank", tuple(pool))
    V.known_columns(vuong_clusters, frame.columns, "vuong_clusters")
    notes = [f"pooled over {list(pool)} into one law (cluster column 'run')"] if pool else []
    usable = _usable_forms(form_objs, frame, notes, default_forms=forms is None)
    kw = dict(loss="l2", space=space, profile=False, bootstrap=0)
    fits, lls = _fit_candidates(usable, frame, kw, exclude, notes)
    table = _ranking_table(
        [
            _criteria_row(fits[name], lls[name][1], lls[name][0], frame, kw, exclude, holdout)
            for name in fits
        ],
        criterion,
    )
    flags: list[Flag] = []
    lr, nested_pairs = _nested_tests(fits, lls, notes, flags)
    vu = _vuong_table(list(table["form"]), lls, nested_pairs, vuong_clusters, significance)
    best = str(table["form"].iloc[0])
    het = _heteroscedasticity(lls[best][1])
    if space == "linear" and het is not None and het < HETEROSCEDASTIC_P:
        flags.append(_heteroscedastic_flag(best, het))
    if vuong_clusters is None and "seed" in frame.columns and frame["seed"].nunique() > 1:
        notes.append(
            "Vuong tests treat cells as independent; pass vuong_clusters='seed' if "
            "replicates share a run effect"
        )
    if "data_seed" in frame.columns and frame["data_seed"].nunique() > 1:
        notes.append(
            f"the likelihood-ratio tests and the criteria treat cells as independent; cells "
            f"of one target sequence share its errors ({frame['data_seed'].nunique()} "
            "data_seed clusters), so they overstate the evidence: test a restriction such as "
            "beta = alpha on the general fit with res.contrast({'alpha': 1, 'beta': -1}, "
            "cluster='data_seed') (cluster-robust), and read loto_rmse (each sequence "
            "predicted from a fit on the others) as the held-out check that respects them"
        )
    return ComparisonResult(
        table=table,
        fits=fits,
        lr_tests=lr,
        vuong=vu,
        best=best,
        criterion=criterion,
        notes=tuple(notes),
        flags=tuple(flags),
        heteroscedasticity_pvalue=het,
        significance=float(significance),
    )
