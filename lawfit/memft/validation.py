"""Predicted MemFT savings checked against measured cells.

:func:`_validate` builds the validation table of :func:`~lawfit.memft_savings`: the
seed means of the measured MemFT cells, the paired SFT cells at the same rank and
length, each law's prediction with its interval, a MemFT law refitted without its
longest length (out-of-sample), and the rank SFT needs by its law to reach the ΔL MemFT
measured (``saving_measured``). :func:`_validation_notes` says how to read the table.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from lawfit._tokens import ok_mask
from lawfit.data import memorized_threshold
from lawfit.errors import LawfitError
from lawfit.memft._common import _SPACE, xr_mask
from lawfit.result import FitResult


def _validation_notes(validation) -> list[str]:
    """Say what the validation table holds and how to read it."""
    if not len(validation):
        return []
    n = len(validation)
    out = [
        f"validation: {n} measured MemFT cell(s) (seed means); gain_measured = MemFT − SFT "
        "measured ΔL at the same cell; saving_measured = 1 − rank / sft_equivalent_rank "
        "compares with the predicted saving; dL_memft_law is in-sample (the law was fitted on "
        "them); dL_memft_law_heldout predicts the longest MemFT length from a law fitted "
        "without it (out-of-sample)" + (" — few cells, read with care" if n < 8 else "")
    ]
    if "memorized" in validation and validation["memorized"].any():
        out.append(
            "memorized MemFT cells (loss_after <= ln 2) are excluded from the laws "
            "(ΔL saturates there); they are listed in validation with memorized=True"
        )
    return out


def _cell_mean(sub, var, okm, other, name):
    """Seed-mean of ``var`` over ok cells as a frame with columns rank, length, ``name``."""
    v = sub[var].where(okm)
    v = v.mean(other, skipna=True) if other else v
    return v.to_dataframe(name=name).reset_index()[["rank", "length", name]]


def _sft_measured(ds, sub) -> pd.DataFrame:
    """Means of the SFT cells paired with one MemFT objective's: ΔL, exact match and steps.

    Only SFT cells whose MemFT counterpart (same rank, length, seed and target sequence)
    is ok enter the mean, so that a MemFT cell is compared with SFT on the same content:
    target sequences differ by more than MemFT's effect (up to 0.7 nats/token at one
    rank and length), and a mean over all of SFT's sequences would mix that in.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset with an ``objective`` dim holding ``"sft"``.
    sub : xarray.Dataset
        The MemFT objective's cells (``ds.sel(objective=...)``).

    Returns
    -------
    pandas.DataFrame
        ``rank, length, dL_sft_measured, n_paired`` (+ ``exact_match_sft``, ``steps_sft``);
        ``n_paired`` counts the paired cells, 0 (and NaN means) where SFT has none.
    """
    sft_ds = ds.sel(objective="sft")
    dims = tuple(sft_ds["loss_reduction"].dims)
    paired = ok_mask(sft_ds, dims) & ok_mask(sub, tuple(sub["loss_reduction"].dims))
    other = [d for d in dims if d not in ("rank", "length")]
    sft_mean = _cell_mean(sft_ds, "loss_reduction", paired, other, "dL_sft_measured")
    count = xr_mask(sft_ds, paired)
    count = count.sum(other) if other else count.astype(int)
    sft_mean = sft_mean.merge(
        count.to_dataframe(name="n_paired").reset_index()[["rank", "length", "n_paired"]],
        on=["rank", "length"],
    )
    for var, name in (("exact_match", "exact_match_sft"), ("steps", "steps_sft")):
        if var in ds:
            sft_mean = sft_mean.merge(
                _cell_mean(sft_ds, var, paired, other, name), on=["rank", "length"], how="left"
            )
    return sft_mean


def _memft_measured(ds, sub, capacity: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Seed means of the measured cells of one MemFT objective, with their capacity.

    Parameters
    ----------
    ds : xarray.Dataset
        Whole dataset (for ``n_params``).
    sub : xarray.Dataset
        The objective's cells.
    capacity : {"rank", "n_params"}
        Capacity input of the laws.

    Returns
    -------
    df : pandas.DataFrame
        ``rank, length, dL_measured`` (+ ``loss_after``, ``n_params``, ``exact_match``,
        ``steps``) of the cells with a measured ΔL; empty when there are none.
    cap_vals : numpy.ndarray
        Capacity of each row.
    """
    okm = ok_mask(sub, tuple(sub["loss_reduction"].dims))
    other = [d for d in sub["loss_reduction"].dims if d not in ("rank", "length")]
    df = _cell_mean(sub, "loss_reduction", okm, other, "dL_measured").dropna(subset=["dL_measured"])
    if df.empty:
        return df, np.array([])
    if "loss_after" in sub:
        df = df.merge(
            _cell_mean(sub, "loss_after", okm, other, "loss_after"), on=["rank", "length"]
        )
    cap_vals = df["rank"].to_numpy(float)
    if capacity == "n_params":
        npar = ds["n_params"].to_dataframe(name="n_params").reset_index()
        df = df.merge(npar[["rank", "n_params"]].drop_duplicates("rank"), on="rank")
        cap_vals = df["n_params"].to_numpy(float)
    for var in ("exact_match", "steps"):
        if var in sub:
            df = df.merge(_cell_mean(sub, var, okm, other, var), on=["rank", "length"], how="left")
    return df, cap_vals


