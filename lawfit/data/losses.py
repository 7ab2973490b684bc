"""The physical checks of the losses, the cells they set aside and the memorized cells.

:func:`check_losses` raises on an impossible loss of a usable cell,
:func:`_exclude_loss_increase` sets aside the cells whose training raised the loss (with
the reason ``LOSS_INCREASE``), :func:`exclusion_flags` turns those exclusions into flags,
and :func:`memorized_mask` marks the cells with ``loss_after`` at or below a threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lawfit.data.contract import LN2
from lawfit.errors import LawfitError

#: Reason recorded for an ``ok`` cell whose training raised the loss.
LOSS_INCREASE = "loss_reduction < 0: training raised the loss"


_LOSS_ATOL = 1e-5  # nats/token; float32 storage of losses of order 10 is good to ~1e-6


_LOSS_RTOL = 1e-5


def _examples(frame: pd.DataFrame, mask, cols) -> list[dict]:
    cols = [c for c in dict.fromkeys(("rank", "length", "seed", *cols)) if c in frame.columns]
    return frame.loc[mask, cols].head(3).to_dict("records")


def check_losses(frame: pd.DataFrame) -> None:
    """Physical sanity of the losses of usable cells; raise on an impossible value.

    Cross-entropies are >= 0, so ``loss_before`` and ``loss_after`` must be finite
    and >= 0 where present, ``loss_reduction`` must equal ``loss_before -
    loss_after`` (up to float32 rounding) and cannot exceed ``loss_before``.
    """
    if "loss_before" in frame.columns:
        v = frame["loss_before"].to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            raise LawfitError(
                f"{int(bad.sum())} cell(s) with status 'ok' have loss_before NaN, inf or < 0, "
                f"e.g. {_examples(frame, bad, ['loss_before'])}; a cross-entropy is finite and "
                ">= 0. Mark failed cells with status 'failed' or fix the data."
            )
    if "loss_after" in frame.columns:
        v = frame["loss_after"].to_numpy(float)
        bad = v < 0
        if bad.any():
            raise LawfitError(
                f"{int(bad.sum())} cell(s) have loss_after < 0, e.g. "
                f"{_examples(frame, bad, ['loss_after'])}; a cross-entropy is >= 0. Fix the "
                "data (were log-probabilities stored with the wrong sign?)."
            )
    if "loss_reduction" not in frame.columns or "loss_before" not in frame.columns:
        return
    dl = frame["loss_reduction"].to_numpy(float)
    lb = frame["loss_before"].to_numpy(float)
    if "loss_after" in frame.columns:
        la = frame["loss_after"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(la) & ~np.isclose(dl, lb - la, rtol=_LOSS_RTOL, atol=_LOSS_ATOL)
        if bad.any():
            raise LawfitError(
                f"{int(bad.sum())} cell(s) have loss_reduction != loss_before - loss_after, "
                f"e.g. {_examples(frame, bad, ['loss_before', 'loss_after', 'loss_reduction'])}"
                ". Expected ΔL = before - after (nats/token). Recompute it: "
                "ds['loss_reduction'] = ds.loss_before - ds.loss_after."
            )
    bad = dl > lb + _LOSS_ATOL + _LOSS_RTOL * np.abs(lb)
    if bad.any():
        raise LawfitError(
            f"{int(bad.sum())} cell(s) have loss_reduction > loss_before (loss_after would be "
            f"< 0), e.g. {_examples(frame, bad, ['loss_before', 'loss_reduction'])}. Expected "
            "ΔL <= loss_before. Fix the data."
        )


def _exclude_loss_increase(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set aside usable cells with ΔL < 0 (training made the loss worse), with the reason."""
    if "loss_reduction" not in frame.columns:
        return frame, frame.iloc[:0].assign(reason=[])
    neg = frame["loss_reduction"].to_numpy(float) < 0
    lost = frame.loc[neg].copy()
    lost["reason"] = LOSS_INCREASE
    kept = frame.loc[~neg].reset_index(drop=True)
    if kept.shape[0] == 0:
        raise LawfitError(
            f"every usable cell has loss_reduction < 0 (training raised the loss), e.g. "
            f"{_examples(frame, neg, ['loss_reduction'])}. Expected ΔL >= 0 after training. "
            "Check the collection (learning rate, grad_clip > 0) and re-run those cells."
        )
    return kept, lost


def exclusion_flags(exclusions: pd.DataFrame) -> list[str]:
    """Return flags for cells that :func:`as_frame` set aside as physically implausible."""
    if "reason" not in exclusions.columns:
        return []
    n = int((exclusions["reason"] == LOSS_INCREASE).sum())
    if not n:
        return []
    return [
        f"{n} cell(s) excluded with loss_reduction < 0 (training raised the loss; check "
        "the collection): see result.exclusions"
    ]


def memorized_threshold(exclude) -> float | None:
    """Return the loss_after threshold of an exclusion rule (None: exclude nothing).

    Parameters
    ----------
    exclude : {"memorized"}, float or None
        ``"memorized"`` is the paper's rule, loss_after <= ln 2 nats/token (a token's
        probability above one half on average); a number is a threshold of its own.

    Returns
    -------
    float or None
    """
    if exclude is None:
        return None
    return LN2 if exclude == "memorized" else float(exclude)


def memorized_mask(frame: pd.DataFrame, threshold: float, where: str = "") -> np.ndarray:
    """Cells with ``loss_after <= threshold``; raise where loss_after is NaN.

    A NaN would silently compare False and let a memorized cell into the fit.
    """
    la = frame["loss_after"].to_numpy(float)
    bad = ~np.isfinite(la)
    if bad.any():
        raise LawfitError(
            f"{where}{int(bad.sum())} usable cell(s) have loss_after NaN/inf, e.g. "
            f"{_examples(frame, bad, ['loss_after', 'loss_reduction'])}; the memorized-cell "
            "exclusion needs it. Fill loss_after (= loss_before - loss_reduction), mark those "
            "cells failed, or pass exclude=None to fit every cell."
        )
    return la <= threshold
