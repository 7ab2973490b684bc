"""The cells of a tidy DataFrame, one row each, after the checks of its columns.

:func:`_from_frame` checks a tidy :class:`pandas.DataFrame` for
:func:`~lawfit.data.as_frame`: its rows, its columns, its grouping columns and, with
:func:`_check_unique_cells`, that no cell appears twice.
"""

from __future__ import annotations

import pandas as pd

from lawfit.data.contract import GROUP_DIMS, REPLICATE_DIMS
from lawfit.data.replicates import with_runs
from lawfit.errors import LawfitError


def _from_frame(
    data: pd.DataFrame, variables: list[str], by: list[str], inputs: tuple[str, ...]
) -> pd.DataFrame:
    """Check a tidy frame's columns, groups and cells; return a copy with ``run``.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per cell (an older ``method`` column is renamed ``objective``).
    variables : list of str
        Required variable columns.
    by : list of str
        Grouping columns named by the caller.
    inputs : tuple of str
        Input columns of the form.

    Returns
    -------
    pandas.DataFrame
        The rows with a fresh index and the ``run`` column of :func:`with_runs`.

    Raises
    ------
    LawfitError
        Empty frame, missing columns, unnamed grouping columns with several values,
        duplicated cells.
    """
    if "method" in data.columns and "objective" not in data.columns:
        data = data.rename(columns={"method": "objective"})
    if data.shape[0] == 0:
        raise LawfitError(
            "the DataFrame is empty (0 rows); expected one row per cell with "
            f"columns {list(inputs) + variables}."
        )
    missing = [c for c in list(inputs) + variables + by if c not in data.columns]
    if missing:
        raise LawfitError(
            f"the DataFrame lacks column(s) {missing}; it has {list(data.columns)}. "
            f"Expected a tidy frame with columns {list(inputs) + variables}."
        )
    df = with_runs(data.reset_index(drop=True).copy())
    multi = [
        c for c in GROUP_DIMS if c in df.columns and c not in by and df[c].nunique(dropna=False) > 1
    ]
    if multi:
        raise LawfitError(
            f"the DataFrame has grouping column(s) with more than one value not named in "
            f"by=: {multi}. Pass by={multi!r} to fit each group, or filter the rows first."
        )
    _check_unique_cells(df, inputs, by)
    return df


def _check_unique_cells(df: pd.DataFrame, inputs: tuple[str, ...], by: list[str]) -> None:
    """Raise when two rows share inputs, replicate, run and group.

    Parameters
    ----------
    df : pandas.DataFrame
        Tidy frame.
    inputs : tuple of str
        Input columns.
    by : list of str
        Grouping columns.

    Raises
    ------
    LawfitError
        Duplicated cells, with up to three examples.
    """
    key = list(dict.fromkeys(c for c in [*inputs, *REPLICATE_DIMS, "run", *by] if c in df.columns))
    dup = df.duplicated(subset=key, keep=False)
    if dup.any():
        ex = df.loc[dup, key].head(3).to_dict("records")
        raise LawfitError(
            f"duplicated cells: {int(dup.sum())} rows share the same {key}, e.g. {ex}. "
            "Each cell must appear once; add a 'seed' (initialisation) or 'data_seed' "
            "(target sequence) column for replicates."
        )
