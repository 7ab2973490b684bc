"""The public test, :func:`shared_exponents`: its options, its groups, and the result.

It checks the options, labels the usable cells with their group from the values of ``by``,
and hands them to :func:`lawfit.shared.comparison.compare_shared`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit.data import GROUP_DIMS, as_frame, load_data
from lawfit.errors import LawfitError
from lawfit.forms import Form, get_form
from lawfit.shared.comparison import compare_shared
from lawfit.shared.joint_form import GROUP
from lawfit.shared.result import SharedExponents


def shared_exponents(
    data,
    by: str | Sequence[str] = "model",
    *,
    form: str | Form = "power_law",
    shared: Sequence[str] = ("alpha", "beta"),
    exclude: str | float | None = "memorized",
    space: str = "auto",
    bootstrap: int = 0,
    unit: str = "cell",
    confidence_level: float = 0.95,
    significance: float = 0.05,
    rng: int | np.random.Generator | None = None,
    cluster: str | None = None,
) -> SharedExponents:
    """Fit the law per group and test whether the groups share its exponents.

    Parameters
    ----------
    data : xarray.Dataset, pandas.DataFrame or path
        Cells of the data contract whose grouping dims other than ``by`` have one value
        (select them first, e.g. ``ds.sel(task="long_context")``).
    by : str or sequence of str
        Grouping dims whose values are the groups (default ``"model"``: model families).
    form : str or Form
        The law (default the paper's power law C·r^α·ℓ^(−β) + b). Its capacity input is
        read per group, so model families whose adapters differ in parameters per rank
        still compare exponents: the constant factor goes into each group's own C.
    shared : sequence of str
        Parameters common to all groups in the restricted law (default the exponents);
        the others are fitted per group.
    exclude : {"memorized"} or float or None
        Passed to :func:`lawfit.fit`; it depends on the data only, so every law sees the
        same cells.
    space : {"auto", "linear", "log"}
        Fit ΔL or log ΔL. The test assumes one error variance on that scale: with
        multiplicative noise fit in ``"log"``, or the test rejects too often (flagged).
        ``"auto"`` (default) chooses one scale for every law by :func:`lawfit.fit`'s rule
        (:func:`lawfit.space.choose_space`) applied to the shared law, and notes it.
    bootstrap : int
        Bootstrap replicates of every law (intervals of ``exponents``).
    unit : str
        Resampling unit of the bootstrap, as in :func:`lawfit.fit`.
    confidence_level : float
        Level of the intervals.
    significance : float
        Level of the likelihood-ratio test.
    rng : int or numpy.random.Generator, optional
        Seed of the bootstrap.
    cluster : str, optional
        Give the intervals as cluster-robust ones over this column (``"data_seed"``:
        target sequences; CR2 with Bell-McCaffrey dof, :mod:`lawfit.robust`), and decide
        the verdict by the cluster-robust Wald test (:mod:`lawfit.cluster_wald`) when the
        data hold more clusters than restrictions; the F test treats cells as independent.

    Returns
    -------
    SharedExponents
        Parameters per group, the shared law, and their comparison.

    Raises
    ------
    LawfitError
        Bad options, fewer than two groups in the data, or no group whose law can be
        fitted.

    Examples
    --------
    >>> from lawfit.testing import synthetic_dataset
    >>> import xarray as xr
    >>> a = synthetic_dataset(alpha=0.6, beta=0.5, noise=0.01, rng=0)
    >>> b = synthetic_dataset(alpha=0.6, beta=0.5, C=0.2, noise=0.01, rng=1)
    >>> ds = xr.concat([a.expand_dims(model=["a"]), b.expand_dims(model=["b"])], "model")
    >>> shared_exponents(ds, by="model").verdict
    'shared'
    """
    base, shared, significance = _check_options(form, shared, significance, space)
    by = (by,) if isinstance(by, str) else tuple(by)
    if not by:
        raise LawfitError("by must name at least one grouping dim (e.g. 'model'); got none.")
    frame = _group_frame(load_data(data), by, base)
    kw = fit_options(exclude, space, bootstrap, unit, confidence_level, rng)
    out = compare_shared(
        frame,
        base,
        shared=shared,
        kw=kw,
        significance=significance,
        cluster=cluster,
        drop=by,
    )
    return SharedExponents(by=by, shared=shared, significance=significance, **out)


def fit_options(exclude, space, bootstrap, unit, confidence_level, rng) -> dict:
    """Return the :func:`lawfit.fit` options every law of a comparison is fitted with."""
    return dict(
        exclude=exclude,
        space=space,
        bootstrap=bootstrap,
        unit=unit,
        confidence_level=confidence_level,
        rng=V.random_generator(rng),
        profile=False,
    )


def _check_options(
    form, shared, significance, space="linear"
) -> tuple[Form, tuple[str, ...], float]:
    """Validate the form, the shared parameters, the fit scale and the test's level."""
    if space not in ("auto", "linear", "log"):
        raise LawfitError(
            f"space must be 'auto', 'linear' or 'log' (one scale for every law the test "
            f"compares); got {space!r}. With multiplicative noise use 'log'."
        )
    significance = V.significance_level(significance)
    base = get_form(form)
    shared = tuple(shared)
    bad = [p for p in shared if p not in base.params]
    if not shared or bad or len(set(shared)) == len(base.params):
        raise LawfitError(
            f"shared must name some, not all, of the form's parameters {base.params}; got {shared}."
        )
    return base, shared, significance


def _group_frame(data, by: tuple[str, ...], base: Form) -> pd.DataFrame:
    """Usable cells with a ``group`` label from the values of ``by``; 2+ groups required.

    Another grouping dim may vary with the groups, one value per group: two model families
    with their adapters at different layers (``mlp_block@20`` and ``mlp_block@12``).
    """
    extra = [d for d in _varying_dims(data) if d not in by]
    frame, _ = as_frame(data, variables=("loss_reduction",), by=[*by, *extra], inputs=base.inputs)
    labels = frame[list(by)].astype(str).agg("/".join, axis=1)
    mixed = [d for d in extra if frame.groupby(labels)[d].nunique().max() > 1]
    if mixed:
        raise LawfitError(
            f"within a group of {list(by)} the cells differ in {mixed}; one law per group "
            f"needs one setting each. Select one first, e.g. ds.sel({mixed[0]}=...), or add "
            f"{mixed[0]!r} to by."
        )
    if labels.nunique() < 2:
        raise LawfitError(
            f"a test of shared exponents needs 2+ groups; the data's usable cells have "
            f"{sorted(labels.unique())} over {list(by)}. Add the other group's cells "
            "(two models' sweeps: `collect combine a.nc b.nc -o both.nc`) or group by another dim."
        )
    return frame.drop(columns=extra).assign(**{GROUP: labels.to_numpy()})


def _varying_dims(data) -> list[str]:
    """Return the grouping dims (model, task, ..., modules) with 2+ values in the data."""
    if isinstance(data, pd.DataFrame):
        return [d for d in GROUP_DIMS if d in data.columns and data[d].nunique() > 1]
    return [d for d in GROUP_DIMS if d in data.dims and data.sizes[d] > 1]
