"""Carry a fitted law to another model from a few of its cells: a transfer prediction.

A law fitted on one model (the *source*) says how ΔL scales with rank and length. On a new
model, a user who has measured one or two cells wants the rest: "if the exponents carry
over, what will rank 4 at ℓ = 512 reach here?". :func:`transfer_law` keeps the source's
parameters except the ``free`` ones (by default the scale ``C``), fits those to the new
model's cells (the *anchors*) by least squares in log ΔL, and
:meth:`TransferredLaw.predict` gives one new cell's value with a prediction interval.

The interval is that of :func:`lawfit.robust.law_prediction_interval`, carried over: on the
log scale a new cell's error is the delta-method error of the source's kept parameters
(their CR2 cluster-robust covariance over target sequences) plus the scatter of the anchors
and of the new cell around the law, split into a between-sequence and a within-sequence
part (:func:`lawfit.robust.variance_components` of the source). A sequence's offset that the
anchors share with the new cell (``in_cluster``) is absorbed by the free scale and largely
cancels. Two assumptions, said in every result: the kept parameters are the new model's
too, and its cells scatter around its law as the source's cells do around theirs. The
interval tests the first only where the second holds; a prediction that lands outside
says that one of them fails. Calibrated on synthetic sweeps whose second model shares the
exponents (tests/lawfit/test_transfer.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize

from lawfit.data import LN2, as_frame, memorized_mask, memorized_threshold
from lawfit.errors import LawfitError
from lawfit.protocol import Flag, ResultProtocol
from lawfit.robust import cluster_covariance, variance_components
from lawfit.robust.law_intervals import _satterthwaite, _t_half

#: label of the anchors' target sequence when their cells name none
_ONE_SEQUENCE = "anchors"


@dataclass(frozen=True)
class TransferredLaw(ResultProtocol):
    """A source model's law with its free parameters fitted to a new model's cells.

    Its main table (``to_dataframe``) is :attr:`parameters`; the summary adds the anchors.

    Attributes
    ----------
    source : lawfit.FitResult
        The law fitted on the source model.
    params : dict
        Every parameter of the form for the new model: the source's, the free ones refitted.
    free : tuple of str
        The parameters fitted to the anchors.
    anchors : pandas.DataFrame
        The new model's cells used: inputs, response, their sequence (``cluster``), the
        transferred law's value there (``fitted``) and the log residual.
    cluster : str
        The column naming target sequences, in the source's cells and the anchors'.
    scatter : pandas.Series
        The source's variance components on the log scale (``variance_components``).
    flags : tuple of Flag
        What the numbers do not show (always the two assumptions; an exact fit when there
        are as many anchors as free parameters).
    """

    source: object
    params: dict
    free: tuple[str, ...]
    anchors: pd.DataFrame
    cluster: str
    scatter: pd.Series
    flags: tuple[Flag, ...]

    _summary_title = "Transferred law"
    _main_table = "parameters"

    @property
    def parameters(self) -> pd.DataFrame:
        """One row per parameter: the new model's value, the source's, and whether it is free."""
        src = dict(zip(self.source.param_names, map(float, self.source.theta), strict=True))
        return pd.DataFrame(
            {
                "param": list(self.params),
                "value": list(self.params.values()),
                "source": [src[p] for p in self.params],
                "free": [p in self.free for p in self.params],
            }
        )

    def _tables(self) -> list[tuple[str, pd.DataFrame]]:
        return [("parameters", self.parameters), ("anchors", self.anchors.copy())]

    def predict(self, *, in_cluster=None, level: float = 0.95, **inputs) -> pd.DataFrame:
        """Predict one new cell of the new model, with its prediction interval.

        Parameters
        ----------
        in_cluster : optional
            The target sequence (a value of the anchors' ``cluster`` column) the new cell
            is on; its offset, shared with those anchors, then cancels in part. None: a
            new sequence (and, for anchors that name none, their own is used when
            ``in_cluster="anchors"``).
        level : float
            Level of the interval.
        **inputs
            Scalars or arrays per input of the law, e.g. ``rank=[2, 4], length=256``.

        Returns
        -------
        pandas.DataFrame
            The inputs, ``predicted`` (the transferred law), ``low``, ``high``, ``dof``,
            ``sd_law`` (log-scale sd from the kept parameters), ``sd_scatter``,
            ``extrapolated`` (outside the source's fitted ranges) and, where the anchors
            have ``loss_after``, ``recall_predicted``: the predicted ΔL leaves less than
            ln 2 of the base model's loss (the anchors' median loss_before), where the cell
            would be memorized and ΔL saturates below the law. ``attrs`` hold the flags
            and the level.
        """
        if not 0 < level < 1:
            raise LawfitError(f"level must lie in (0, 1); got {level!r}.")
        cols = self.source._collect_inputs(None, inputs)  # the fit's own input checks
        X = [cols[c] for c in self.source.inputs]
        labels = self.anchors[self.cluster].to_numpy()
        if in_cluster is not None and in_cluster not in set(labels.tolist()):
            raise LawfitError(
                f"in_cluster={in_cluster!r} is not a {self.cluster} of the anchors; they have "
                f"{sorted(set(labels.tolist()), key=str)}. Pass one of them, or None for a "
                f"new {self.cluster}."
            )
        solver = _Solver(self.source, self.free, self.anchors)
        kept = [p for p in self.source.param_names if p not in self.free]
        phi = np.array([self.params[p] for p in kept])
        log_y = np.log(self.anchors[self.source.response].to_numpy(float))
        centre, g_phi, g_y = solver.gradients(phi, log_y, X)
        cov, dof_law = _kept_covariance(self.source, self.cluster, kept)
        var_law = np.einsum("mi,ij,mj->m", g_phi, cov, g_phi)
        between, within = _scatter_coefficients(g_y, labels, in_cluster)
        half, dof = _half_widths(var_law, dof_law, between, within, self.scatter, level)
        out = pd.DataFrame({c: x for c, x in zip(self.source.inputs, X, strict=True)})
        out["predicted"] = np.exp(centre)
        out["low"], out["high"] = np.exp(centre - half), np.exp(centre + half)
        out["dof"] = dof
        out["sd_law"] = np.sqrt(var_law)
        out["sd_scatter"] = np.sqrt(
            between * self.scatter["var_between"] + within * self.scatter["var_within"]
        )
        out["extrapolated"] = self.source._extrapolated(cols, warn=False)
        if "loss_after" in self.anchors:  # the base model's loss, as the anchors measured it
            before = self.anchors["loss_after"] + self.anchors[self.source.response]
            out["recall_predicted"] = out["predicted"] >= float(before.median()) - LN2
        where = f"{self.cluster} {in_cluster}" if in_cluster is not None else "a new sequence"
        out.attrs.update(
            interval=f"transfer prediction of one new cell on {where}",
            level=level,
            flags=self.flags,
        )
        return out

    def summary(self):
        """Return the source, the scatter carried over and the assumptions (text, HTML, LaTeX)."""
        src = self.source
        text = (
            f"{src.form.name} carried from a source fitted on {len(src.points)} cells "
            f"({src.space} space) to {len(self.anchors)} anchor cell(s), free: "
            f"{', '.join(self.free)}. Scatter carried over (log scale): between "
            f"{self.cluster} {self.scatter['sd_between']:.3g}, within "
            f"{self.scatter['sd_within']:.3g}."
        )
        parts = [text, self.parameters.to_string(index=False), "anchors:"]
        parts += [self.anchors.to_string(index=False), *(f"[{f.code}] {f}" for f in self.flags)]
        return self._summary_text("\n\n".join(parts[:2]) + "\n\n" + "\n".join(parts[2:]))


def transfer_law(
    fit,
    anchors,
    *,
    free: Sequence[str] = ("C",),
    cluster: str = "data_seed",
    exclude: str | float | None = "memorized",
) -> TransferredLaw:
    """Fit the free parameters of a source model's law to a few cells of a new model.

    Parameters
    ----------
    fit : lawfit.FitResult
        The law fitted on the source model: least squares, one group, with ``cluster`` a
        column of its cells naming two or more target sequences (its CR2 covariance and
        its variance components carry the uncertainty over).
    anchors : xarray.Dataset or pandas.DataFrame
        The new model's measured cells, in the contract's shape (one setting: select it
        first) or a tidy frame with the law's inputs and response.
    free : sequence of str
        The parameters refitted on the anchors (default the scale ``C``; ``("C", "b")``
        needs two anchors at different points). The others are the source's.
    cluster : str
        Column naming target sequences, in the source's cells and the anchors (anchors
        without it count as one sequence, labelled ``"anchors"``).
    exclude : {"memorized"} or float or None
        As for :func:`lawfit.fit`: anchors with ``loss_after <= ln 2`` are left out.

    Returns
    -------
    TransferredLaw

    Raises
    ------
    LawfitError
        A free parameter the form lacks, or none kept; fewer usable anchors than free
        parameters; an anchor with ΔL <= 0; a source fit the CR2 covariance cannot use.
    """
    from lawfit.result import FitResult

    if not isinstance(fit, FitResult):
        raise LawfitError(
            f"transfer_law carries one fitted law; got {type(fit).__name__}. Pass the "
            "source's FitResult (lawfit.fit on one setting; from fits by group, select one)."
        )
    free = _checked_free(fit, free)
    frame = _anchor_cells(fit, anchors, cluster, exclude)
    if len(frame) < len(free):
        raise LawfitError(
            f"expected at least {len(free)} usable anchor cell(s) for the free parameter(s) "
            f"{list(free)}; got {len(frame)}. Measure more cells of the new model (below "
            "recall: memorized cells are left out), or free fewer parameters, e.g. free=('C',)."
        )
    solver = _Solver(fit, free, frame)
    kept = [p for p in fit.param_names if p not in free]
    phi = np.array([fit.theta[fit.param_names.index(p)] for p in kept])
    log_y = np.log(frame[fit.response].to_numpy(float))
    theta = solver.theta(phi, log_y)
    params = dict(zip(fit.param_names, map(float, theta), strict=True))
    fitted = np.exp(solver.log_law(theta, [frame[c].to_numpy(float) for c in fit.inputs]))
    frame = frame.assign(fitted=fitted, log_residual=log_y - np.log(fitted))
    scatter = variance_components(fit, cluster=cluster)
    return TransferredLaw(fit, params, free, frame, cluster, scatter, _flags(fit, free, frame))


class CarriedAcross(NamedTuple):
    """The law of one model of a dataset carried to the models too small for their own.

    Attributes
    ----------
    source : str or None
        The model whose law is carried (the one fitted on the most cells, also when every
        model has a law and nothing is carried); None when no model has a law of its own.
    fit : FitResult or None
        That model's law.
    lawless : list of str
        The models no law could be fitted on.
    laws : dict
        Per lawless model, its :class:`TransferredLaw`.
    refused : dict
        Per lawless model not carried, why (the error's message).
    cluster : str
        The column naming target sequences that the scatter is carried over (the
        dataset's target cluster, else ``seed``).
    """

    source: str | None
    fit: object
    lawless: list
    laws: dict
    refused: dict
    cluster: str


def carry_across_models(ds, *, free: Sequence[str] = ("C",)) -> CarriedAcross:
    """Carry the law of the model with the most fitted cells to the models without one.

    Parameters
    ----------
    ds : xarray.Dataset
        One setting's cells of two or more models along ``model`` (SFT, say; each model may
        have its own adapter placement), e.g. from ``collect combine``.
    free : sequence of str
        As for :func:`transfer_law`.

    Returns
    -------
    CarriedAcross
        Nothing carried (empty ``laws``) when every model, or none (``source`` None), has
        a law of its own.
    """
    import warnings

    from lawfit.data import target_cluster
    from lawfit.fitting import fit as fit_law

    fits = {}
    for m in (str(v) for v in ds["model"].values):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits[m] = fit_law(ds.sel(model=[m]), profile=False)
        except LawfitError:
            fits[m] = None
    lawless = [m for m, f in fits.items() if f is None]
    fitted = {m: f for m, f in fits.items() if f is not None}
    cluster = target_cluster(ds) or "seed"
    if not fitted:
        return CarriedAcross(None, None, lawless, {}, {}, cluster)
    source = max(fitted, key=lambda m: len(fitted[m].points))
    laws, refused = {}, {}
    for m in lawless:
        try:
            laws[m] = transfer_law(fitted[source], ds.sel(model=[m]), free=free, cluster=cluster)
        except LawfitError as exc:
            refused[m] = str(exc)
    return CarriedAcross(source, fitted[source], lawless, laws, refused, cluster)


def transfer_check(
    fit,
    cells,
    *,
    free: Sequence[str] = ("C",),
    cluster: str = "data_seed",
    level: float = 0.95,
) -> pd.DataFrame:
    """Each of a new model's cells predicted from its others by the law carried over.

    Leave-one-out over the new model's usable cells (memorized ones left out): each is
    predicted by :func:`transfer_law` with the other cells as anchors, on its own target
    sequence when the anchors hold it (``in_cluster``), else on a new one. A retrospective
    check of the transfer, on cells that were not written down before they ran; the folds
    share their anchors, so the rows are not independent tests.

    Parameters
    ----------
    fit, free, cluster
        As for :func:`transfer_law`.
    cells : xarray.Dataset or pandas.DataFrame
        The new model's cells.
    level : float
        Level of the prediction intervals.

    Returns
    -------
    pandas.DataFrame
        One row per cell with enough others to anchor it: the inputs, ``cluster``,
        ``measured``, ``predicted``, ``low``, ``high``, ``error_pct``, ``inside`` and
        ``anchors`` (how many). Empty when no cell has enough others.
    """
    free = _checked_free(fit, free)
    frame = _anchor_cells(fit, cells, cluster, "memorized")
    rows = []
    for i in range(len(frame)):
        others = frame.drop(index=i)
        if len(others) < len(free):
            continue
        law = transfer_law(fit, others, free=free, cluster=cluster, exclude=None)
        cell, label = frame.iloc[i], frame[cluster].iloc[i]
        own = label if label in set(others[cluster].tolist()) else None
        at = {c: float(cell[c]) for c in fit.inputs}
        row = law.predict(in_cluster=own, level=level, **at).iloc[0]
        measured = float(cell[fit.response])
        rows.append(
            {
                **at,
                cluster: label,
                "measured": measured,
                "predicted": row["predicted"],
                "low": row["low"],
                "high": row["high"],
                "error_pct": 100 * (measured / row["predicted"] - 1),
                "inside": bool(row["low"] <= measured <= row["high"]),
                "anchors": len(others),
            }
        )
    return pd.DataFrame(rows)


def _checked_free(fit, free) -> tuple[str, ...]:
    """Return the free parameters as a tuple; refuse unknown names, or freeing them all."""
    free = (free,) if isinstance(free, str) else tuple(free)
    unknown = [p for p in free if p not in fit.param_names]
    if unknown or not free:
        raise LawfitError(
            f"free must name parameters of the law {list(fit.param_names)}; got {list(free)}. "
            "Pass e.g. free=('C',) or free=('C', 'b')."
        )
    if len(free) == len(fit.param_names):
        raise LawfitError(
            f"free={list(free)} frees every parameter: nothing carries over from the source. "
            "Fit the new model's cells with lawfit.fit instead."
        )
    return free


def _anchor_cells(fit, anchors, cluster: str, exclude) -> pd.DataFrame:
    """Return the anchors' usable cells (inputs, response, sequence), memorized ones out."""
    variables = [fit.response] + [c for c in ("loss_after",) if _has(anchors, c)]
    frame, _ = as_frame(anchors, variables=variables, inputs=fit.inputs)
    if exclude is not None and "loss_after" in frame:
        frame = frame.loc[~memorized_mask(frame, memorized_threshold(exclude), "anchors: ")]
    if cluster not in frame:
        frame = frame.assign(**{cluster: _ONE_SEQUENCE})
    y = frame[fit.response].to_numpy(float)
    if (y <= 0).any():
        raise LawfitError(
            f"anchor cells need {fit.response} > 0 (the law is carried on the log scale); "
            f"got {y[y <= 0].tolist()}. Leave those cells out of the anchors."
        )
    keep = [*fit.inputs, fit.response, cluster]
    return frame[keep + [c for c in ("loss_after",) if c in frame]].reset_index(drop=True)


def _has(data, name: str) -> bool:
    return name in getattr(data, "data_vars", getattr(data, "columns", ()))


class _Solver:
    """The free parameters as a function of the kept ones and the anchors' log responses."""

    def __init__(self, fit, free: tuple[str, ...], anchors: pd.DataFrame):
        self.fit, self.free = fit, free
        self.free_idx = [fit.param_names.index(p) for p in free]
        self.kept_idx = [i for i in range(len(fit.param_names)) if i not in self.free_idx]
        self.X = [anchors[c].to_numpy(float) for c in fit.inputs]
        self.start = fit.theta[self.free_idx].astype(float)

    def log_law(self, theta: np.ndarray, X) -> np.ndarray:
        kw = dict(zip(self.fit.param_names, theta, strict=True))
        with np.errstate(all="ignore"):
            return np.log(np.asarray(self.fit.form.func(*X, **kw), float))

    def theta(self, phi: np.ndarray, log_y: np.ndarray) -> np.ndarray:
        """Every parameter: ``phi`` kept, the free ones by least squares in log ΔL."""
        theta = np.array(self.fit.theta, float)
        theta[self.kept_idx] = phi

        def resid(z):
            theta[self.free_idx] = z
            r = log_y - self.log_law(theta, self.X)
            return np.where(np.isfinite(r), r, 1e6)

        sol = optimize.least_squares(
            resid, self.start, x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15
        )
        theta[self.free_idx] = sol.x
        if not np.isfinite(self.log_law(theta, self.X)).all():
            raise LawfitError(
                f"the law with {list(self.free)} free cannot reach the anchors' values: with "
                "the source's other parameters it stays non-positive there. Free another "
                "parameter (e.g. 'b'), or check that the anchors are the same response."
            )
        return theta

    def gradients(self, phi, log_y, X):
        """Log prediction at ``X`` and its derivatives in the kept parameters and log y."""
        base = self.theta(phi, log_y)
        centre = self.log_law(base, X)
        self.start = base[self.free_idx]  # warm starts for the perturbed solves

        def moved(vec, j, h, target):
            v = vec.copy()
            v[j] += h
            args = (v, log_y) if target == "phi" else (phi, v)
            return (self.log_law(self.theta(*args), X) - centre) / h

        g_phi = np.column_stack(
            [moved(phi, j, 1e-6 * max(1.0, abs(phi[j])), "phi") for j in range(phi.size)]
        )
        g_y = np.column_stack([moved(log_y, a, 1e-6, "y") for a in range(log_y.size)])
        return centre, g_phi.reshape(centre.size, -1), g_y.reshape(centre.size, -1)


def _kept_covariance(fit, cluster: str, kept: list[str]) -> tuple[np.ndarray, float]:
    """CR2 covariance of the kept parameters and the smallest of their dof."""
    cov, dof, _ = cluster_covariance(fit, cluster)
    idx = [fit.param_names.index(p) for p in kept]
    return cov[np.ix_(idx, idx)], float(np.min(dof[idx]))


def _scatter_coefficients(g_y: np.ndarray, labels: np.ndarray, in_cluster):
    """Per point, how many σ²_between and σ²_within the prediction error holds.

    The error is Σ_a g_a ε_a − ε_new, each ε the sequence's offset u plus the cell's own w:
    within, Σ g_a² + 1; between, Σ_s (Σ_{a∈s} g_a)² + 1 − 2 Σ_{a∈s_new} g_a (the new
    cell's offset cancels against the anchors that share its sequence).
    """
    within = (g_y**2).sum(axis=1) + 1.0
    between = np.ones(g_y.shape[0])
    for s in pd.unique(labels):
        share = g_y[:, labels == s].sum(axis=1)
        between += share**2 - (2 * share if s == in_cluster else 0.0)
    return between, within


def _half_widths(var_law, dof_law, between, within, vc, level) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the t interval's half-width on the log scale and its Satterthwaite dof."""
    pairs = [
        _t_half(*_satterthwaite(_variance_terms(v, dof_law, b, w, vc)), level)
        for v, b, w in zip(var_law, between, within, strict=True)
    ]
    return np.array([h for h, _ in pairs]), np.array([d for _, d in pairs])


def _variance_terms(var_law, dof_law, between, within, vc) -> list[tuple[float, float]]:
    """(variance, dof) terms for Satterthwaite: the law and the offsets joined, the cells apart.

    As in :func:`lawfit.robust.law_prediction_interval`, the kept parameters' CR2 variance
    and the between-sequence term are read off the same few sequence effects: one term on
    the smaller of their dof.
    """
    var_b = between * vc["var_between"]
    terms = [(var_law + var_b, min(dof_law, vc["df_between"]) if var_b > 0 else dof_law)]
    return [*terms, (within * vc["var_within"], vc["df_within"])]


def _flags(fit, free: tuple[str, ...], anchors: pd.DataFrame) -> tuple[Flag, ...]:
    kept = [p for p in fit.param_names if p not in free]
    flags = [
        Flag(
            "transfer_assumptions",
            f"the source's {', '.join(kept)} are taken as the new model's, and its cells are "
            "taken to scatter around its law as the source's do (between and within target "
            "sequences): a prediction outside its interval says one of these fails",
            severity="info",
        )
    ]
    if len(anchors) == len(free):
        flags.append(
            Flag(
                "exact_anchor_fit",
                f"{len(anchors)} anchor cell(s) for {len(free)} free parameter(s): the law "
                "passes through them, and their scatter enters only through the source's",
                severity="info",
            )
        )
    return tuple(flags)
