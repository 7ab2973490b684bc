"""Replicates of a cell: target sequences, runs and the bootstrap unit they call for.

:func:`n_targets` counts the target sequences (``data_seed`` values) with ok cells,
:func:`target_unit` picks the bootstrap unit that speaks for other content from it,
:func:`target_cluster` the column a cluster-robust test respects, and
:func:`with_runs` numbers the runs (one per ``seed``, ``data_seed`` pair) of a tidy frame.
"""

from __future__ import annotations

import pandas as pd

from lawfit.data.contract import REPLICATE_DIMS


def n_targets(ds) -> int:
    """Count the target sequences (``data_seed`` values) with at least one ok cell.

    Cells on one target sequence share its content and are not independent, so a bootstrap
    that should speak for other content resamples whole sequences once there are 2 or more
    (``unit="data_seed"``). A dataset without a ``data_seed`` dim has one sequence.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset (``status`` marks the ok cells; without it every cell counts).

    Returns
    -------
    int
        The count.
    """
    if "data_seed" not in ds.dims:
        return 1
    if "status" not in ds:
        return int(ds.sizes["data_seed"])
    ok = ds["status"] == "ok"
    others = [d for d in ok.dims if d != "data_seed"]
    return int((ok.any(others) if others else ok).sum())


def target_unit(ds) -> str:
    """Return the bootstrap unit that speaks for other content: ``"data_seed"`` or ``"cell"``.

    ``"data_seed"`` (whole target sequences) when 2 or more sequences have ok cells
    (:func:`n_targets`), else ``"cell"``.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.

    Returns
    -------
    str
        The ``unit`` to pass to :func:`lawfit.fit` and the analyses built on it.
    """
    return target_cluster(ds) or "cell"


def target_cluster(ds) -> str | None:
    """Return the column whose clusters a cluster-robust test should respect, if any.

    ``"data_seed"`` when 2 or more target sequences have ok cells (:func:`n_targets`):
    cells of one sequence share its content and err together. None otherwise.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.

    Returns
    -------
    str or None
        The ``cluster`` to pass to :func:`lawfit.compare`, :func:`lawfit.shared_exponents`
        and the other cluster-robust tests.
    """
    return "data_seed" if n_targets(ds) >= 2 else None


def with_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Add a ``run`` column: one id per (``seed``, ``data_seed``) pair, when both are there.

    A run is one training of one adapter initialisation on one target sequence; the
    cluster bootstrap resamples runs with ``unit="run"`` and target sequences with
    ``unit="data_seed"``. A frame that has a ``run`` column, or lacks either seed, is
    returned as it is (``unit="run"`` then falls back to ``seed``).
    """
    if "run" in df.columns or not set(REPLICATE_DIMS) <= set(df.columns):
        return df
    pairs = pd.MultiIndex.from_frame(df[list(REPLICATE_DIMS)])
    return df.assign(run=pd.factorize(pairs)[0])
