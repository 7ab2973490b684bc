"""Batched bootstrap of a fitted law: case, cluster, residual and wild; percentile and BCa.

All replicates are fitted *together* on arrays (see :mod:`lawfit._varpro`): the case
and cluster bootstraps are multinomial weights on the same design, so for a local grid
of exponents the weighted normal equations of all replicates come from matrix products
``W @ (g_k * g_l)``; the best grid point per replicate then starts a vectorised
variable-projection Levenberg-Marquardt polish. No Python loop over replicates.

Every replicate gets a status (:data:`REPLICATE_STATUSES`): ``"converged"``,
``"at_bound"`` (the solution has a parameter on a finite bound: a boundary solution,
kept), ``"not_converged"`` (re-solved from the global grid and still stopped without
meeting the tolerance: kept at the best point found, typically an optimum at
infinity such as alpha -> 0 with b -> -inf) and ``"unidentifiable"`` (the resample
cannot identify the law, e.g. fewer distinct design points than parameters: no
estimate exists, excluded from intervals and counted). The output of a fit's
bootstrap is a frozen :class:`BootstrapResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy import sparse, stats

from lawfit import _validate as V
from lawfit import _varpro as vp
from lawfit.errors import LawfitError

__all__ = [
    "bootstrap_weights",
    "cluster_column",
    "cluster_index",
    "resample_collapsed",
    "fit_batch",
    "fit_resampled",
    "percentile_interval",
    "bca_interval",
    "RESAMPLING_UNITS",
    "BootstrapResult",
    "REPLICATE_STATUSES",
    "replicate_status",
]

#: Status of a bootstrap replicate, in the order of precedence used by
#: :func:`replicate_status`.
REPLICATE_STATUSES = ("converged", "at_bound", "not_converged", "unidentifiable")

# tolerances of the power-law fast path: tighter than the generic LM's (1e-10, 1e-8);
# cheap there, and they make replicate estimates agree with a tightly converged
# per-replicate least-squares fit to ~1e-8 relative instead of ~1e-5 on flat problems
_FTOL, _XTOL = 1e-12, 1e-10
RESAMPLING_UNITS = ("cell", "seed", "data_seed", "run", "residual", "wild")


def _read_only(a):
    """Return a read-only copy of ``a`` (writing into it raises ``ValueError``); None stays."""
    if a is None:
        return None
    out = np.array(a, copy=True)
    out.flags.writeable = False
    return out


#: Fewer distinct replicate estimates than this and bootstrap intervals are not computed
#: (NaN, flag ``bootstrap_degenerate``): every usable replicate is one estimate, so a
#: percentile interval would have zero width. (Two or three distinct estimates, as a cluster
#: bootstrap over two clusters gives, make a crude interval that ``few_clusters`` flags.)
MIN_DISTINCT_DRAWS = 2

#: A cluster bootstrap over fewer clusters than this gives intervals too narrow to quote
#: (docs/lawfit.md, calibration: 70 % coverage of a nominal 95 % at 3 clusters), flag
#: ``few_clusters``; the cluster-robust CR2 intervals (:mod:`lawfit.robust`) stay
#: calibrated down to 3.
MIN_BOOTSTRAP_CLUSTERS = 10


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Bootstrap replicates of a fit (immutable; arrays are read-only).

    Attributes
    ----------
    draws : ndarray, shape (R, k)
        Replicate estimates (parameters in the fit's order).
    status : ndarray of str, shape (R,)
        One of :data:`REPLICATE_STATUSES` per replicate.
    unit : str
        Resampling unit (``"cell"``, ``"seed"``, ..., ``"residual"``, ``"wild"``).
    resid : ndarray, shape (n,)
        Residuals of the full-data fit on the fit scale (for prediction intervals).
    jack : ndarray, shape (m, k), optional
        Leave-one-unit-out estimates (BCa acceleration); NaN rows where unusable.
    n_clusters : int, optional
        Number of clusters of a cluster bootstrap.
    """

    draws: np.ndarray
    status: np.ndarray
    unit: str
    resid: np.ndarray
    jack: np.ndarray | None = None
    n_clusters: int | None = None

    def __post_init__(self):
        status = np.asarray(self.status, dtype=object).astype(str)
        bad = sorted(set(status.tolist()) - set(REPLICATE_STATUSES))
        if bad:
            raise LawfitError(f"replicate status must be one of {REPLICATE_STATUSES}; got {bad}.")
        object.__setattr__(self, "status", _read_only(status))
        for name in ("draws", "resid", "jack"):
            object.__setattr__(self, name, _read_only(getattr(self, name)))

    @property
    def n_boot(self) -> int:
        """Number of replicates R."""
        return int(self.draws.shape[0])

    @property
    def usable(self) -> np.ndarray:
        """Replicates that enter the intervals: every status but ``"unidentifiable"``."""
        return (self.status != "unidentifiable") & np.all(np.isfinite(self.draws), axis=1)

    @property
    def converged(self) -> np.ndarray:
        """Replicates whose fit converged (in the interior or at a bound)."""
        return (self.status == "converged") | (self.status == "at_bound")

    @property
    def counts(self) -> MappingProxyType:
        """Number of replicates per status (every status listed, zeros included)."""
        return MappingProxyType({s: int(np.sum(self.status == s)) for s in REPLICATE_STATUSES})

    @property
    def n_failed(self) -> int:
        """Replicates that did not converge or could not identify the law."""
        return int(np.sum(~self.converged))

    @property
    def n_excluded(self) -> int:
        """Replicates left out of the intervals (no estimate exists)."""
        return int(np.sum(~self.usable))

    def usable_draws(self) -> np.ndarray:
        """Draws that enter the intervals, shape (R_usable, k)."""
        return self.draws[self.usable]

    @property
    def n_distinct(self) -> int:
        """Number of distinct replicate estimates among the usable draws.

        A cluster bootstrap over G clusters has only C(2G−1, G) distinct resamples (3 for
        two target sequences, of which the two single-sequence ones often cannot identify
        the law): its "replicates" then repeat one or two estimates, and a percentile
        interval of them has zero width.
        """
        draws = self.usable_draws()
        return int(len(np.unique(draws, axis=0))) if draws.size else 0

    @property
    def degenerate(self) -> bool:
        """True when the usable draws hold fewer than :data:`MIN_DISTINCT_DRAWS` estimates."""
        return self.n_distinct < MIN_DISTINCT_DRAWS

    @property
    def too_few_clusters(self) -> bool:
        """True when a cluster bootstrap's intervals are too narrow to quote.

        That is a cluster bootstrap over fewer than :data:`MIN_BOOTSTRAP_CLUSTERS` clusters
        which still gave intervals (not :attr:`degenerate`).
        """
        G = self.n_clusters
        return G is not None and G < MIN_BOOTSTRAP_CLUSTERS and not self.degenerate

    def to_dict(self) -> dict:
        """Plain lists and numbers (NaN kept as float; see :mod:`lawfit.result` for JSON)."""
        return {
            "draws": self.draws,
            "status": self.status.tolist(),
            "unit": self.unit,
            "resid": self.resid,
            "jack": self.jack,
            "n_clusters": self.n_clusters,
        }


