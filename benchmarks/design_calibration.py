"""Coverage of the law's intervals on the shipped design itself (known truth, simulated).

``benchmarks/calibration.py`` checks the intervals on a large synthetic grid. The numbers
the README quotes come from a much smaller, unbalanced design: 17 cells at ranks 1-4 over
three target sequences, one of which alone holds some points. This script asks whether the
intervals are honest on *that* design, and on a design before it is collected:

1. fit the law to the dataset's cells (``lawfit.fit``, as the report does) and split the
   scatter around it into a between-sequence and a within-sequence part on the log scale
   (``lawfit.robust.variance_components``);
2. take that fit as the truth and simulate ``--n`` datasets at the same (rank, length,
   sequence) points, plus the ``--add`` points: each cell's ΔL is the law's value times
   ``exp(u_g + e)``, with ``u_g ~ N(0, sd_between²)`` shared by a sequence's cells and
   ``e ~ N(0, sd_within²)`` per cell;
3. fit each the same way and count how often the 95 % intervals of α, β and α − β cover
   the truth: the cluster-robust CR2 interval over sequences (``conf_int("cluster")``,
   ``contrast(..., cluster=...)``), which the README quotes, and the Wald interval that
   treats cells as independent, for comparison.

It prints coverage with its Monte-Carlo standard error, the median half-width and the median
Bell-McCaffrey degrees of freedom, one row per design and interval. Read it as a check of the
procedure at this design and at the estimated variance components; ``--sd-between`` and
``--sd-within`` ask what happens when the sequences differ more than three of them can show.

DATA is a contract dataset; its SFT cells are used (``--sel objective=sft``) unless ``--sel``
selects otherwise.

    python benchmarks/design_calibration.py data/law_cpu_fixed.nc  # the shipped law sweep
    python benchmarks/design_calibration.py data/law_cpu_fixed.nc --n 1000 \\
        --add rank=1,length=256,data_seed=3 --add rank=2,length=512,data_seed=3
    python benchmarks/design_calibration.py data/law_cpu_fixed.nc --sd-between 0.05

With ``--predict POINT`` (repeatable) it also checks, at that point, the mean law's CR2
interval against the truth's mean and the interval of one new cell
(``lawfit.robust.law_prediction_interval``, what ``lawfit fit --at`` prints) against a cell
drawn afresh there: on an unseen sequence (a new u), or with ``data_seed=G`` as a new cell
of sequence G (its u in the simulated data), the cells written down before they run:

    python benchmarks/design_calibration.py data/law_cpu_fixed.nc \
        --predict rank=2,length=512 --predict rank=2,length=512,data_seed=3

With ``--forms A B ...`` it asks instead whether the design can tell forms apart: each form
is fitted to the data and taken as the truth in turn, and the table gives the share of its
simulated datasets in which ``lawfit.compare`` picks each form by AICc (docs/analyses.md):

    python benchmarks/design_calibration.py data/law_cpu_fixed.nc --forms power_law saturating
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd

import lawfit
from lawfit.commands._common import add_data_args, open_selected
from lawfit.commands.fit import parse_point
from lawfit.data import as_frame
from lawfit.errors import LawfitError
from lawfit.robust import law_mean_interval, law_prediction_interval, variance_components

CONTRAST = {"alpha": 1.0, "beta": -1.0}


def check_points(add: list[dict[str, float]], cluster: str) -> None:
    """Refuse ``--add`` points that do not name rank, length and the sequence."""
    for point in add:
        missing = {"rank", "length", cluster} - set(point)
        if missing:
            raise LawfitError(
                f"each --add point needs rank, length and {cluster}; {sorted(missing)} missing "
                f"in {point}. Give e.g. --add rank=1,length=256,{cluster}=3."
            )


def truth_design(res, data, cluster: str, add: list[dict[str, float]]) -> pd.DataFrame:
    """The design's points with the truth's mean ΔL there: the fitted cells and ``add``.

    Each point keeps its cell's ``loss_before`` (forms such as ``saturating`` read it); an
    added point takes the mean over the data's cells of its length, or over all cells.
    """
    cells, _ = as_frame(data, variables=("loss_reduction", "loss_before"))
    keys = [k for k in ("rank", "length", cluster, "seed") if k in res.points and k in cells]
    design = res.points[["rank", "length", cluster, *keys[3:], "fitted"]]
    design = design.rename(columns={"fitted": "mean"})
    design = design.merge(cells[[*keys, "loss_before"]], on=keys, how="left", validate="1:1")
    design = design.assign(added=False)  # a seed column stays: replicates of one point
    if add:
        extra = pd.DataFrame(add)
        held = extra.merge(design[["rank", "length", cluster]], on=["rank", "length", cluster])
        if len(held):
            raise LawfitError(
                f"--add {held.iloc[0].to_dict()} is a cell the data already hold; add points "
                f"the design does not have yet (e.g. on a new {cluster})."
            )
        mean = res.predict(rank=extra["rank"], length=extra["length"], warn=False)["mean"]
        by_length = cells.groupby("length")["loss_before"].mean()
        before = extra["length"].map(by_length).fillna(cells["loss_before"].mean())
        extra = extra.assign(mean=mean.to_numpy(), loss_before=before.to_numpy(), added=True)
        extra = extra.assign(**{k: 0 for k in keys[3:]})  # a new point's first seed
        design = pd.concat([design, extra[design.columns]], ignore_index=True)
    return design


def simulate(design: pd.DataFrame, cluster: str, sd_between: float, sd_within: float, rng):
    """One dataset at ``design``: the truth times a sequence effect and a cell effect.

    The sequence effects drawn are in ``frame.attrs["effects"]`` (sequence -> u_g), and one
    more for an unseen sequence under the key ``None`` (:func:`new_cells` reads them).
    """
    groups, index = np.unique(design[cluster].to_numpy(), return_inverse=True)
    u = rng.normal(0.0, sd_between, len(groups) + 1)
    e = rng.normal(0.0, sd_within, len(design))
    seed = ["seed"] if "seed" in design else []
    frame = design[["rank", "length", cluster, *seed, "loss_before"]].copy()
    frame["loss_reduction"] = design["mean"].to_numpy() * np.exp(u[index] + e)
    frame.attrs["effects"] = {**dict(zip(groups.tolist(), u[:-1], strict=True)), None: u[-1]}
    return frame


def new_cells(points: pd.DataFrame, frame: pd.DataFrame, sd_within: float, rng) -> np.ndarray:
    """One new cell's ΔL at each of ``points``: the truth's mean times its sequence's effect.

    A point whose sequence is NaN is a cell of an unseen sequence (a fresh effect), else a
    new cell of that sequence of ``frame`` (its effect in the simulated data); each draws
    its own cell effect.
    """
    effects = frame.attrs["effects"]
    keys = [None if pd.isna(g) else g for g in points["sequence"]]
    u = np.array([effects[k] for k in keys])
    return points["mean"].to_numpy() * np.exp(u + rng.normal(0.0, sd_within, len(points)))


def coverage_once(frame: pd.DataFrame, cluster: str, truth: dict[str, float], predict=None):
    """Fit one simulated dataset; one record per (interval, target): covered, half-width, dof.

    ``predict`` (optional) holds points with the truth's ``mean`` there, their ``sequence``
    (NaN: an unseen one) and ``value``, one new cell drawn there (:func:`new_cells`): the
    records add the CR2 interval of the mean law against ``mean`` and the prediction
    interval of one new cell (``law_prediction_interval``) against ``value``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the power law does not read loss_before; without it a large simulated sequence
        # effect may push a cell past its ceiling, which the error model does not know
        res = lawfit.fit(frame.drop(columns="loss_before"), exclude=None, profile=False)
        robust = res.conf_int("cluster", cluster=cluster)
        wald = res.conf_int("wald")
        contrasts = {
            "cluster": res.contrast(CONTRAST, cluster=cluster),
            "wald": res.contrast(CONTRAST),
        }
        records = [] if predict is None else _prediction_records(res, cluster, predict)
    for method, table in (("cluster", robust), ("wald", wald)):
        for name in ("alpha", "beta"):
            low, high = table.loc[name, "low"], table.loc[name, "high"]
            dof = table.loc[name, "dof"] if "dof" in table else np.nan
            records.append(_record(method, name, low, high, dof, truth[name]))
        c = contrasts[method]
        records.append(_record(method, "alpha - beta", c["low"], c["high"], c["dof"], truth["d"]))
    return records


