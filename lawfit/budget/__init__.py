"""Training budget diagnostics: is ΔL converged, and do the exponents drift with the budget.

A memorization sweep trains every cell for at most ``max_steps`` optimizer steps. Cells
that memorize (every target token above p = 0.5) or plateau stop early; the others stop
at the budget, and if their loss was still falling there, their ΔL measures the budget as
much as the adapter's capacity. The collection records each cell's training trajectory
(``loss_curve`` over ``step``), so any smaller budget can be read back exactly
(DESIGN.md §5). This package uses that to answer two questions:

- :func:`convergence` — which cells stopped at the budget while still improving (their
  ΔL gain over the last ``window`` steps, relative to ΔL);
- :func:`budget_sensitivity` — the law refitted as if the sweep had been run with
  smaller budgets (:func:`at_budget`): if the exponents still drift between the last
  budgets, the reported exponents are budget-limited and a longer budget is needed.

The modules: :mod:`~lawfit.budget.trajectories` (what every analysis reads off the sweep:
:func:`max_steps`, the cells that ran, the logging interval, the default budgets),
:mod:`~lawfit.budget.end_of_training` (:func:`with_end_of_training`: cells ended at a new
loss, shared with :func:`lawfit.at_extrapolated_budget`),
:mod:`~lawfit.budget.smaller_budgets` (:func:`at_budget`, :func:`same_cells` and
:func:`delta_by_budget`: the sweep at a smaller logged budget),
:mod:`~lawfit.budget.stopping` (:func:`convergence`, :func:`first_converged_step`,
:func:`at_convergence_stop` and :func:`with_still_improving`: why each cell stopped and
whether it was still improving), :mod:`~lawfit.budget.sensitivity`
(:func:`budget_sensitivity` and :func:`fit_columns`: the law refitted per budget and its
drift) and :mod:`~lawfit.budget.result` (:class:`BudgetSensitivity`). Every name the rest
of lawfit, the analyses and the tests use is importable from here.
"""

from __future__ import annotations

# the names marked noqa are re-exported: other modules and the tests import them from
# lawfit.budget, as when it was one module
from lawfit.budget.end_of_training import with_end_of_training  # noqa: F401
from lawfit.budget.result import BudgetSensitivity
from lawfit.budget.sensitivity import budget_sensitivity, fit_columns  # noqa: F401
from lawfit.budget.smaller_budgets import (
    MEMORIZED_ELSEWHERE,  # noqa: F401
    at_budget,
    delta_by_budget,
    same_cells,  # noqa: F401
)
from lawfit.budget.stopping import (
    DEFAULT_WINDOW_SHARE,  # noqa: F401
    at_convergence_stop,
    convergence,
    first_converged_step,
    with_still_improving,  # noqa: F401
)
from lawfit.budget.trajectories import _ok, _require_curves, max_steps  # noqa: F401
from lawfit.protocol import saved_as

__all__ = [
    "BudgetSensitivity",
    "at_budget",
    "at_convergence_stop",
    "budget_sensitivity",
    "convergence",
    "delta_by_budget",
    "first_converged_step",
    "max_steps",
]

# saved files keep naming the result as this package's, as when it was one module
saved_as(__name__, BudgetSensitivity)