def replicate_status(theta, converged, identified, lower, upper, rtol=1e-6):
    """Status of each replicate (see :data:`REPLICATE_STATUSES`).

    Parameters
    ----------
    theta : ndarray, shape (R, k)
        Replicate estimates.
    converged : ndarray of bool, shape (R,)
        The optimizer met its tolerance.
    identified : ndarray of bool, shape (R,)
        The resampled design can identify the law.
    lower, upper : ndarray, shape (k,)
        Parameter bounds (infinite for unbounded).
    rtol : float
        Relative distance to a finite bound that counts as on it.

    Returns
    -------
    ndarray of str, shape (R,)
    """
    theta = np.asarray(theta, float)
    finite = np.all(np.isfinite(theta), axis=1)
    with np.errstate(invalid="ignore"):
        on_lo = np.isfinite(lower) & (np.abs(theta - lower) <= rtol * (1 + np.abs(lower)))
        on_hi = np.isfinite(upper) & (np.abs(theta - upper) <= rtol * (1 + np.abs(upper)))
    at_bound = np.any(on_lo | on_hi, axis=1)
    out = np.full(theta.shape[0], "converged", dtype=object)
    out[~np.asarray(converged, bool)] = "not_converged"
    out[at_bound] = "at_bound"
    out[~(np.asarray(identified, bool) & finite)] = "unidentifiable"
    return out.astype(str)


