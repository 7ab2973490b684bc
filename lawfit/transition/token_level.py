"""The token-level analyses a dataset's variables allow, with their notes and flags.

:func:`_token_level` runs the threshold fit and the sufficiency, cascade, sequence and
bimodality checks when the dataset holds ``p_after`` and ``greedy_correct`` (only the
bimodality without ``greedy_correct``), notes what it skipped and raises the flags of
the threshold fit (:func:`_threshold_flags`) and of a violated sufficiency.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from lawfit._tokens import TokenArrays, fails_before, token_arrays
from lawfit.errors import LawfitError
from lawfit.result import Flag
from lawfit.transition.diagnostics import _bimodality, _cascade, _sequence, _sufficiency
from lawfit.transition.options import _TokenOptions
from lawfit.transition.results import (
    _PROFILE,
    LINK_SIGNIFICANCE,
    MIN_INFORMATIVE_RUNS,
    ThresholdFit,
)
from lawfit.transition.threshold import _threshold_fit


def _threshold_or_note(
    ta: TokenArrays, prefix_ok: np.ndarray, opts: _TokenOptions, notes: list[str]
) -> ThresholdFit | None:
    """Fit the recall threshold p*, or note why it could not be estimated.

    Parameters
    ----------
    ta : TokenArrays
        Token arrays of the dataset.
    prefix_ok : numpy.ndarray
        Tokens that enter the logistic regression.
    opts : _TokenOptions
        Level, bootstrap replicates and their random source, and the interval to report.
    notes : list of str
        Appended with the reason when the fit fails.

    Returns
    -------
    ThresholdFit or None
        None when the regression could not be fitted.
    """
    try:
        return _threshold_fit(ta, prefix_ok, opts)
    except LawfitError as exc:
        notes.append(f"threshold not estimated: {exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. perfect separation in statsmodels
        notes.append(f"threshold not estimated: logistic regression failed ({exc})")
    return None


def _threshold_flags(thr: ThresholdFit) -> list[Flag]:
    """Flag a non-logistic recall curve, too few informative runs, a too narrow interval.

    Parameters
    ----------
    thr : ThresholdFit
        The token-level threshold fit.

    Returns
    -------
    list of Flag
        ``threshold_not_logistic``, ``few_informative_runs`` and/or
        ``one_miss_per_run`` (raised for the bootstrap and delta intervals only: the
        profile interval held its level there) where they apply.
    """
    flags = []
    if thr.link_pvalue < LINK_SIGNIFICANCE:
        flags.append(
            Flag(
                "threshold_not_logistic",
                f"greedy recall is not logistic in logit(p_after): the best monotone curve "
                f"fits better than the logistic by LR = {thr.link_statistic:.2f} (parametric "
                f"bootstrap p = {thr.link_pvalue:.3g}; sufficiency forces recall to 1 above "
                f"p = 0.5), so the logistic p* ({thr.threshold:.4f}) may be biased; prefer "
                f"the model-free threshold_isotonic ({thr.threshold_isotonic:.4f} "
                f"[{thr.ci_isotonic[0]:.4f}, {thr.ci_isotonic[1]:.4f}])",
            )
        )
    if thr.n_runs_informative < MIN_INFORMATIVE_RUNS:
        flags.append(
            Flag(
                "few_informative_runs",
                f"only {thr.n_runs_informative} of {thr.n_runs} runs have both recalled "
                "and missed tokens; the others are recalled (or missed) throughout and do not "
                f"locate the threshold, so the interval of p* ({thr.ci[0]:.4f}, "
                f"{thr.ci[1]:.4f}; {thr.ci_method}) understates its uncertainty (simulated "
                "long-context data, 1-2 informative runs: the profile interval covered 83 %, "
                "the run bootstrap 36 %; benchmarks/threshold_coverage.py --study "
                "informative). Collect more runs near the transition (ranks and lengths where "
                "recall is partial).",
            )
        )
    if thr.max_missed_per_run == 1 and thr.ci_method != _PROFILE:
        flags.append(
            Flag(
                "one_miss_per_run",
                f"no run contributes more than one missed token ({thr.n_runs} runs, each one "
                "entry whose intact prefix ends at its first miss): on simulated data of this "
                "kind the run-bootstrap and delta intervals of p* cover a planted p* 48-93 % "
                "of the time at 3-15+ informative runs, the profile-likelihood interval "
                "90-98 % (benchmarks/threshold_coverage.py --study informative). Read this "
                f"{thr.ci_method} interval as too narrow; threshold_interval='profile' gives "
                "the one that held its level.",
            )
        )
    return flags


def _recall_checks(
    ds: xr.Dataset, opts: _TokenOptions, notes: list[str], flags: list[Flag]
) -> tuple:
    """Token-level analysis of a dataset with ``p_after`` and ``greedy_correct``.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset with both token variables.
    opts : _TokenOptions
        Settings of the analyses.
    notes, flags : list
        Appended with what the checks report.

    Returns
    -------
    tuple
        ``(token arrays, threshold fit, sufficiency, cascade, sequence, bimodality)``.
    """
    ta = token_arrays(ds)
    intact = fails_before(ta.greedy, ta.entry, ta.valid) == 0
    prefix_ok = intact if opts.condition_on_prefix else np.ones_like(ta.valid)
    thr = _threshold_or_note(ta, prefix_ok, opts, notes)
    if thr is not None:
        flags.extend(_threshold_flags(thr))
    suff = _sufficiency(ta, intact, opts.tie_tol)  # defined on intact prefixes only
    if suff.n_violations:
        flags.append(
            Flag(
                "sufficiency_violated",
                f"{suff.n_violations} tokens with p_after > 0.5 + {opts.tie_tol:g} and an "
                "intact prefix were not recalled: greedy decoding and teacher forcing disagree "
                "(check that both used the same prompt, precision and tokenization)",
            )
        )
    casc = _cascade(ta, opts.cascade_unit, opts.censored, opts.level, opts.n_boot, opts.gen)
    if casc is None:
        notes.append("cascade not computed: fewer than 4 units with a varying position")
    seq = _sequence(ta)
    if "entry" not in ds:
        notes.append("no 'entry' variable: each run is treated as one entry")
    return ta, thr, suff, casc, seq, _bimodality(ta)


def _token_level(ds: xr.Dataset, opts: _TokenOptions, notes: list[str], flags: list[Flag]) -> tuple:
    """Run the token-level analyses the dataset's variables allow; note those skipped.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.
    opts : _TokenOptions
        Settings of the analyses.
    notes, flags : list
        Appended with what the analyses report.

    Returns
    -------
    tuple
        ``(token arrays, threshold fit, sufficiency, cascade, sequence, bimodality)``;
        parts the variables cannot support are None.
    """
    if "p_after" in ds and "greedy_correct" in ds:
        return _recall_checks(ds, opts, notes, flags)
    if "p_after" in ds:
        ta = token_arrays(ds, need_greedy=False)
        bim = _bimodality(ta)
        notes.append(
            "no 'greedy_correct': threshold, sufficiency, cascade and sequence checks skipped"
        )
        return ta, None, None, None, None, bim
    notes.append("no token variables (p_after, greedy_correct): token-level analysis skipped")
    return None, None, None, None, None, None
