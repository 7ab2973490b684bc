"""Which cells to collect next: sequential design for the law's parameters.

A cell costs minutes to hours of training; the law's exponents are what it is collected
for. At the current estimate θ̂ of a form's parameters, a cell at design point x adds the
row J(x) = ∂f(x; θ)/∂θ to the Fisher information of the least-squares fit,
F = Σ J(x)ᵀ J(x) / σ², and Cov(θ̂) ≈ F⁻¹ (the same linearisation as the fit's asymptotic
covariance). :func:`next_cells` orders candidate cells greedily by how much each lowers
the summed variance of chosen parameters (A-optimality on them, default α and β) per unit
of cost, updating F after each pick, so that a collection that is cut short holds the most
informative cells it could afford. Until the design holds more distinct points than the
form has parameters (the fit's own minimum, :func:`lawfit.data.check_identifiable`: replicates
measure noise, not the law's shape), only cells at new points are picked, and the standard
errors reported are infinite.

What the score does not see: cells the fit excludes (memorized, ``loss_after ≤ ln 2``)
add nothing to it, though they show where recall switches on; the errors are taken as
independent with one σ (cells of one target sequence share its content, and the law may
not hold at an untried point); and the order is only as good as θ̂, so it should be
recomputed as cells arrive. It is a local design, not a guarantee.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from lawfit.errors import LawfitError
from lawfit.forms import get_form

__all__ = ["form_jacobian", "next_cells", "parameter_se"]


def form_jacobian(form, frame: pd.DataFrame, theta: dict[str, float]) -> np.ndarray:
    """Return ∂f/∂θ of ``form`` at ``theta`` over the design points of ``frame``.

    Parameters
    ----------
    form : Form or str
        The law (its ``inputs`` are columns of ``frame``).
    frame : pandas.DataFrame
        One row per design point.
    theta : dict
        Parameter values, by name.

    Returns
    -------
    numpy.ndarray
        ``(n_points, n_params)``, columns in ``form.params`` order: the form's analytic
        Jacobian where it has one, else central differences.
    """
    form = get_form(form)
    missing = [c for c in form.inputs if c not in frame]
    if missing:
        raise LawfitError(
            f"the design needs the inputs {list(form.inputs)} of {form.name!r}; "
            f"the frame has {sorted(frame.columns)} (missing {missing})."
        )
    X = [frame[c].to_numpy(float) for c in form.inputs]
    n = len(frame)
    if form.jac is not None:
        cols = form.jac(*X, **theta)
        return np.column_stack([np.broadcast_to(np.asarray(c, float), (n,)) for c in cols])
    cols = []
    for p in form.params:
        h = 1e-6 * max(1.0, abs(theta[p]))
        up = np.asarray(form.func(*X, **{**theta, p: theta[p] + h}), float)
        down = np.asarray(form.func(*X, **{**theta, p: theta[p] - h}), float)
        cols.append(np.broadcast_to((up - down) / (2 * h), (n,)))
    return np.column_stack(cols)


def parameter_se(information: np.ndarray, params: Sequence[str], names: Sequence[str]) -> dict:
    """Return the standard errors of ``names`` and their correlation under ``information``.

    Returns ``inf`` standard errors (and a NaN correlation) where the information is
    singular: the design does not identify the parameters yet. Singularity is judged on the
    information scaled to unit diagonal, so a parameter's units (C of a law whose ΔL is
    ~10 nats at r^α·ℓ^(−β) ~ 0.01) do not make an identified design look singular.
    """
    idx = [list(params).index(n) for n in names]
    scale = np.sqrt(np.clip(np.diag(information), 0, None))
    if np.any(scale <= 0):
        return {**{f"se_{n}": np.inf for n in names}, "corr": np.nan}
    s = np.linalg.svd(information / np.outer(scale, scale), compute_uv=False)
    if s[-1] <= 1e-10 * s[0]:
        return {**{f"se_{n}": np.inf for n in names}, "corr": np.nan}
    cov = np.linalg.inv(information)[np.ix_(idx, idx)]
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    out = {f"se_{n}": float(v) for n, v in zip(names, se, strict=True)}
    out["corr"] = float(cov[0, 1] / (se[0] * se[1])) if len(names) == 2 else np.nan
    return out


def _score(information: np.ndarray, idx: list[int], ridge: np.ndarray, dof) -> float:
    """Return the design criterion: summed variance, or with ``dof`` t²(ν)·variance."""
    if dof is None:
        return _a_criterion(information, idx, ridge)
    var = np.diag(np.linalg.inv(information + ridge))[idx]
    t = stats.t.ppf(0.975, np.where(np.isfinite(dof), np.maximum(dof, 1.0), 1.0))
    return float(np.sum(t**2 * var))


def _a_criterion(information: np.ndarray, idx: list[int], ridge: np.ndarray) -> float:
    """Return the chosen parameters' summed variance (a ridge keeps it finite if singular)."""
    return float(np.trace(np.linalg.inv(information + ridge)[np.ix_(idx, idx)]))