def cluster_column(frame, unit: str) -> str:
    """Return the column a cluster bootstrap over ``unit`` reads.

    ``"run"`` falls back on ``seed`` when the cells carry no ``run`` column; any other unit
    is its own column.
    """
    return "seed" if unit == "run" and "run" not in frame.columns else unit


def cluster_index(frame, unit: str, *, fix: str) -> np.ndarray:
    """Return each cell's cluster (0 .. G − 1) for a cluster bootstrap over ``unit``.

    Parameters
    ----------
    frame : pandas.DataFrame
        The cells, one row each.
    unit : str
        The resampling unit: a column of ``frame``, or ``"run"``, which falls back on
        ``seed`` when the cells carry no ``run`` column.
    fix : str
        The alternative the error offers, e.g. ``"unit='cell'"``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` integer cluster index of each row.

    Raises
    ------
    LawfitError
        The column is missing, or it holds fewer than 2 clusters.
    """
    col = cluster_column(frame, unit)
    if col not in frame.columns:
        raise LawfitError(
            f"unit={unit!r} needs a {col!r} dim to cluster on; the data has "
            f"{sorted(frame.columns)}. Use {fix}."
        )
    _, clusters = np.unique(frame[col].to_numpy(), return_inverse=True)
    clusters = np.ravel(clusters)
    if clusters.max() < 1:
        raise LawfitError(
            f"unit={unit!r}: only 1 cluster in the data; the cluster bootstrap needs at "
            f"least 2 (better 10+). Use {fix}."
        )
    return clusters


def bootstrap_weights(n_boot, clusters, rng):
    """Multinomial resampling weights (R, n) for the case/cluster bootstrap.

    Parameters
    ----------
    n_boot : int
        Number of replicates R.
    clusters : array of int, shape (n,)
        Cluster index of each point (``arange(n)`` for the case bootstrap).
    rng : numpy.random.Generator
        Random generator.
    """
    return _cluster_counts(n_boot, clusters, rng)[:, clusters]


def _cluster_counts(n_boot, clusters, rng):
    """How often each cluster is drawn in each replicate, shape (R, G), as float."""
    G = int(np.max(clusters)) + 1
    draws = rng.integers(0, G, size=(n_boot, G))
    draws += G * np.arange(n_boot)[:, None]  # row offsets, in place
    return np.bincount(draws.ravel(), minlength=n_boot * G).reshape(n_boot, G).astype(float)


