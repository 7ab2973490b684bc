"""The cell-level transition: a sigmoid of each order parameter against capacity.

:func:`_cell_transitions` builds one row per ok cell with its capacity and order
parameters (:func:`_cell_orders`) and fits ``order = sigmoid((x - x_c) / width)`` with
``x = log(capacity) - beta log(length)`` (:func:`_fit_sigmoid`): least squares from two
starts, HC1 sandwich or cell-bootstrap intervals, and the critical capacity per length.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize, stats

from lawfit._tokens import TokenArrays, ok_mask, sigmoid
from lawfit.errors import LawfitError
from lawfit.result import Flag
from lawfit.transition.results import THRESHOLD, CellTransition


def _cell_orders(ds: xr.Dataset, ta: TokenArrays | None, capacity: str):
    """DataFrame of ok cells with rank, length, capacity value and order parameters."""
    if "rank" not in ds.dims or "length" not in ds.dims:
        return None
    base = None
    for name in ("exact_match", "token_accuracy", "loss_reduction"):
        if name in ds:
            base = ds[name]
            break
    frames = []
    if base is not None:
        dims = tuple(d for d in base.dims if d not in ("token", "step"))
        okm = ok_mask(ds, dims).reshape(-1)
        idx = pd.MultiIndex.from_product([ds[d].values for d in dims], names=list(dims))
        df = idx.to_frame(index=False)
        for name in ("exact_match", "token_accuracy"):
            if name in ds:
                df[name] = np.asarray(ds[name].transpose(*dims).values, float).reshape(-1)
        df = df[okm].reset_index(drop=True)
        frames.append(df)
    if ta is not None:
        fa = ta.runs.copy()
        fa["frac_above"] = [
            float((ta.p_after[i][ta.valid[i]] > THRESHOLD).mean()) for i in range(len(fa))
        ]
        if frames:
            keys = [c for c in ta.cell_dims if c in frames[0].columns]
            frames[0] = frames[0].merge(fa, on=keys, how="outer")
        else:
            frames.append(fa)
    if not frames:
        return None
    df = frames[0]
    if capacity == "n_params":
        if "n_params" not in ds:
            raise LawfitError(
                "capacity='n_params' needs the variable 'n_params' (dims model, modules, "
                f"rank); the dataset has {sorted(ds.data_vars)}. Use capacity='rank'."
            )
        npar = ds["n_params"].to_dataframe().reset_index()
        keys = [c for c in npar.columns if c in df.columns and c != "n_params"]
        df = df.merge(npar[keys + ["n_params"]], on=keys, how="left")
        df["capacity"] = df["n_params"].astype(float)
    else:
        df["capacity"] = df["rank"].astype(float)
    return df


def _sigmoid_curve(
    th: np.ndarray, lc: np.ndarray, ll: np.ndarray, bfix: float | None
) -> np.ndarray:
    """Evaluate the cell-level sigmoid ``σ((log C − β log L − x_c) / width)``.

    Parameters
    ----------
    th : numpy.ndarray
        ``(x_c, log width)`` and, when ``bfix`` is None, ``beta``.
    lc, ll : numpy.ndarray
        Log capacity and log length of the cells.
    bfix : float or None
        Fixed length exponent, or None when ``th`` carries it.

    Returns
    -------
    numpy.ndarray
        Predicted order parameter per cell.
    """
    xc, lw = th[0], th[1]
    bb = bfix if bfix is not None else th[2]
    return sigmoid((lc - bb * ll - xc) / np.exp(lw))


def _solve_sigmoid(lc: np.ndarray, ll: np.ndarray, y: np.ndarray, bfix: float | None):
    """Least-squares sigmoid fit from two starting widths; return the better one.

    Parameters
    ----------
    lc, ll : numpy.ndarray
        Log capacity and log length.
    y : numpy.ndarray
        Order parameter.
    bfix : float or None
        Fixed length exponent, or None to fit it (started at 0.5).

    Returns
    -------
    scipy.optimize.OptimizeResult or None
        None when every start failed.
    """
    x0 = lc - (bfix if bfix is not None else 0.5) * ll
    mid = float(np.median(x0))
    best = None
    for lw0 in (np.log(max(np.std(x0), 1e-3)) - 1, np.log(max(np.std(x0), 1e-3))):
        th0 = [mid, lw0] + ([] if bfix is not None else [0.5])
        try:
            r = optimize.least_squares(
                lambda th: _sigmoid_curve(th, lc, ll, bfix) - y, th0, method="lm"
            )
        except Exception:  # noqa: BLE001 - a failed start is just skipped
            continue
        if best is None or r.cost < best.cost:
            best = r
    return best


def _sandwich_cov(J: np.ndarray, e: np.ndarray) -> np.ndarray:
    """HC1 sandwich covariance of the parameters from the Jacobian and residuals.

    Parameters
    ----------
    J : numpy.ndarray
        Jacobian of the residuals, cells × parameters.
    e : numpy.ndarray
        Residuals.

    Returns
    -------
    numpy.ndarray
        Covariance (NaN when ``JᵀJ`` is singular).
    """
    n, k = J.shape
    try:
        bread = np.linalg.inv(J.T @ J)
        meat = J.T @ (J * (e * e)[:, None])
        return bread @ meat @ bread * n / max(n - k, 1)
    except np.linalg.LinAlgError:
        return np.full((k, k), np.nan)


def _wald_intervals(
    th: np.ndarray, cov: np.ndarray, zc: float, bfix: float | None
) -> dict[str, tuple]:
    """Wald intervals of x_c, width (through log width) and beta.

    Parameters
    ----------
    th : numpy.ndarray
        Estimate.
    cov : numpy.ndarray
        Its covariance.
    zc : float
        Normal quantile of the level.
    bfix : float or None
        Fixed length exponent (its interval is the point), or None.

    Returns
    -------
    dict
        Parameter name → (low, high).
    """
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(over="ignore"):  # an unidentified width gets an open (inf) bound
        width = tuple(float(w) for w in np.exp([th[1] - zc * se[1], th[1] + zc * se[1]]))
    return {
        "x_c": (th[0] - zc * se[0], th[0] + zc * se[0]),
        "width": width,
        "beta": (th[2] - zc * se[2], th[2] + zc * se[2]) if bfix is None else (bfix, bfix),
    }


def _sigmoid_draws(
    lc: np.ndarray,
    ll: np.ndarray,
    y: np.ndarray,
    bfix: float | None,
    n_boot: int,
    gen: np.random.Generator,
) -> np.ndarray:
    """Refit the sigmoid on cell-bootstrap resamples; return the finite draws.

    Parameters
    ----------
    lc, ll, y : numpy.ndarray
        Log capacity, log length and order parameter of the cells.
    bfix : float or None
        Fixed length exponent, or None.
    n_boot : int
        Resamples (those without variation in ``y`` or whose fit fails are dropped).
    gen : numpy.random.Generator
        Random source.

    Returns
    -------
    numpy.ndarray
        Draws × parameters.
    """
    n, k = y.size, 2 if bfix is not None else 3
    draws = np.full((n_boot, k), np.nan)
    for i in range(n_boot):
        ix = gen.integers(0, n, n)
        if np.ptp(y[ix]) == 0:
            continue
        rb = _solve_sigmoid(lc[ix], ll[ix], y[ix], bfix)
        if rb is not None and np.all(np.isfinite(rb.x)):
            draws[i] = rb.x
    return draws[np.all(np.isfinite(draws), axis=1)]


def _critical_points(
    th: np.ndarray,
    cov: np.ndarray,
    draws: np.ndarray | None,
    lengths: np.ndarray,
    level: float,
    bfix: float | None,
    capacity: str,
) -> pd.DataFrame:
    """Critical capacity ``exp(x_c + β log L)`` per length, with an interval.

    Parameters
    ----------
    th, cov : numpy.ndarray
        Estimate and covariance (delta-method interval when ``draws`` is None).
    draws : numpy.ndarray or None
        Bootstrap draws (percentile interval).
    lengths : numpy.ndarray
        Lengths of the cells.
    level : float
        Confidence level.
    bfix : float or None
        Fixed length exponent, or None.
    capacity : str
        Capacity variable, names the column.

    Returns
    -------
    pandas.DataFrame
        ``length, critical_<capacity>, low, high``.
    """
    zc = stats.norm.ppf(0.5 + level / 2)
    bb = bfix if bfix is not None else th[2]
    crit = []
    for L in lengths:
        est = math.exp(th[0] + bb * math.log(L))
        if draws is not None:
            bd = bfix if bfix is not None else draws[:, 2]
            v = np.exp(draws[:, 0] + bd * math.log(L))
            lo, hi = np.quantile(v, [0.5 - level / 2, 0.5 + level / 2])
        else:
            g = np.array([1.0, 0.0] + ([] if bfix is not None else [math.log(L)]))
            s = math.sqrt(max(float(g @ cov @ g), 0.0))
            lo, hi = est * math.exp(-zc * s), est * math.exp(zc * s)
        crit.append((int(L), est, float(lo), float(hi)))
    return pd.DataFrame(crit, columns=["length", f"critical_{capacity}", "low", "high"])


def _fit_sigmoid(df, order, beta, level, n_boot, gen, capacity) -> CellTransition | None:
    d = df[np.isfinite(df[order])].reset_index(drop=True)
    if len(d) < 4 or d[order].std() == 0:
        return None
    lc, ll = np.log(d["capacity"].to_numpy()), np.log(d["length"].to_numpy(float))
    y = d[order].to_numpy(float)
    fixed = beta is not None or np.ptp(ll) == 0
    bfix = (float(beta) if beta is not None else 0.0) if fixed else None
    r = _solve_sigmoid(lc, ll, y, bfix)
    if r is None or not np.all(np.isfinite(r.x)):
        return None
    th, e = r.x, r.fun
    cov = _sandwich_cov(r.jac, e)
    ci = _wald_intervals(th, cov, stats.norm.ppf(0.5 + level / 2), bfix)
    method = "wald (HC1 sandwich)"
    draws = _sigmoid_draws(lc, ll, y, bfix, n_boot, gen) if n_boot else None
    if draws is not None and len(draws) >= 20:
        q = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        ci = {
            "x_c": tuple(q[:, 0]),
            "width": tuple(np.exp(q[:, 1])),
            "beta": tuple(q[:, 2]) if not fixed else (bfix, bfix),
        }
        method = f"bootstrap-percentile (cells, {len(draws)}/{n_boot} ok)"
    else:
        draws = None
    bb = bfix if fixed else th[2]
    critical = _critical_points(
        th, cov, draws, np.unique(d["length"].to_numpy()), level, bfix, capacity
    )
    out = d.copy()
    out["x"] = lc - bb * ll
    out["y_hat"] = _sigmoid_curve(th, lc, ll, bfix)
    return CellTransition(
        order=order,
        capacity=capacity,
        x_c=float(th[0]),
        width=float(math.exp(th[1])),
        beta=float(bb),
        beta_fixed=fixed,
        ci={kk: (float(v[0]), float(v[1])) for kk, v in ci.items()},
        ci_method=method,
        level=level,
        critical=critical,
        data=out,
        rmse=float(np.sqrt(np.mean(e * e))),
        n_cells=y.size,
    )


def _cell_transitions(
    ds: xr.Dataset,
    ta: TokenArrays | None,
    capacity: str,
    orders: tuple[str, ...],
    beta: float | None,
    level: float,
    n_boot: int,
    gen: np.random.Generator,
    notes: list[str],
    flags: list[Flag],
) -> dict[str, CellTransition]:
    """Fit the cell-level sigmoid of each order parameter against capacity.

    Parameters
    ----------
    ds : xarray.Dataset
        Contract dataset.
    ta : TokenArrays or None
        Token arrays (for the ``frac_above`` order), if any.
    capacity : {"rank", "n_params"}
        Capacity variable.
    orders : tuple of str
        Order parameters to fit.
    beta : float or None
        Fixed length exponent, or None to fit it.
    level : float
        Confidence level.
    n_boot : int
        Cell-bootstrap replicates.
    gen : numpy.random.Generator
        Random source.
    notes, flags : list
        Appended with skipped orders and extrapolated critical points.

    Returns
    -------
    dict
        Order name → CellTransition, for the orders that could be fitted.
    """
    transitions = {}
    cells = _cell_orders(ds, ta, capacity)
    if cells is None:
        notes.append("no rank/length cells: cell-level transition skipped")
        return transitions
    for order in orders:
        if order not in cells.columns:
            notes.append(f"cell transition of {order} skipped: not in the dataset")
            continue
        tr = _fit_sigmoid(cells, order, beta, level, n_boot, gen, capacity)
        if tr is None:
            notes.append(
                f"cell transition of {order} not fitted: fewer than 4 cells or no "
                "variation (every cell on one side of the transition)"
            )
            continue
        transitions[order] = tr
        if tr.x_c < tr.data["x"].min() or tr.x_c > tr.data["x"].max():
            flags.append(
                Flag(
                    "critical_point_extrapolated",
                    f"critical point of {order} lies outside "
                    "the observed capacity range (extrapolated)",
                )
            )
    return transitions
