"""The one place where :mod:`lawfit` checks the *options* of its public functions.

Every public entry point calls these validators once, before any work, so each
option is checked with one rule and one wording: ``<name> must be <expected>; got
<value>. <how to fix>`` (raised as :class:`lawfit.errors.LawfitError`). Data itself
is checked by :mod:`lawfit.data`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence

import numpy as np

from lawfit.errors import LawfitError

__all__ = [
    "fail",
    "confidence_level",
    "significance_level",
    "bootstrap_count",
    "random_generator",
    "search_range",
    "exclude_rule",
    "one_of",
    "positive_number",
    "positive_int",
    "known_columns",
    "bootstrap_chunk",
    "MEMORY_BUDGET_ENV",
]

#: Environment variable that caps the bytes a bootstrap may allocate at once.
MEMORY_BUDGET_ENV = "LAWFIT_MEMORY_BUDGET"
# bytes per replicate and observation (and per replicate and parameter) of the batched
# bootstrap's working arrays: an upper bound. tracemalloc peaks of lawfit.fit(bootstrap=500)
# on 168 cells were 2.2x (Huber, the (R, n) weights path) to 17x (least squares, collapsed)
# below it; tests/lawfit/test_validation.py::test_bootstrap_memory_estimate_bounds_the_peak
_BYTES_PER_REPLICATE_POINT = 8 * 64
_BYTES_PER_REPLICATE_PARAM = 8 * 16


def fail(name: str, expected: str, got, fix: str = "") -> LawfitError:
    """Build the error of a bad option, in the package's one wording.

    Parameters
    ----------
    name : str
        Name of the option as the user wrote it (e.g. ``"bootstrap"``).
    expected : str
        What is allowed (e.g. ``"an int >= 2, or 0 for none"``).
    got : object
        The value received (shown with ``repr``).
    fix : str, optional
        How to fix it.

    Returns
    -------
    LawfitError
        The error, to be raised by the caller.
    """
    text = f"{name} must be {expected}; got {got!r}"
    plain = str | numbers.Number | tuple | list | dict | type(None)
    if isinstance(got, bool) or not isinstance(got, plain):
        text += f" ({type(got).__name__})"
    return LawfitError(text + "." + (f" {fix}" if fix else ""))


def _real(value, name: str, expected: str, fix: str) -> float:
    """``value`` as a finite float; bools, strings and NaN are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, expected, value, fix)
    out = float(value)
    if not math.isfinite(out):
        raise fail(name, expected, value, fix)
    return out


def _open_unit(value, name: str, fix: str) -> float:
    out = _real(value, name, "a number strictly between 0 and 1", fix)
    if not 0.0 < out < 1.0:
        raise fail(name, "a number strictly between 0 and 1", value, fix)
    return out


def confidence_level(value, name: str = "confidence_level") -> float:
    """Check a confidence level: a number in (0, 1), e.g. 0.95."""
    return _open_unit(value, name, "Pass e.g. 0.95 for 95 % intervals.")


def significance_level(value, name: str = "significance") -> float:
    """Check a significance level of a test: a number in (0, 1), e.g. 0.05."""
    return _open_unit(value, name, "Pass e.g. 0.05 (a 5 % test).")


def bootstrap_count(value, name: str = "bootstrap") -> int:
    """Check a number of bootstrap replicates: 0 (none) or an int >= 2.

    One replicate cannot give an interval, and a bool or a float (``True``, ``2.7``)
    is refused rather than silently truncated.
    """
    expected = "an int >= 2 (replicates), or 0 for none"
    fix = "Pass e.g. 1000."
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise fail(name, expected, value, fix)
    out = int(value)
    if out < 0 or out == 1:
        raise fail(name, expected, value, fix)
    return out


def random_generator(value, name: str = "rng") -> np.random.Generator:
    """Check a seed and return a :class:`numpy.random.Generator`.

    Accepts ``None`` (fresh entropy), a non-negative int or a Generator.
    """
    if isinstance(value, np.random.Generator):
        return value
    if value is None:
        return np.random.default_rng()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise fail(
            name,
            "None, an int >= 0 or a numpy.random.Generator",
            value,
            "Pass e.g. rng=0 for reproducible results.",
        )
    return np.random.default_rng(int(value))


def search_range(value, name: str = "search") -> tuple[float, float]:
    """Check a search interval ``(low, high)``: finite, ``0 < low < high``."""
    expected = "a pair (low, high) of finite numbers with 0 < low < high"
    fix = "Pass e.g. (1e-3, 1e3)."
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray) or len(value) != 2:
        raise fail(name, expected, value, fix)
    lo = _real(value[0], name, expected, fix)
    hi = _real(value[1], name, expected, fix)
    if not 0 < lo < hi:
        if 0 < hi < lo:
            fix = f"The bounds are reversed: pass ({value[1]!r}, {value[0]!r})."
        raise fail(name, expected, tuple(value), fix)
    return lo, hi