def resample_collapsed(n_boot, clusters, X, z, rng):
    """Case/cluster resampling, returned as sufficient statistics per design point.

    Consumes ``rng`` exactly like :func:`bootstrap_weights` (the same draws), but never
    forms the (R, n) weight matrix of the raw points in float: the integer counts are
    summed per unique design point (rank, length), which is all least squares needs
    (see :func:`lawfit._varpro.collapse`). Cost O(R n) integer work once, after which
    each replicate's fit costs O(unique points) per iteration, not O(n). The counts are
    summed per design point by one sparse product (R, G) @ (G, 2U).

    Parameters
    ----------
    n_boot : int
        Number of replicates R.
    clusters : array of int, shape (n,)
        Cluster index of each point (``arange(n)`` for the case bootstrap).
    X : sequence of arrays, shape (n,)
        Inputs of the points.
    z : array, shape (n,)
        Response in fit space (y, or log y).
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    Xu : tuple of arrays, shape (U,)
        Unique design points.
    Zu : ndarray, shape (R, U)
        Weighted mean response per design point (0 where the weight is 0).
    Wu : ndarray, shape (R, U)
        Total weight per design point.
    """
    clusters = np.asarray(clusters)
    G = int(clusters.max()) + 1
    counts = _cluster_counts(n_boot, clusters, rng)
    keys = np.stack([np.asarray(x, float) for x in X], axis=1)
    uniq, ucode = np.unique(keys, axis=0, return_inverse=True)
    ucode = np.ravel(ucode)
    U = uniq.shape[0]
    # (G, 2U) sparse: cluster g -> (number of its points at u, sum of their z at u)
    M = sparse.csr_matrix(
        (
            np.concatenate([np.ones(clusters.size), np.asarray(z, float)]),
            (np.concatenate([clusters, clusters]), np.concatenate([ucode, ucode + U])),
        ),
        shape=(G, 2 * U),
    )
    S = np.asarray(counts @ M)  # (R, 2U); integer counts, exact in float
    Wu, WZu = S[:, :U], S[:, U:]
    Zu = np.divide(WZu, Wu, out=np.zeros_like(WZu), where=Wu > 0)
    return tuple(uniq[:, j] for j in range(uniq.shape[1])), Zu, Wu


def fit_batch(model, theta_hat, se, Y, W, *, space, loss, delta, local_grid=True):
    """Fit R problems on the same design at once; returns theta (R, k), converged (R,).

    Starts: for the built-in power law (least squares, linear space) theta_hat itself,
    where all replicates share the model values and Jacobian (so the first LM step is
    a Gauss-Newton step with the full-data Jacobian), then the dedicated LM
    :func:`lawfit._varpro.lm_power`; for other forms
    with variable projection the best point per replicate of a local grid of the
    nonlinear parameters (theta_hat +- 3 SE; 9, 5x5 or 4x4x4 points), with the
    linear parameters in closed form; otherwise theta_hat. Replicates that
    do not converge, or whose nonlinear parameters land more than 6 robust scales
    from theta_hat (see :func:`_far`), are refitted from the best point of a global
    grid over the bounds (see :func:`_rescue`); a clearly lower objective wins, so a
    replicate far from the full-data estimate is still fitted independently of its
    start. Each replicate gets a status (see :func:`replicate_status`).

    Parameters
    ----------
    model : lawfit._varpro.Model
        The law on the design of the data.
    theta_hat, se : ndarray, shape (k,)
        Full-data estimate and its standard errors (centre and size of the grid).
    Y : ndarray, shape (R, n) or (1, n)
        Responses (linear space).
    W : ndarray, shape (R, n)
        Weights (multinomial counts for case/cluster replicates).
    space, loss, delta
        As in :func:`lawfit.fit`.
    local_grid : bool
        Start from the local grid (else from theta_hat).

    Returns
    -------
    theta : ndarray, shape (R, k)
    status : ndarray of str, shape (R,)
        See :data:`REPLICATE_STATUSES`.
    """
    if loss == "l2":
        # exact: least squares only sees per-design-point weighted means
        with np.errstate(all="ignore"):
            Yt = np.log(Y) if space == "log" else Y
        col = vp.collapse(model.X, Yt, W)
        if col is not None:
            Xu, Yu, W = col
            Y = np.exp(Yu) if space == "log" else Yu
            model = model.with_inputs(Xu)
    return _fit_on_design(
        model, theta_hat, se, Y, W, space=space, loss=loss, delta=delta, local_grid=local_grid
    )