def next_cells(
    form,
    theta: dict[str, float],
    sigma: float,
    done: pd.DataFrame,
    candidates: pd.DataFrame,
    *,
    cost: str | None = "cost",
    targets: Sequence[str] = ("alpha", "beta"),
    greedy: bool = True,
    cluster: str | None = None,
    criterion: str = "variance",
) -> pd.DataFrame:
    """Order candidate cells by how much each lowers the targets' variance per unit cost.

    Parameters
    ----------
    form : Form or str
        The law whose parameters the cells should pin down (e.g. ``"power_law"``).
    theta : dict
        Its current estimate (a fit on the finished cells, or a prior fit).
    sigma : float
        Residual standard deviation of one cell (scales the standard errors, not the order).
    done : pandas.DataFrame
        Finished cells the fit uses (memorized ones left out), with the form's inputs.
    candidates : pandas.DataFrame
        Pending cells with the form's inputs, a boolean ``informative`` column (False for a
        cell the fit would exclude, e.g. predicted memorized) and a positive ``cost`` column
        (FLOPs or hours; ``cost=None`` counts every cell as 1).
    cost : str or None
        Name of the cost column.
    targets : sequence of str
        Parameters whose summed variance is to fall (A-optimality on them).
    greedy : bool
        False keeps the candidates' given order (e.g. a sweep's own priority) and only
        reports what each cell adds, for comparison.
    cluster : str, optional
        A column of ``done`` and ``candidates`` naming each cell's cluster (``"data_seed"``:
        its target sequence). Then the output adds ``dof_<name>``: the Bell-McCaffrey
        degrees of freedom that the cluster-robust interval (``conf_int("cluster")``) of
        each target would have once the cell is in (:func:`lawfit.robust.bell_mccaffrey_dof`;
        they depend on the design only). Near 1 means one cluster carries that parameter:
        its interval will be very wide however small the standard error above.
    criterion : {"variance", "cluster_width"}
        What a pick lowers per unit cost: the targets' summed variance (A-optimality), or,
        with ``cluster``, their summed squared cluster-robust half-width, t²(ν) × variance
        with ν the Bell-McCaffrey dof (1 where undefined), which also values replicates
        that spread a parameter's information over the clusters.

    Returns
    -------
    pandas.DataFrame
        The candidates in the order picked, informative ones first, with ``order``, the
        variance drop per unit cost at the time of the pick (``gain_per_cost``), and the
        standard errors of the targets and their correlation once the cell is added
        (``se_<name>``, ``corr``; ``dof_<name>`` with ``cluster``). Uninformative
        candidates follow in their given order.

    Raises
    ------
    LawfitError
        For non-finite or non-positive costs, unknown targets or a non-positive sigma.
    """
    form = get_form(form)
    _check(form, theta, sigma, candidates, cost, targets)
    if criterion not in ("variance", "cluster_width") or (criterion != "variance" and not cluster):
        raise LawfitError(
            f"criterion must be 'variance' or, with cluster=..., 'cluster_width'; got "
            f"{criterion!r} with cluster={cluster!r}."
        )
    idx = [form.params.index(t) for t in targets]
    info = np.zeros((len(form.params),) * 2)
    if len(done):
        J = form_jacobian(form, done, theta)
        info = J.T @ J / sigma**2
    useful = candidates[candidates["informative"].astype(bool)]
    rows = form_jacobian(form, useful, theta) / sigma if len(useful) else np.empty((0, 0))
    price = useful[cost].to_numpy(float) if cost else np.ones(len(useful))
    ridge = _ridge(info, rows)
    dof = _DesignDof(form, theta, done, useful, cluster, idx) if cluster else None
    keys = _point_keys(form, useful)
    points = set(_point_keys(form, done))
    left = list(range(len(useful)))
    picks, records = [], []
    while left:
        by_width = criterion == "cluster_width" and len(points) > len(form.params)
        now = _score(info, idx, ridge, dof.current() if by_width else None)
        drops = [
            now
            - _score(
                info + np.outer(rows[i], rows[i]), idx, ridge, dof.current(i) if by_width else None
            )
            for i in left
        ]
        per_cost = np.asarray(drops) / price[left]
        if len(points) <= len(form.params):  # the fit needs new points first
            per_cost[[keys[i] in points for i in left]] = -np.inf
        pick = int(np.argmax(per_cost)) if greedy else 0
        best = left.pop(pick)
        info = info + np.outer(rows[best], rows[best])
        points.add(keys[best])
        picks.append(best)
        records.append({"gain_per_cost": float(np.asarray(drops)[pick] / price[best])})
        records[-1].update(_se_once_fitted(info, len(points), form, targets))
        if dof is not None:
            records[-1].update(dof.after(best, identified=len(points) > len(form.params)))
    columns = ["gain_per_cost", *(f"se_{t}" for t in targets), "corr"]
    columns += [f"dof_{t}" for t in targets] if dof is not None else []
    picked = pd.DataFrame(records, columns=columns, dtype=float)
    head = useful.iloc[picks].reset_index(drop=True).join(picked)
    tail = candidates[~candidates["informative"].astype(bool)].reset_index(drop=True)
    out = pd.concat([head, tail], ignore_index=True)
    out.insert(0, "order", np.arange(1, len(out) + 1))
    return out