def _prediction_records(res, cluster: str, predict: pd.DataFrame) -> list[dict]:
    """Coverage records of the mean law's and one new cell's intervals at ``predict``."""
    records = []
    for p in predict.itertuples(index=False):
        at = {"rank": p.rank, "length": p.length}
        where = "a new sequence" if pd.isna(p.sequence) else f"{cluster} {p.sequence:g}"
        name = f"dL r={p.rank:g} l={p.length:g}"
        mean = law_mean_interval(res, cluster=cluster, **at).iloc[0]
        records.append(_record("cluster", f"mean {name}", mean.low, mean.high, mean.dof, p.mean))
        member = None if pd.isna(p.sequence) else p.sequence
        cell = law_prediction_interval(res, cluster=cluster, in_cluster=member, **at).iloc[0]
        target = f"cell {name} on {where}"
        records.append(_record("prediction", target, cell.low, cell.high, cell.dof, p.value))
    return records


def _record(method, target, low, high, dof, true) -> dict:
    return {
        "interval": method,
        "target": target,
        "covered": bool(low <= true <= high),
        "half_width": (high - low) / 2,
        "dof": float(dof),
    }


def run_design(name, design, cluster, sd_between, sd_within, truth, n, rng, predict=None):
    """Coverage summary of ``n`` simulated datasets at ``design`` (and at ``predict``)."""
    records = []
    for _ in range(n):
        frame = simulate(design, cluster, sd_between, sd_within, rng)
        if predict is not None:
            predict = predict.assign(value=new_cells(predict, frame, sd_within, rng))
        records += coverage_once(frame, cluster, truth, predict)
    df = pd.DataFrame(records)
    out = df.groupby(["interval", "target"], sort=False).agg(
        coverage=("covered", "mean"),
        half_width=("half_width", "median"),
        dof=("dof", "median"),
    )
    out["mc_se"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / n)
    out.insert(0, "design", name)
    return out.reset_index()