def fit_resampled(model, theta_hat, se, y, clusters, n_boot, rng, *, space, loss, delta):
    """Case/cluster bootstrap fits: :func:`bootstrap_weights` + :func:`fit_batch`.

    For least squares the weights go straight to per-design-point sufficient
    statistics (:func:`resample_collapsed`: the same draws, and the same collapsed
    problem that :func:`fit_batch` would build from the (R, n) weights, up to
    rounding in the sums).

    Parameters
    ----------
    model : lawfit._varpro.Model
        The law on the design of the data.
    theta_hat, se : ndarray, shape (k,)
        Full-data estimate and its standard errors.
    y : ndarray, shape (n,)
        Responses (linear space).
    clusters : array of int, shape (n,)
        Resampling unit of each point.
    n_boot : int
        Number of replicates.
    rng : numpy.random.Generator
        Random generator.
    space, loss, delta
        As in :func:`lawfit.fit`.

    Returns
    -------
    theta : ndarray, shape (R, k)
    status : ndarray of str, shape (R,)
        See :data:`REPLICATE_STATUSES`.
    """
    chunk = V.bootstrap_chunk(n_boot, np.size(y), model.k)
    if chunk < n_boot:  # batches that fit in memory (lawfit._validate.bootstrap_chunk)
        parts = [
            fit_resampled(
                model,
                theta_hat,
                se,
                y,
                clusters,
                min(chunk, n_boot - i),
                rng,
                space=space,
                loss=loss,
                delta=delta,
            )
            for i in range(0, n_boot, chunk)
        ]
        return np.concatenate([t for t, _ in parts]), np.concatenate([c for _, c in parts])
    if loss != "l2":
        W = bootstrap_weights(n_boot, clusters, rng)
        return fit_batch(model, theta_hat, se, y[None, :], W, space=space, loss=loss, delta=delta)
    with np.errstate(all="ignore"):
        z = np.log(y) if space == "log" else y
    Xu, Zu, Wu = resample_collapsed(n_boot, clusters, model.X, z, rng)
    Y = np.exp(Zu) if space == "log" else Zu
    return _fit_on_design(
        model.with_inputs(Xu),
        theta_hat,
        se,
        Y,
        Wu,
        space=space,
        loss=loss,
        delta=delta,
        local_grid=True,
    )


def _nl_grid(model, centre, half, n_per):
    ranges = []
    for j in model.nl:
        lo = max(centre[j] - half[j], model.lower[j])
        hi = min(centre[j] + half[j], model.upper[j])
        ranges.append((lo, hi))
    return vp.make_grid(ranges, n_per)


def _grid_starts(model, grid, fallback, Y, W, space):
    """Best grid point per replicate (linear parameters in closed form)."""
    R = W.shape[0]
    start = np.array(np.broadcast_to(fallback, (R, model.k)), float)
    Wg = W / np.broadcast_to(Y, W.shape) ** 2 if space == "log" else W
    sse, lin = vp.grid_sse(model, grid, Y, Wg)
    best = np.argmin(sse, axis=1)
    start[:, model.nl] = grid[best]
    start[:, model.lin] = lin[np.arange(R), best]
    bad = ~np.all(np.isfinite(start), axis=1)
    start[bad] = np.broadcast_to(fallback, (R, model.k))[bad]
    return start


def _polish(model, start, Y, W, space, loss, delta, logs, init=None):
    if logs is not None:
        return vp.lm_power(
            logs,
            start,
            Y,
            W,
            model.lower,
            model.upper,
            space=space,
            ftol=_FTOL,
            xtol=_XTOL,
            lam0=1e-6,
            init=init,
        )
    return vp.lm(
        model, start, Y, W, space=space, loss=loss, delta=delta, mode="full", ftol=1e-10, xtol=1e-8
    )


