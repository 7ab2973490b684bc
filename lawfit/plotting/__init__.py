"""Publication figures for lawfit results and contract datasets.

Every function takes results (``FitResult``, ``ComparisonResult``,
``PhaseTransitionResult``, ``BitsResult``, ``BudgetSensitivity``) or a contract dataset,
accepts an optional ``ax=``/``axes=`` and returns the matplotlib Figure, drawn in one
house style (:mod:`lawfit.plotting.style`: 3.3 in single column / 7 in double column,
7-8 pt fonts, Okabe-Ito palette). matplotlib is imported only when a function runs; without it
they raise :class:`lawfit.LawfitError` with the install hint ``pip install
'lawfit[plot]'``. The catalogue is in ``docs/figures.md``.
"""

from lawfit.plotting.budget import plot_budget_sensitivity
from lawfit.plotting.capacity import plot_bits_per_parameter, plot_capacity
from lawfit.plotting.compare import plot_model_comparison
from lawfit.plotting.law import (
    plot_law_curves,
    plot_loss_recall,
    plot_predicted_vs_measured,
    plot_sequence_offsets,
)
from lawfit.plotting.memft import plot_memft_paired, plot_methods, plot_trajectories
from lawfit.plotting.style import (
    DOUBLE,
    SINGLE,
    annotate_provenance,
    new_figure,
    paper_style,
    save_figure,
)
from lawfit.plotting.transfer import plot_transfer
from lawfit.plotting.transition import (
    plot_cascade,
    plot_phase_diagram,
    plot_recall_curve,
    plot_token_histograms,
)

__all__ = [
    "plot_law_curves",
    "plot_predicted_vs_measured",
    "plot_sequence_offsets",
    "plot_loss_recall",
    "plot_token_histograms",
    "plot_recall_curve",
    "plot_phase_diagram",
    "plot_cascade",
    "plot_memft_paired",
    "plot_methods",
    "plot_trajectories",
    "plot_model_comparison",
    "plot_capacity",
    "plot_bits_per_parameter",
    "plot_budget_sensitivity",
    "plot_transfer",
    "paper_style",
    "new_figure",
    "save_figure",
    "annotate_provenance",
    "SINGLE",
    "DOUBLE",
]
