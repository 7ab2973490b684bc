"""Do groups of cells share the law's exponents? Model families, tasks, memory carriers.

The question of issue 10 (two model families: do SmolLM2 and Gemma obey one law?) and of
issue 15 (do LoRA, memory tokens and a KV memory?) is the same nested-model test:

- the **separate** laws: the form fitted once per group (every parameter its own);
- the **shared** law: one fit over all groups in which the parameters named by ``shared``
  (default the exponents α and β) are common and the others (C, b) stay per group;
- their comparison by AICc, BIC and a likelihood-ratio test (χ² and F forms; the verdict
  uses the F form, which keeps its level with few cells where the χ² form rejects too
  often), with one Gaussian error variance common to all groups on the fit's scale.

:func:`shared_exponents` asks it of any grouping dims of a dataset (``by="model"``);
:func:`lawfit.carrier_law` asks it of the carriers of one setting, against their size.
Both are built from :func:`compare_shared`.

The modules: :mod:`~lawfit.shared.driver` (:func:`shared_exponents`: its options and
groups), :mod:`~lawfit.shared.comparison` (:func:`compare_shared`: the laws per group, the
shared law, the verdict and the table of parameters), :mod:`~lawfit.shared.joint_form`
(:func:`shared_form`: the shared law as one form over all groups),
:mod:`~lawfit.shared.likelihood_ratio` (AICc, BIC and the likelihood-ratio test, χ² and F),
:mod:`~lawfit.shared.cluster_robust` (with ``cluster=``: the pairwise differences and the
cluster-robust Wald test) and :mod:`~lawfit.shared.result` (:class:`SharedExponents` and
its rendering).
"""

from __future__ import annotations

from lawfit.protocol import saved_as

# the names marked noqa are re-exported: other modules import them from lawfit.shared, as
# when it was one module
from lawfit.shared.comparison import compare_shared
from lawfit.shared.driver import (
    _check_options,  # noqa: F401
    fit_options,  # noqa: F401
    shared_exponents,
)
from lawfit.shared.joint_form import (
    GROUP,  # noqa: F401
    GROUP_INDEX,  # noqa: F401
    _PerGroup,
    shared_form,  # noqa: F401
)
from lawfit.shared.result import (
    F_TEST,  # noqa: F401
    ROBUST_TEST,  # noqa: F401
    SharedExponents,
    TableResult,  # noqa: F401
)

__all__ = ["SharedExponents", "shared_exponents", "compare_shared"]

# saved files keep naming these classes as this package's, as when it was one module: the
# result, and the shared law's function that a saved law rebuilds
saved_as(__name__, SharedExponents, _PerGroup)