def _add_law_predictions(
    df: pd.DataFrame, laws: tuple, cap_vals: np.ndarray, confidence_level: float
) -> None:
    """Add each law's prediction of ΔL with its prediction interval, in place.

    Parameters
    ----------
    df : pandas.DataFrame
        Measured cells.
    laws : tuple of (str, FitResult or None)
        Column stem and law; a missing law, or one in ``loss_before``, is skipped.
    cap_vals : numpy.ndarray
        Capacity of each row.
    confidence_level : float
        Level of the prediction intervals.
    """
    for name, f in laws:
        if f is None or "loss_before" in f.inputs:
            continue
        kw = {
            c: (cap_vals if c in ("rank", "n_params") else df[c].to_numpy(float)) for c in f.inputs
        }
        p = f.predict(interval="prediction", confidence_level=confidence_level, warn=False, **kw)
        df[f"dL_{name}"] = p["mean"].to_numpy()
        df[f"dL_{name}_low"] = p["low"].to_numpy()
        df[f"dL_{name}_high"] = p["high"].to_numpy()


def _add_heldout_prediction(
    df: pd.DataFrame,
    sub,
    m: str,
    fits: Mapping,
    form,
    capacity: str,
    exclude,
    cap_vals: np.ndarray,
    notes: list[str],
) -> None:
    """Refit the MemFT law without its longest length and predict that length, in place.

    Parameters
    ----------
    df : pandas.DataFrame
        Measured cells; gets ``dL_memft_law_heldout`` (NaN where not predicted).
    sub : xarray.Dataset
        The objective's cells.
    m : str
        The objective.
    fits : mapping
        Objective → law.
    form : str or Form
        Form of the laws.
    capacity : {"rank", "n_params"}
        Capacity input.
    exclude : {"memorized"} or float or None
        Exclusion rule of the refit.
    cap_vals : numpy.ndarray
        Capacity of each row.
    notes : list of str
        Appended with the reason when the refit fails.
    """
    df["dL_memft_law_heldout"] = np.nan
    lens_m = np.unique(df["length"])
    if not (m in fits and lens_m.size >= 3 and "loss_before" not in fits[m].inputs):
        return
    from lawfit.fitting import fit

    top = lens_m.max()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f_ho = fit(
                sub.where(sub["length"] < top, drop=True),
                form,
                capacity=capacity,
                exclude=exclude,
                space=_SPACE,
            )
        sel = (df["length"] == top).to_numpy()
        kw = {
            c: (cap_vals[sel] if c in ("rank", "n_params") else df.loc[sel, c].to_numpy(float))
            for c in f_ho.inputs
        }
        df.loc[sel, "dL_memft_law_heldout"] = f_ho.predict(warn=False, **kw)["mean"].to_numpy()
    except LawfitError as exc:
        notes.append(f"held-out check of the {m} law skipped: {exc}")


def _add_sft_equivalent_rank(df: pd.DataFrame, fit_sft: FitResult, confidence_level: float) -> None:
    """Add the rank SFT needs by its law to reach each measured ΔL, and the saving, in place.

    Parameters
    ----------
    df : pandas.DataFrame
        Measured MemFT cells (``rank, length, dL_measured``).
    fit_sft : FitResult
        The SFT law in rank.
    confidence_level : float
        Level of the interval of the rank.
    """
    from lawfit.capacity import predict_capacity

    eq, lo, hi = [], [], []
    for L, d in zip(df["length"].to_numpy(float), df["dL_measured"].to_numpy(float), strict=True):
        t = predict_capacity(
            fit_sft, length=L, target=d, confidence_level=confidence_level
        ).table.iloc[0]
        eq.append(t["estimate"])
        lo.append(t["low"])
        hi.append(t["high"])
    df["sft_equivalent_rank"] = eq
    df["sft_equivalent_rank_low"] = lo
    df["sft_equivalent_rank_high"] = hi
    with np.errstate(all="ignore"):
        df["saving_measured"] = 1 - df["rank"] / df["sft_equivalent_rank"]


def _validate(ds, memfts, fits, form, capacity, exclude, confidence_level, notes):
    """Measured MemFT cells against measured SFT cells and the fitted laws."""
    vrows = []
    for m in memfts:
        sub = ds.sel(objective=m)
        df, cap_vals = _memft_measured(ds, sub, capacity)
        if df.empty:
            continue
        df = df.merge(_sft_measured(ds, sub), on=["rank", "length"], how="left")
        df["gain_measured"] = df["dL_measured"] - df["dL_sft_measured"]
        if "steps" in df and "steps_sft" in df:
            df["steps_ratio"] = df["steps"] / df["steps_sft"]
        _add_law_predictions(
            df, (("memft_law", fits.get(m)), ("sft_law", fits["sft"])), cap_vals, confidence_level
        )
        if "dL_memft_law" in df:
            df["inside_memft_pi"] = (df["dL_measured"] >= df["dL_memft_law_low"]) & (
                df["dL_measured"] <= df["dL_memft_law_high"]
            )
        _add_heldout_prediction(df, sub, m, fits, form, capacity, exclude, cap_vals, notes)
        if "dL_sft_law" in df:
            df["gain_over_sft_law"] = df["dL_measured"] - df["dL_sft_law"]
        if capacity == "rank" and "loss_before" not in fits["sft"].inputs:
            _add_sft_equivalent_rank(df, fits["sft"], confidence_level)
        if "loss_after" in df and exclude is not None:
            df["memorized"] = df["loss_after"] <= memorized_threshold(exclude)
        df.insert(0, "objective", m)
        vrows.append(df)
    return pd.concat(vrows, ignore_index=True) if vrows else pd.DataFrame()