def noise_sds(res, args) -> tuple[float, float]:
    """(sd_between, sd_within) on the log scale: the fit's variance components, or as given."""
    parts = variance_components(res, cluster=args.cluster)
    sd_b = parts["sd_between"] if args.sd_between is None else args.sd_between
    sd_w = parts["sd_within"] if args.sd_within is None else args.sd_within
    return float(sd_b), float(sd_w)


def coverage_table(data, args, add, rng) -> pd.DataFrame:
    """Coverage of the power law's intervals at the design as shipped, and with ``add``."""
    res = lawfit.fit(data, profile=False)
    sd_b, sd_w = noise_sds(res, args)
    truth = {k: float(res.params[k]) for k in ("alpha", "beta")}
    truth["d"] = truth["alpha"] - truth["beta"]
    design = truth_design(res, data, args.cluster, add)  # the data read once for both
    shipped = design[~design["added"]]
    print(
        f"truth: the fit to {args.data} ({len(shipped)} cells, "
        f"{shipped[args.cluster].nunique()} sequences): "
        + ", ".join(f"{k} = {v:.4g}" for k, v in res.params.items())
        + f"; sd_between {sd_b:.3g}, sd_within {sd_w:.3g} (log scale); {args.n} datasets each"
    )
    designs = [("as shipped", shipped)]
    if add:
        designs.append((f"+ {len(add)} added", design))
    predict = prediction_points(res, args.predict, shipped, args.cluster)
    tables = [
        run_design(name, design, args.cluster, sd_b, sd_w, truth, args.n, rng, predict)
        for name, design in designs
    ]
    return pd.concat(tables, ignore_index=True)


def prediction_points(res, points, design: pd.DataFrame, cluster: str):
    """The ``--predict`` points with the truth's mean there; None without any.

    A point names rank and length, and optionally a sequence of the design (a new cell of
    that sequence; without one, of an unseen sequence).
    """
    if not points:
        return None
    rows = []
    for point in points:
        extra = set(point) - {"rank", "length", cluster}
        if {"rank", "length"} - set(point) or extra:
            raise LawfitError(
                f"each --predict point names rank, length and optionally {cluster}; got "
                f"{point}. Give e.g. --predict rank=2,length=512 (a new sequence) or "
                f"--predict rank=2,length=512,{cluster}=3 (a new cell of sequence 3)."
            )
        sequence = point.get(cluster, np.nan)
        known = set(design[cluster].tolist())
        if not np.isnan(sequence) and sequence not in known:
            raise LawfitError(
                f"--predict {point}: {cluster} {sequence:g} has no cell in the design; it has "
                f"{sorted(known)}. Leave {cluster} out to predict a cell of an unseen sequence."
            )
        rows.append({"rank": point["rank"], "length": point["length"], "sequence": sequence})
    out = pd.DataFrame(rows)
    mean = res.predict(rank=out["rank"], length=out["length"], warn=False)["mean"]
    return out.assign(mean=mean.to_numpy())