def _fit_on_design(model, theta_hat, se, Y, W, *, space, loss, delta, local_grid):
    R = W.shape[0]
    identified = identifiable_rows(model.X, W, model.k)
    knl = model.nl.size
    varpro = model.lin.size > 0 and space == "linear" and knl > 0
    logs = vp.power_law_logs(model) if loss == "l2" and space in ("linear", "log") else None
    half = (
        np.array(
            [
                se[j] if np.isfinite(se[j]) and se[j] > 0 else 0.05 * max(abs(theta_hat[j]), 1)
                for j in range(model.k)
            ]
        )
        * 3
    )
    start = np.tile(theta_hat, (R, 1))
    init = None
    if (
        logs is not None
        and local_grid
        and np.all(start[0] == np.clip(start[0], model.lower, model.upper))
    ):
        # warm start at theta_hat, whose model values and Jacobian all replicates share
        init = vp.power_shared_pieces(logs, theta_hat, np.broadcast_to(Y, W.shape), W, space)
    elif varpro and local_grid and knl <= 3:
        n_per = {1: 9, 2: 5, 3: 4}[knl]
        start = _grid_starts(model, _nl_grid(model, theta_hat, half, n_per), theta_hat, Y, W, space)
    theta, obj, conv, _ = _polish(model, start, Y, W, space, loss, delta, logs, init)
    if model.lin.size > 0 and knl > 0 and local_grid:
        far = _far(theta[:, model.nl], conv & identified, theta_hat[model.nl], half[model.nl] / 3)
        need = np.flatnonzero(identified & (~conv | far | ~np.all(np.isfinite(theta), axis=1)))
        if need.size:
            _rescue(model, need, theta, obj, conv, Y, W, space, loss, delta, logs)
        stuck = np.flatnonzero(identified & ~conv)
        if stuck.size and varpro and loss == "l2":
            _continue_stuck(model, stuck, theta, obj, conv, Y, W)
    return theta, replicate_status(theta, conv, identified, model.lower, model.upper)


def _far(nl, ok, centre, se, k_out=6.0):
    """Replicates whose nonlinear parameters are outliers of the bootstrap distribution.

    Far: more than ``k_out`` robust scales from the full-data estimate, the scale being
    the larger of the standard error and 1.4826 * MAD of the converged replicates.
    """
    if ok.sum() >= 10:
        good = nl[ok]
        mad = 1.4826 * np.median(np.abs(good - np.median(good, axis=0)), axis=0)
        scale = np.maximum(se, mad)
    else:
        scale = se
    with np.errstate(invalid="ignore"):
        return np.any(np.abs(nl - centre) > k_out * scale, axis=1)


def _rows(Y, idx):
    return Y if Y.shape[0] == 1 else Y[idx]


def _rescue(model, rows, theta, obj, conv, Y, W, space, loss, delta, logs, n_budget=900):
    """Global refit of the given replicates (in place): grid over the bounds, then LM.

    Used for replicates whose local fit did not converge or landed far away (see
    :func:`_far`); the refit replaces the local one only if it converged to a clearly
    lower objective, or if the local one did not converge and the refit is at least
    as good as where it stopped. Skipped when a nonlinear parameter has infinite
    bounds (no finite global grid).
    """
    lo, hi = model.lower[model.nl], model.upper[model.nl]
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        return
    knl = model.nl.size
    n_per = min(401, max(3, int(round(n_budget ** (1.0 / knl)))))
    grid = vp.make_grid(list(zip(lo, hi, strict=True)), n_per)
    Yr, Wr = _rows(Y, rows), W[rows]
    fallback = np.where(np.isfinite(theta[rows]), theta[rows], 0.0)
    start = _grid_starts(model, grid, fallback, Yr, Wr, space)
    th, ob, cv, _ = _polish(model, start, Yr, Wr, space, loss, delta, logs)
    # replace only by a clearly better optimum (not rounding-level noise), or a failed
    # local fit by a converged one that is at least as good as where it stopped
    old = obj[rows]
    better = cv & np.isfinite(ob) & ((ob < old * (1 - 1e-8)) | (~conv[rows] & ~(ob > old)))
    idx = rows[better]
    theta[idx], obj[idx], conv[idx] = th[better], ob[better], True