class _DesignDof:
    """The Bell-McCaffrey dof of the targets as cells join a clustered design."""

    def __init__(self, form, theta, done, useful, cluster, idx):
        for name, frame in (("done", done), ("candidates", useful)):
            if len(frame) and cluster not in frame:
                raise LawfitError(
                    f"cluster={cluster!r} must be a column of {name}; it has "
                    f"{sorted(frame.columns)}. Add it (e.g. data_seed) or pass cluster=None."
                )
        self.J = form_jacobian(form, done, theta) if len(done) else np.empty((0, len(form.params)))
        self.groups = list(done[cluster]) if len(done) else []
        self.rows = form_jacobian(form, useful, theta) if len(useful) else None
        self.labels = list(useful[cluster]) if len(useful) else []
        self.names, self.idx = [form.params[i] for i in idx], idx

    def current(self, candidate: int | None = None) -> np.ndarray:
        """Return the targets' dof of the design so far, with ``candidate`` added if given."""
        J, groups = self.J, self.groups
        if candidate is not None:
            J = np.vstack([J, self.rows[candidate]])
            groups = [*groups, self.labels[candidate]]
        _, g = np.unique(np.asarray(groups), return_inverse=True)
        if not len(g) or g.max() < 1:
            return np.full(len(self.idx), np.nan)
        from lawfit.robust import bell_mccaffrey_dof

        with warnings.catch_warnings():  # a cluster alone on a direction: dof say it
            warnings.simplefilter("ignore")
            return bell_mccaffrey_dof(J, np.ravel(g))[self.idx]

    def after(self, pick: int, identified: bool) -> dict:
        """Add candidate ``pick``; return ``dof_<name>`` of the design so far."""
        self.J = np.vstack([self.J, self.rows[pick]])
        self.groups.append(self.labels[pick])
        dof = self.current() if identified else np.full(len(self.idx), np.nan)
        return {f"dof_{n}": float(v) for n, v in zip(self.names, dof, strict=True)}


def _point_keys(form, frame: pd.DataFrame) -> list[tuple[float, ...]]:
    """Return each row's design point: its values of the form's inputs."""
    if not len(frame):
        return []
    values = frame[list(form.inputs)].to_numpy(float)
    return [tuple(v) for v in values]


def _se_once_fitted(info: np.ndarray, n_points: int, form, targets) -> dict:
    """Return the standard errors under ``info``; infinite while the fit refuses the design."""
    if n_points <= len(form.params):
        return {**{f"se_{t}": np.inf for t in targets}, "corr": np.nan}
    return parameter_se(info, form.params, targets)


def _ridge(info: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Return a tiny diagonal, relative to the information at stake, so that F inverts."""
    scale = np.diag(info).copy()
    if rows.size:
        scale += (rows**2).sum(axis=0)
    return np.diag(np.where(scale > 0, scale, 1.0) * 1e-8)


def _check(form, theta, sigma, candidates, cost, targets) -> None:
    unknown = [t for t in targets if t not in form.params]
    if unknown or set(form.params) - set(theta):
        raise LawfitError(
            f"targets must be parameters of {form.name!r} {list(form.params)} and theta must "
            f"give them all; got targets {list(targets)}, theta {sorted(theta)}."
        )
    if not (np.isfinite(sigma) and sigma > 0):
        raise LawfitError(f"sigma must be a positive number; got {sigma!r}.")
    if "informative" not in candidates:
        raise LawfitError(
            "candidates need a boolean 'informative' column (False where the fit would "
            "exclude the cell, e.g. predicted memorized)."
        )
    if cost is not None:
        c = candidates[cost].to_numpy(float) if cost in candidates else np.array([np.nan])
        if not (np.all(np.isfinite(c)) and np.all(c > 0)):
            raise LawfitError(
                f"the cost column {cost!r} must hold positive numbers for every candidate; "
                f"got {c[:5]}... Give cost=None to count every cell as 1."
            )