def form_confusion(data, args, add, rng) -> pd.DataFrame:
    """Which form ``lawfit.compare`` picks (AICc) when each of ``args.forms`` is the truth.

    Each truth form is fitted to the data, its variance components estimated (or given),
    and ``args.n`` datasets simulated from it at the design (with ``add``) are compared.
    Rows: the truth; columns: the share of datasets each form wins; ``n``: datasets.
    """
    picks = []
    for form in args.forms:
        res = lawfit.fit(data, form=form, profile=False)
        sd_b, sd_w = noise_sds(res, args)
        design = truth_design(res, data, args.cluster, add)
        for _ in range(args.n):
            frame = simulate(design, args.cluster, sd_b, sd_w, rng)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                picks.append((form, lawfit.compare(frame, exclude=None, holdout=()).best))
    df = pd.DataFrame(picks, columns=["truth", "picked"])
    table = pd.crosstab(df["truth"], df["picked"], normalize="index").round(3)
    return table.assign(n=df.groupby("truth").size())


def parse_args(argv):
    """The command line, checked before any fitting."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_args(ap)
    ap.set_defaults(sel=None)
    ap.add_argument("--cluster", default="data_seed", help="sequence column (default data_seed)")
    ap.add_argument(
        "--add",
        action="append",
        default=[],
        type=parse_point,
        metavar="POINT",
        help="a design point to add, e.g. rank=1,length=256,data_seed=3 (repeatable)",
    )
    ap.add_argument(
        "--predict",
        action="append",
        default=[],
        type=parse_point,
        metavar="POINT",
        help="also check the intervals of the mean law and of one new cell at this point: "
        "rank=2,length=512 (a cell of an unseen sequence) or rank=2,length=512,data_seed=3 "
        "(a new cell of sequence 3); repeatable",
    )
    ap.add_argument("--n", type=int, default=500, help="simulated datasets per design")
    ap.add_argument("--rng", type=int, default=0, help="random seed (default 0)")
    ap.add_argument(
        "--sd-between",
        type=float,
        default=None,
        help="log-scale sd of a sequence's effect (default: the data's estimate)",
    )
    ap.add_argument(
        "--sd-within",
        type=float,
        default=None,
        help="log-scale sd of a cell around its sequence (default: the estimate)",
    )
    ap.add_argument(
        "--forms",
        nargs="+",
        default=None,
        metavar="FORM",
        help="instead of coverage: which form lawfit.compare picks (AICc) when each of "
        "these forms, fitted to the data, is the truth (e.g. power_law saturating)",
    )
    args = ap.parse_args(argv)
    args.sel = args.sel or ["objective=sft"]
    if args.n < 10:
        raise LawfitError(f"--n must be at least 10 simulated datasets; got {args.n}.")
    unknown = set(args.forms or ()) - set(lawfit.available_forms())
    if unknown:
        raise LawfitError(
            f"--forms: unknown form(s) {sorted(unknown)}; expected names of "
            f"lawfit.available_forms(): {sorted(lawfit.available_forms())}."
        )
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    add = args.add
    check_points(add, args.cluster)
    data = open_selected(args)
    rng = np.random.default_rng(args.rng)
    start = time.perf_counter()
    if args.forms:
        picked = lawfit.compare(data, holdout=()).best
        print(f"the data's own pick (lawfit.compare, AICc): {picked}")
        print(f"share of {args.n} simulated datasets per truth won by each form (AICc):")
        print(form_confusion(data, args, add, rng).to_string())
        print(f"\n{time.perf_counter() - start:.0f} s")
        return 0
    table = coverage_table(data, args, add, rng)
    rounded = table.round({"coverage": 3, "mc_se": 3, "half_width": 4, "dof": 2})
    print(rounded.to_string(index=False))
    print(f"\n{time.perf_counter() - start:.0f} s; coverage of 95 % intervals (nominal 0.95)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LawfitError as err:
        sys.exit(f"error: {err}")
