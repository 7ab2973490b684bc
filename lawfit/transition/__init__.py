"""The p > 0.5 phase transition of verbatim recall, measured at token and cell level.

Under teacher forcing, a correct token with probability p > 0.5 is the argmax, so greedy
decoding with an intact prefix must reproduce it: ``p > 0.5`` is *sufficient* for
recall, not necessary. :func:`phase_transition` estimates the empirical recall threshold
p* with a logistic regression, checks sufficiency and necessity, measures how one
sub-threshold token derails decoding (the cascade), and fits the cell-level transition
of the order parameters (exact match, share of tokens above threshold) against
capacity. See docs/analyses.md for definitions and choices.

The package holds one module per part of the analysis: ``results`` (the result
dataclasses and the thresholds), ``options`` (the checks of the options and the
token-level settings), ``threshold`` (the token-level fit of p* and its intervals),
``diagnostics`` (sufficiency, cascade, sequence and bimodality checks), ``token_level``
(runs those the dataset's variables allow, with notes and flags) and ``cells`` (the
cell-level sigmoid fits against capacity). :func:`phase_transition` lives here.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from lawfit import _validate as V
from lawfit._tokens import GROUP_DIMS, load
from lawfit.errors import LawfitError
from lawfit.protocol import saved_as
from lawfit.result import Flag
from lawfit.transition.cells import _cell_transitions
from lawfit.transition.diagnostics import bimodality_coefficient
from lawfit.transition.options import _check_options, _TokenOptions
from lawfit.transition.results import LINK_SIGNIFICANCE as LINK_SIGNIFICANCE
from lawfit.transition.results import MIN_INFORMATIVE_RUNS as MIN_INFORMATIVE_RUNS
from lawfit.transition.results import THRESHOLD as THRESHOLD
from lawfit.transition.results import (
    Cascade,
    CellTransition,
    PhaseTransitionResult,
    SequenceCheck,
    SufficiencyCheck,
    ThresholdFit,
)
from lawfit.transition.token_level import _token_level

__all__ = [
    "Cascade",
    "CellTransition",
    "PhaseTransitionResult",
    "SequenceCheck",
    "SufficiencyCheck",
    "ThresholdFit",
    "bimodality_coefficient",
    "phase_transition",
]


def phase_transition(
    ds,
    *,
    condition_on_prefix: bool = True,
    tie_tol: float = 1e-3,
    cascade_unit: Literal["run", "entry"] = "run",
    censored: Literal["end", "drop"] = "end",
    orders: tuple[str, ...] = ("exact_match", "frac_above"),
    capacity: Literal["rank", "n_params"] = "rank",
    beta: float | None = None,
    bootstrap: int = 1000,
    confidence_level: float = 0.95,
    threshold_interval: Literal["profile", "bootstrap", "delta"] = "profile",
    rng: int | np.random.Generator | None = None,
) -> PhaseTransitionResult:
    """Measure the p > 0.5 phase transition of greedy verbatim recall.

    Parameters
    ----------
    ds : xarray.Dataset or path
        Contract dataset. Token level needs ``p_after`` and ``greedy_correct`` over
        ``token`` (``entry`` optional: without it every run is one entry); cell level
        needs ``rank``, ``length`` and ``exact_match`` / ``token_accuracy`` or token
        variables. Cells whose ``status`` is not ``"ok"`` are left out. Grouping dims
        (model, task, method, ...) are pooled: select first to analyse one group.
    condition_on_prefix : bool
        Use only tokens whose earlier tokens in the same entry were reproduced for the
        logistic regression and the sufficiency check. After the first error the decoder
        runs off the teacher-forced path, where ``p_after`` says nothing about recall.
    tie_tol : float
        Non-recalled tokens with ``0.5 < p_after <= 0.5 + tie_tol`` count as numerical
        ties, not sufficiency violations.
    cascade_unit : {"run", "entry"}
        Unit of the cascade correlation (the paper: runs of long-context memorization).
    censored : {"end", "drop"}
        Units with one event missing (no sub-threshold token, or no greedy error): place
        it at the unit length ("end") or drop the unit. Units with neither are dropped.
    orders : tuple of str
        Cell-level order parameters to fit: ``"exact_match"``, ``"frac_above"``
        (share of tokens with p_after > 0.5), ``"token_accuracy"``.
    capacity : {"rank", "n_params"}
        Capacity variable of the cell-level fit.
    beta : float, optional
        Fix the length exponent in ``x = log(capacity) - beta log(length)``; by default
        it is fitted (fixed at 0 when only one length is present).
    bootstrap : int
        Replicates for the CIs (runs for p*, units for rho, cells for the sigmoid); 0
        uses analytic intervals (delta method, Fisher z, HC1 sandwich).
    confidence_level : float
        Level of every interval.
    threshold_interval : {"profile", "bootstrap", "delta"}
        The interval of p* given as ``threshold_ci``: the profile likelihood (default),
        the run bootstrap's percentiles, or the delta method with the run-clustered
        covariance. All three are kept in ``token_fit``. On simulated data where each run
        contributes one missed token (long-context targets) only the profile interval
        held its level (docs/analyses.md); the other two are flagged there.
    rng : int, Generator or None
        Seed for the bootstrap.

    Returns
    -------
    PhaseTransitionResult
        Frozen result; parts the dataset cannot support are None with a note.

    Raises
    ------
    LawfitError
        Bad input: not a dataset, no usable cells, probabilities outside [0, 1], an
        unknown option.
    """
    ds = load(ds)
    confidence_level = V.confidence_level(confidence_level)
    _check_options(cascade_unit, censored, orders, capacity)
    if beta is not None:
        fix = "It fixes the exponent of x = log(capacity) - beta log(length); omit it to fit it."
        beta = V.non_negative_number(beta, "beta", fix)
    bootstrap = V.bootstrap_count(bootstrap)
    V.one_of(threshold_interval, "threshold_interval", ("profile", "bootstrap", "delta"))
    gen = V.random_generator(rng)
    notes: list[str] = []
    flags: list[Flag] = []
    pooled = [d for d in GROUP_DIMS if d in ds.dims and ds.sizes[d] > 1]
    if pooled:
        notes.append(
            "pooled over "
            + ", ".join(f"{d}={list(map(str, ds[d].values))}" for d in pooled)
            + "; select one group (ds.sel(...)) to analyse it alone"
        )
    opts = _TokenOptions(
        condition_on_prefix,
        tie_tol,
        cascade_unit,
        censored,
        confidence_level,
        int(bootstrap),
        gen,
        threshold_interval,
    )
    ta, thr, suff, casc, seq, bim = _token_level(ds, opts, notes, flags)
    transitions = _cell_transitions(
        ds, ta, capacity, orders, beta, confidence_level, int(bootstrap) // 5, gen, notes, flags
    )
    if bootstrap and transitions:
        notes.append(
            f"cell-level sigmoid bootstrap used {int(bootstrap) // 5} replicates "
            "(bootstrap // 5: each replicate is a nonlinear fit)"
        )
    if thr is None and not transitions and bim is None:
        raise LawfitError(
            "phase_transition found nothing it can analyse: expected token variables "
            "(p_after, greedy_correct over 'token') or cell order parameters (exact_match or "
            f"token_accuracy over rank and length); got {sorted(ds.data_vars)} with dims "
            f"{dict(ds.sizes)}. Collect these variables first."
        )
    return PhaseTransitionResult(
        token_fit=thr,
        sufficiency=suff,
        cascade=casc,
        sequence=seq,
        transitions=transitions,
        bimodality=bim,
        notes=tuple(notes),
        flags=tuple(flags),
    )


# saved files keep naming these classes as this package's, as when it was one module
saved_as(
    __name__,
    Cascade,
    CellTransition,
    PhaseTransitionResult,
    SequenceCheck,
    SufficiencyCheck,
    ThresholdFit,
)