def exclude_rule(value, name: str = "exclude") -> str | float | None:
    """Check the memorized-cell exclusion: ``"memorized"``, a finite threshold or None."""
    if value is None or (isinstance(value, str) and value == "memorized"):
        return value
    expected = "'memorized', a finite threshold on loss_after (nats/token), or None"
    fix = "Pass exclude='memorized' (loss_after <= ln 2, the paper's rule) or exclude=None."
    return _real(value, name, expected, fix)


def one_of(value, name: str, options: Iterable):
    """Check that ``value`` is one of ``options``; return it."""
    options = tuple(options)
    try:
        ok = value in options
    except TypeError:  # unhashable or incomparable
        ok = False
    if not ok:
        raise fail(name, "one of " + ", ".join(repr(o) for o in options), value)
    return value


def positive_number(value, name: str, fix: str = "") -> float:
    """Check a finite number > 0."""
    out = _real(value, name, "a finite number > 0", fix)
    if out <= 0:
        raise fail(name, "a finite number > 0", value, fix)
    return out


def non_negative_number(value, name: str, fix: str = "") -> float:
    """Check a finite number >= 0."""
    out = _real(value, name, "a finite number >= 0", fix)
    if out < 0:
        raise fail(name, "a finite number >= 0", value, fix)
    return out


def positive_int(value, name: str, fix: str = "") -> int:
    """Check an int >= 1 (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise fail(name, "an int >= 1", value, fix)
    return int(value)


def known_columns(names, available, name: str) -> list[str]:
    """Check that every name in ``names`` is a column/dim of the data, before fitting.

    Parameters
    ----------
    names : str or iterable of str or None
        Column names the option refers to.
    available : iterable of str
        Columns (or dims and variables) the data has.
    name : str
        The option's name, for the message.

    Returns
    -------
    list of str
        ``names`` as a list (empty for None).
    """
    if names is None:
        return []
    names = [names] if isinstance(names, str) else list(names)
    available = [str(a) for a in available]
    missing = [n for n in names if n not in available]
    if missing:
        raise fail(
            name,
            f"column(s) of the data, among {sorted(available)}",
            missing[0] if len(missing) == 1 else missing,
            "Check the spelling or add the column.",
        )
    return names


def _memory_budget() -> int:
    """Bytes a bootstrap may use at once: $LAWFIT_MEMORY_BUDGET, else half the free RAM."""
    env = os.environ.get(MEMORY_BUDGET_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise fail(MEMORY_BUDGET_ENV, "a number of bytes", env) from None
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        free = 4 * 2**30
    return max(free // 2, 2**26)


def bootstrap_chunk(n_boot: int, n_obs: int, n_params: int, *, chunkable: bool = True) -> int:
    """Replicates per batch so that the bootstrap fits in memory; refuse if it cannot.

    The working arrays of a batch grow with replicates x observations; they are
    chunked. The results (one parameter vector per replicate) must be held whole.

    Parameters
    ----------
    n_boot : int
        Replicates requested.
    n_obs : int
        Observations (cells) resampled.
    n_params : int
        Parameters of the law.
    chunkable : bool
        Whether the caller can run the replicates in batches (the residual and wild
        bootstraps build all their responses at once: they must fit whole).

    Returns
    -------
    int
        Replicates per batch (``n_boot`` when everything fits at once).

    Raises
    ------
    LawfitError
        When even the results alone exceed the memory budget.
    """
    if n_boot <= 0:
        return 0
    budget = _memory_budget()
    result_bytes = n_boot * n_params * _BYTES_PER_REPLICATE_PARAM
    per_replicate = n_obs * _BYTES_PER_REPLICATE_POINT + n_params * _BYTES_PER_REPLICATE_PARAM
    if result_bytes + per_replicate > budget:
        most = max(2, int(budget // (2 * n_params * _BYTES_PER_REPLICATE_PARAM)))
        raise fail(
            "bootstrap",
            f"a count whose results fit in memory (at most about {most:,} "
            f"here: {budget / 2**30:.2g} GiB budget)",
            n_boot,
            f"Use fewer replicates, or raise ${MEMORY_BUDGET_ENV} (bytes).",
        )
    chunk = int(max(1, min(n_boot, (budget - result_bytes) // per_replicate)))
    if chunk < n_boot and not chunkable:
        raise fail(
            "bootstrap",
            f"a count whose working arrays fit in memory here (about {chunk:,} for this "
            f"resampling unit: {budget / 2**30:.2g} GiB budget)",
            n_boot,
            f"Use fewer replicates, unit='cell' (run in batches), or raise ${MEMORY_BUDGET_ENV}.",
        )
    return chunk
