"""Model selection: fit alternative scaling forms on the same points and rank them.

:func:`compare` fits every candidate form (see :mod:`lawfit.forms_extra`) on exactly the
same cells, then ranks them by AICc (or BIC) with Akaike weights, tests nested pairs by
likelihood ratio, non-nested pairs by Vuong's test on pointwise log-likelihoods, and
measures held-out extrapolation error (fit on the smaller ranks / shorter lengths,
predict the largest). All likelihoods are Gaussian on the fit scale (with the Jacobian
of the log transform when ``space="log"``, so that both scales compare), counting the
error variance as a parameter.

The modules: :mod:`~lawfit.compare.statistics` (pointwise log-likelihoods, Akaike
weights, the likelihood-ratio and Vuong tests), :mod:`~lawfit.compare.result`
(:class:`ComparisonResult` and the columns it shows), :mod:`~lawfit.compare.candidates`
(the shared data, the candidate forms, their fits and held-out errors) and
:mod:`~lawfit.compare.comparison` (:func:`compare` and the tables of its result).
"""

from __future__ import annotations

# the names marked noqa are re-exported: other modules import them from lawfit.compare,
# as when it was one module
from lawfit.compare.candidates import (
    _heteroscedasticity,  # noqa: F401
    _quiet_fit,  # noqa: F401
)
from lawfit.compare.comparison import compare
from lawfit.compare.result import (
    SHOWN_COLUMNS,  # noqa: F401
    ComparisonResult,
)
from lawfit.compare.statistics import (
    akaike_weights,
    likelihood_ratio_test,
    pointwise_loglik,
    vuong_test,
)
from lawfit.protocol import saved_as

__all__ = [
    "ComparisonResult",
    "akaike_weights",
    "compare",
    "likelihood_ratio_test",
    "pointwise_loglik",
    "vuong_test",
]

# saved files keep naming this class as this package's, as when it was one module
saved_as(__name__, ComparisonResult)