def _continue_stuck(model, rows, theta, obj, conv, Y, W, max_iter=2000, n_budget=900):
    """Follow replicates that are still not converged to where their optimum lies (in place).

    Such a replicate typically crawls along a valley whose least-squares optimum is on
    the edge of the parameter space (an exponent at its bound, or at infinity). The
    reduced (variable-projection) problem is continued for up to ``max_iter``
    iterations, from where the replicate stopped and from the best point of a global
    grid; the lowest converged objective wins if it is lower than where the replicate
    stopped (a boundary solution is then labelled ``"at_bound"`` by
    :func:`replicate_status`). Cost: only the stuck rows.
    """
    Yr, Wr = _rows(Y, rows), W[rows]
    knl = model.nl.size
    n_per = min(401, max(3, int(round(n_budget ** (1.0 / knl)))))
    lo, hi = model.lower[model.nl], model.upper[model.nl]
    fallback = np.where(np.isfinite(theta[rows]), theta[rows], 0.0)
    starts = [fallback]
    if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
        grid = vp.make_grid(list(zip(lo, hi, strict=True)), n_per)
        starts.append(_grid_starts(model, grid, fallback, Yr, Wr, "linear"))
    for start in starts:
        th, ob, cv, _ = vp.lm(
            model, start, Yr, Wr, space="linear", loss="l2", mode="varpro", max_iter=max_iter
        )
        old = obj[rows]
        better = cv & np.isfinite(ob) & ~(ob > old)
        idx = rows[better]
        theta[idx], obj[idx], conv[idx] = th[better], ob[better], True


def identifiable_rows(X, W, k):
    """Replicates whose resampled design can identify the law (else: failed).

    Each input that varies in the full design needs >= 2 distinct values among points
    with positive weight, and there must be more distinct design points than
    parameters. (An input constant in the full design was accepted by the fit's own
    check, :func:`lawfit.data.check_identifiable`: the form does not need it to vary.)
    """
    pos = (np.asarray(W) > 0).astype(float)
    ok = np.ones(pos.shape[0], bool)
    keys = []
    for x in X:
        u, inv = np.unique(np.asarray(x), return_inverse=True)
        keys.append(inv)
        if u.size < 2:
            continue
        ind = np.zeros((u.size, len(inv)))
        ind[inv, np.arange(len(inv))] = 1.0
        ok &= ((pos @ ind.T) > 0).sum(axis=1) >= 2
    _, pt = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    pt = np.ravel(pt)
    if pt.max() + 1 == len(pt):  # all points distinct (e.g. collapsed data)
        ok &= pos.sum(axis=1) > k
        return ok
    ind = np.zeros((pt.max() + 1, len(pt)))
    ind[pt, np.arange(len(pt))] = 1.0
    ok &= ((pos @ ind.T) > 0).sum(axis=1) > k
    return ok


def percentile_interval(draws, level):
    """Percentile interval per column of ``draws`` (NaN rows ignored)."""
    a = (1 - level) / 2
    with np.errstate(all="ignore"):
        lo = np.nanquantile(draws, a, axis=0)
        hi = np.nanquantile(draws, 1 - a, axis=0)
    return lo, hi


def bca_interval(draws, theta_hat, jack, level):
    """Bias-corrected and accelerated interval (Efron 1987).

    ``z0`` from the share of draws below the estimate; the acceleration ``a`` from
    the jackknife values ``jack`` (leave-one-unit-out estimates, shape (m, k)):
    ``a = sum(d^3) / (6 * sum(d^2)^1.5)`` with ``d = mean(jack) - jack``.
    """
    if jack is None:
        raise LawfitError("BCa intervals need jackknife values; refit with ci_method='bca'.")
    k = draws.shape[1]
    lo = np.full(k, np.nan)
    hi = np.full(k, np.nan)
    a_lo, a_hi = (1 - level) / 2, 1 - (1 - level) / 2
    for j in range(k):
        d = draws[:, j]
        d = d[np.isfinite(d)]
        if d.size < 10:
            continue
        prop = (np.sum(d < theta_hat[j]) + 0.5 * np.sum(d == theta_hat[j])) / d.size
        prop = min(max(prop, 1.0 / (d.size + 1)), d.size / (d.size + 1))
        z0 = stats.norm.ppf(prop)
        jj = jack[:, j]
        jj = jj[np.isfinite(jj)]
        dd = jj.mean() - jj
        den = 6.0 * np.sum(dd**2) ** 1.5
        acc = np.sum(dd**3) / den if den > 0 else 0.0
        qs = []
        for a in (a_lo, a_hi):
            z = stats.norm.ppf(a)
            qs.append(stats.norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z))))
        lo[j], hi[j] = np.quantile(d, qs[0]), np.quantile(d, qs[1])
    return lo, hi
