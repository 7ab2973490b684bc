"""Exclusions and checks on the cells of one group before they are fitted.

:func:`_exclude_memorized` drops the already-memorized cells, :func:`_combined_exclusions`
stacks them with the cells validation excluded, and :func:`_check_log_response` refuses
a response <= 0 in log space.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lawfit.data import memorized_mask, memorized_threshold
from lawfit.errors import LawfitError


def _exclude_memorized(frame, exclude, where):
    if exclude is None:
        return frame, pd.DataFrame(columns=list(frame.columns) + ["reason"])
    thr = memorized_threshold(exclude)
    if "loss_after" not in frame.columns:
        warnings.warn(
            f"{where}exclude={exclude!r} needs 'loss_after', which the data lacks; "
            "no memorized cells were excluded. Pass exclude=None to silence this.",
            UserWarning,
            stacklevel=4,
        )
        return frame, pd.DataFrame(columns=list(frame.columns) + ["reason"])
    mem = memorized_mask(frame, thr, where)
    dropped = frame.loc[mem].copy()
    dropped["reason"] = f"memorized (loss_after <= {thr:.4g})"
    kept = frame.loc[~mem].reset_index(drop=True)
    if kept.shape[0] == 0:
        raise LawfitError(
            f"{where}every cell is memorized (loss_after <= {thr:.4g}); nothing "
            "left to fit. Use exclude=None to fit all cells, or add harder cells."
        )
    return kept, dropped


def _combined_exclusions(excl: pd.DataFrame, mem: pd.DataFrame) -> pd.DataFrame:
    """Stack the cells excluded by validation and as memorized (an empty frame if none).

    Parameters
    ----------
    excl : pandas.DataFrame
        Cells :func:`lawfit.data.as_frame` excluded.
    mem : pandas.DataFrame
        Cells excluded as memorized.

    Returns
    -------
    pandas.DataFrame
        All exclusions with their ``reason``.
    """
    if not (len(excl) or len(mem)):
        return pd.DataFrame(columns=["reason"])
    return pd.concat([e for e in (excl, mem) if len(e)], ignore_index=True)


def _check_log_response(
    frame: pd.DataFrame, y: np.ndarray, inputs: Sequence[str], response: str, space: str, where: str
) -> None:
    """Raise when ``space="log"`` meets a response <= 0.

    Parameters
    ----------
    frame : pandas.DataFrame
        Cells to fit.
    y : numpy.ndarray
        Their response.
    inputs : sequence of str
        Input columns (shown in the examples).
    response : str
        Response column.
    space : str
        Fit space asked for.
    where : str
        Prefix naming the group, for the message.

    Raises
    ------
    LawfitError
        A cell with response <= 0 in log space, with up to three examples.
    """
    if space == "log" and np.any(y <= 0):
        bad = frame.loc[y <= 0, list(inputs) + [response]].head(3).to_dict("records")
        raise LawfitError(
            f"{where}space='log' needs {response} > 0 in every cell; {int(np.sum(y <= 0))} "
            f"cell(s) are <= 0, e.g. {bad}. Use space='linear' or drop those cells."
        )
