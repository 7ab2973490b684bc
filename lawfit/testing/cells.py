"""Synthetic cell-level datasets in the data contract's shape (for tests and calibration)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from lawfit.errors import LawfitError
from lawfit.forms import Form, get_form

__all__ = ["synthetic_dataset"]

LN2 = float(np.log(2.0))
#: Smallest simulated loss_after (nats/token): the base loss is raised where ΔL exceeds it.
_MIN_LOSS_AFTER = 0.01


def _check_noise_options(noise_kind: str, noise_model: str) -> None:
    """Reject an unknown ``noise_kind`` or ``noise_model``.

    Parameters
    ----------
    noise_kind, noise_model : str
        See :func:`synthetic_dataset`.

    Raises
    ------
    LawfitError
        If either is not one of its allowed values.
    """
    if noise_kind not in ("independent", "run"):
        raise LawfitError(f"noise_kind must be 'independent' or 'run'; got {noise_kind!r}.")
    if noise_model not in ("multiplicative", "additive"):
        raise LawfitError(
            f"noise_model must be 'multiplicative' or 'additive'; got {noise_model!r}."
        )


def _form_and_truth(
    form: str | Form | None, params: Mapping[str, float] | None, power_law: dict[str, float]
) -> tuple[Form, dict[str, float]]:
    """Resolve the simulated form and its true parameters.

    Parameters
    ----------
    form : str, Form or None
        The form to simulate; ``None`` for the power law.
    params : mapping or None
        Parameters of ``form``.
    power_law : dict
        Parameters of the default power law (used when ``form`` is ``None``).

    Returns
    -------
    form_obj : Form
        The registered form.
    truth : dict
        Its true parameters.

    Raises
    ------
    LawfitError
        If ``params`` lacks a parameter of ``form``.
    """
    if form is None:
        return get_form("power_law"), power_law
    form_obj = get_form(form)
    truth = dict(params or {})
    missing = [p for p in form_obj.params if p not in truth]
    if missing:
        raise LawfitError(f"params= lacks {missing} for form {form_obj.name!r}.")
    return form_obj, truth


def _law_on_grid(
    form_obj: Form, truth: Mapping[str, float], R: np.ndarray, L: np.ndarray, params_per_rank: int
) -> np.ndarray:
    """Evaluate the true law on the (rank, length) grid.

    Parameters
    ----------
    form_obj : Form
        Form to evaluate; its inputs must be ``rank``/``n_params`` and ``length``.
    truth : mapping
        Its parameters.
    R, L : numpy.ndarray
        Rank and length on the ``(rank, length)`` grid.
    params_per_rank : int
        ``n_params = rank * params_per_rank``.

    Returns
    -------
    numpy.ndarray
        Mean ΔL, shape ``(rank, length)``.

    Raises
    ------
    LawfitError
        If the form has another input.
    """
    grid = {"rank": R, "n_params": R * params_per_rank, "length": L}
    try:
        args = [grid[i] for i in form_obj.inputs]
    except KeyError as exc:
        raise LawfitError(
            f"synthetic_dataset can simulate forms over rank/n_params/length; "
            f"form {form_obj.name!r} has inputs {form_obj.inputs}."
        ) from exc
    return np.asarray(form_obj.func(*args, **truth), float)


def _run_offsets(
    rng: np.random.Generator,
    noise: float,
    run_effect: Mapping[str, float] | None,
    gshape: list[int],
    R: np.ndarray,
    L: np.ndarray,
) -> np.ndarray:
    """Draw each seed's random effects on log ΔL (offset and centred slopes).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draws (three normal draws, in a fixed order).
    noise : float
        Default size of the effects.
    run_effect : mapping or None
        sd of the per-seed effects (see :func:`synthetic_dataset`).
    gshape : list of int
        Shape of the effects: groups, then ``1, 1, seed``.
    R, L : numpy.ndarray
        Rank and length on the ``(rank, length)`` grid.

    Returns
    -------
    numpy.ndarray
        Log-scale offset per cell, broadcastable to the dataset's shape.
    """
    lr = np.log(R) - np.log(R).mean()
    ll = np.log(L) - np.log(L).mean()
    eff = {"logC": noise, "alpha": noise / 4, "beta": noise / 4}
    eff.update(run_effect or {})
    return (
        eff["logC"] * rng.standard_normal(gshape)
        + eff["alpha"] * rng.standard_normal(gshape) * lr[..., None]
        - eff["beta"] * rng.standard_normal(gshape) * ll[..., None]
    )


def _mark_failed(
    rng: np.random.Generator, shape: list[int], failed_fraction: float, arrays: Sequence[np.ndarray]
) -> np.ndarray:
    """Mark a random share of cells diverged and blank their values in place.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draw (one uniform draw, only if ``failed_fraction > 0``).
    shape : list of int
        Shape of the dataset.
    failed_fraction : float
        Share of cells to fail.
    arrays : sequence of numpy.ndarray
        Cell values set to NaN where a cell failed.

    Returns
    -------
    numpy.ndarray
        ``status`` per cell (``"ok"`` or ``"diverged"``).
    """
    status = np.full(shape, "ok", dtype=object)
    if failed_fraction > 0:
        fail = rng.random(shape) < failed_fraction
        status[fail] = "diverged"
        for arr in arrays:
            arr[fail] = np.nan
    return status


def synthetic_dataset(
    *,
    C: float = 1.0,
    alpha: float = 0.6,
    beta: float = 0.5,
    b: float = 0.02,
    ranks: Sequence[float] = (1, 2, 4, 8, 16, 32, 64, 128),
    lengths: Sequence[float] = (64, 128, 256, 512, 1024, 2048, 4096),
    seeds: int = 3,
    noise: float = 0.05,
    noise_kind: str = "independent",
    noise_model: str = "multiplicative",
    run_effect: Mapping[str, float] | None = None,
    loss_before: float = 4.0,
    params_per_rank: int = 2 * 576 * 2,
    form: str | Form | None = None,
    params: Mapping[str, float] | None = None,
    groups: Mapping[str, Sequence] | None = None,
    failed_fraction: float = 0.0,
    rng: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Simulate a sweep that follows a known law, in the contract's shape.

    Parameters
    ----------
    C, alpha, beta, b : float
        True parameters of the default power law ``C r^alpha l^-beta + b``.
    ranks, lengths : sequence
        Coordinates of the ``rank`` and ``length`` dims.
    seeds : int
        Number of training replicates (``seed`` dim).
    noise : float
        Noise scale: sd of log ΔL (``noise_model="multiplicative"``, log-normal) or
        sd of ΔL relative to its median value (``"additive"``, homoscedastic).
    noise_kind : {"independent", "run"}
        ``"independent"``: every cell has its own noise. ``"run"``: in addition each
        seed (a run of the sweep: same data order/initialisation across cells) gets
        random effects shared by all its cells — an offset in log C and slopes on
        log r and log l (sizes in ``run_effect``) — so cells are correlated within a
        seed and the case bootstrap is over-confident; resample seeds instead.
    noise_model : {"multiplicative", "additive"}
        See ``noise``.
    run_effect : mapping, optional
        sd of the per-seed effects, keys ``"logC"``, ``"alpha"``, ``"beta"``
        (default ``{"logC": noise, "alpha": noise / 4, "beta": noise / 4}``).
        The random slopes are centred, so the population truth is the given law.
    loss_before : float
        Base-model loss per token (nats); ``loss_after = loss_before - ΔL``.
    params_per_rank : int
        ``n_params = rank * params_per_rank`` (dims: rank).
    form, params : optional
        Simulate another registered form with parameters ``params`` (its inputs must
        be ``rank``/``n_params`` and ``length``).
    groups : mapping, optional
        Extra grouping dims, e.g. ``{"model": ["a", "b"]}`` (same law in each).
    failed_fraction : float
        Share of cells marked ``status="diverged"`` with NaN values.
    rng : int or numpy.random.Generator, optional
        Seed or generator.

    Returns
    -------
    xarray.Dataset
        Variables ``loss_before, loss_after, loss_reduction, n_params, status,
        exact_match, token_accuracy``; attrs ``synthetic="true"`` and the truth
        (``truth`` as JSON plus one ``true_<param>`` attr per parameter).
    """
    rng = np.random.default_rng(rng)
    _check_noise_options(noise_kind, noise_model)
    groups = dict(groups or {})
    ranks = np.asarray(ranks, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    seed = np.arange(int(seeds), dtype=np.int64)
    dims = list(groups) + ["rank", "length", "seed"]
    shape = [len(v) for v in groups.values()] + [ranks.size, lengths.size, seed.size]
    form_obj, truth = _form_and_truth(form, params, {"C": C, "alpha": alpha, "beta": beta, "b": b})
    R, L = np.meshgrid(ranks.astype(float), lengths.astype(float), indexing="ij")
    mean = _law_on_grid(form_obj, truth, R, L, params_per_rank)  # (rank, length)
    mean = np.broadcast_to(mean, shape[-3:-1] + [])[..., None] * np.ones(shape[-1])
    mean = np.broadcast_to(mean, shape).copy()
    eps = rng.standard_normal(shape)
    if noise_kind == "run":
        u = _run_offsets(rng, noise, run_effect, shape[:-3] + [1, 1, seed.size], R, L)
    else:
        u = 0.0
    if noise_model == "multiplicative":
        dl = mean * np.exp(u + noise * eps)
    else:
        scale = noise * float(np.median(np.abs(mean)))
        dl = mean * np.exp(u) + scale * eps
    before = loss_before * np.exp(0.02 * rng.standard_normal(shape))
    before = np.maximum(before, dl + _MIN_LOSS_AFTER)  # a cross-entropy stays >= 0
    after = before - dl
    token_accuracy = np.clip(1.0 / (1.0 + np.exp(4.0 * (after - LN2))), 0, 1)
    exact_match = np.clip(token_accuracy**8, 0, 1)
    status = _mark_failed(
        rng, shape, failed_fraction, (before, after, dl, token_accuracy, exact_match)
    )
    coords = {
        **{k: list(v) for k, v in groups.items()},
        "rank": ranks,
        "length": lengths,
        "seed": seed,
    }
    ds = xr.Dataset(
        {
            "loss_before": (dims, before),
            "loss_after": (dims, after),
            "loss_reduction": (dims, dl),
            "exact_match": (dims, exact_match),
            "token_accuracy": (dims, token_accuracy),
            "status": (dims, status.astype("<U8")),
            "n_params": (("rank",), (ranks * params_per_rank).astype(np.int64)),
        },
        coords=coords,
        attrs={
            "schema_version": "1",
            "synthetic": "true",
            "form": form_obj.name,
            "truth": json.dumps(truth),
            "noise": float(noise),
            "noise_kind": noise_kind,
            "noise_model": noise_model,
            **{f"true_{k}": float(v) for k, v in truth.items()},
        },
    )
    return ds
