"""``lawfit fit``: fit a law to a NetCDF sweep and print the summary."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping

import numpy as np

from lawfit._tokens import GROUP_DIMS
from lawfit.commands import _common as cli
from lawfit.errors import LawfitError

_EPILOG = """\
examples:
  lawfit fit sweep.nc
  lawfit fit sweep.nc --sel model=llama --sel task=phonebook --bootstrap 2000 --unit seed
  lawfit fit sweep.nc --by model --json fits.json
  lawfit fit sweep.nc --sel objective=sft --unit data_seed --bootstrap 500 --at rank=4,length=512
  lawfit fit sweep.nc --by model --shared alpha beta --space log   do two models share α, β?
  lawfit fit sweep.nc --bootstrap 2000 --unit data_seed --cluster data_seed
  lawfit fit sweep.nc --cluster data_seed --at rank=1,length=1024 --in-cluster 1
  lawfit fit sweep.nc --lack-of-fit            does the law miss by more than replicates scatter?
"""


def parse_sel(items):
    """Turn ``["dim=value", ...]`` into a dict, converting numbers where possible."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise LawfitError(f"--sel expects dim=value; got {it!r}.")
        k, v = it.split("=", 1)
        key = k.strip()
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                pass
        if key in out:
            raise LawfitError(
                f"--sel {it!r}: {key} is already selected ({key}={out[key]!r}); select one "
                "value per dim (run the command once per value, or fit groups with --by)."
            )
        out[key] = v
    return out


def apply_sel(ds, sel):
    """Select coordinates of a Dataset with a clear error for unknown dims/values."""
    for k, v in sel.items():
        if k not in ds.dims:
            raise LawfitError(
                f"--sel {k}=...: the dataset has no dim {k!r}; dims are {sorted(ds.dims)}."
            )
        if v not in ds[k].values.tolist():
            raise LawfitError(f"--sel {k}={v!r}: value not found; {k} has {ds[k].values.tolist()}.")
        ds = ds.sel({k: v})
    return drop_uncollected(ds) if sel else ds


def drop_uncollected(ds):
    """Drop values of grouping dims that hold no collected cell after a selection.

    Selecting ``task=long_context`` in a sweep that also holds PhoneBook leaves the
    PhoneBook-only ``random_ratio`` value with nothing but ``not_run`` cells; such empty
    slices are dropped so that one setting remains.
    """
    if "loss_reduction" not in ds:
        return ds
    collected = ds["loss_reduction"].notnull()
    if "status" in ds:
        collected = collected | (ds["status"] != "not_run")
    for d in GROUP_DIMS:
        if d in ds.dims and ds.sizes[d] > 1 and d in collected.dims:
            keep = collected.any([x for x in collected.dims if x != d]).values
            if keep.any() and not keep.all():
                ds = ds.isel({d: np.flatnonzero(keep)})
    return ds


def parse_point(text: str) -> dict[str, float]:
    """Parse ``"rank=4,length=512"`` into ``{"rank": 4.0, "length": 512.0}``.

    Raises
    ------
    argparse.ArgumentTypeError
        On an item that is not ``NAME=NUMBER`` with a finite number, or an input named twice
        (argparse reports it before any work).
    """
    point = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            if not sep or not name:
                raise ValueError
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected INPUT=NUMBER items joined by commas, e.g. rank=4,length=512; "
                f"got {item!r} in {text!r}"
            ) from None
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"{item!r} in {text!r}: give a finite number")
        if name in point:
            raise argparse.ArgumentTypeError(
                f"{text!r} names an input twice; give each once (a second point is a second --at)"
            )
        point[name] = number
    return point


def _print_points(res, points: list[dict[str, float]], level: float, cluster, in_cluster) -> None:
    """Print each fit's predicted dL at the --at points, with the intervals it has.

    Prediction intervals always; with ``cluster``, the cluster-robust intervals of the mean
    law and of one new cell (on a new target sequence, or of ``in_cluster``).
    """
    import pandas as pd

    for where, one in _each_fit(res):
        predicted = [
            one.predict(interval="prediction", confidence_level=level, **_as_lists(pt))
            for pt in points
        ]
        # predict's own label: a degenerate bootstrap falls back to the delta method
        method = predicted[0].attrs["method"]
        source = "bootstrap" if method == "bootstrap" else "delta method"
        tables = {
            f"{level:.0%} prediction intervals (a new cell; from the fit's {source})": predicted
        }
        if cluster:
            tables.update(_cluster_tables(one, points, level, cluster, in_cluster))
        for what, rows in tables.items():
            print(f"\npredicted dL{where}, {what}:")
            print(pd.concat(rows, ignore_index=True).to_string(index=False))
            flags = {f.code: f.message for r in rows for f in r.attrs.get("flags", ())}
            for message in flags.values():
                print(f"flag: {message}")


def _cluster_tables(one, points, level: float, cluster: str, in_cluster) -> dict[str, list]:
    """Return the cluster-robust tables of --at: the mean law's interval and a new cell's."""
    from lawfit.robust import law_mean_interval, law_prediction_interval

    whose = f"a new {cluster}" if in_cluster is None else f"{cluster} {in_cluster}"
    return {
        f"{level:.0%} cluster-robust intervals over {cluster} (the mean law)": [
            law_mean_interval(one, cluster=cluster, level=level, **_as_lists(pt)) for pt in points
        ],
        f"{level:.0%} cluster-robust prediction intervals over {cluster} (one new cell on "
        f"{whose}: the mean law's variance plus the scatter between and within {cluster})": [
            law_prediction_interval(
                one, cluster=cluster, level=level, in_cluster=in_cluster, **_as_lists(pt)
            )
            for pt in points
        ],
    }


def _check_points(points: list[dict[str, float]], form: str, capacity: str) -> None:
    """Check that each --at point names exactly the form's inputs, before any fitting.

    Raises
    ------
    LawfitError
        A point that misses an input of the form, names one it does not have, or gives one
        a value <= 0.
    """
    from lawfit.forms import get_form, resolve_inputs

    need = set(resolve_inputs(get_form(form), capacity))
    for pt in points:
        got = ",".join(f"{k}={v:g}" for k, v in pt.items())
        if set(pt) != need:
            raise LawfitError(
                f"--at {got}: the {form} form takes exactly the inputs {sorted(need)}; "
                f"got {sorted(pt)}. Give each, e.g. --at "
                + ",".join(f"{k}=..." for k in sorted(need))
                + "."
            )
        if min(pt.values()) <= 0:
            raise LawfitError(
                f"--at {got}: the law's inputs (rank, length, n_params, loss_before) are "
                "positive; give each a value > 0."
            )


def _as_lists(point: dict[str, float]) -> dict[str, list[float]]:
    return {k: [v] for k, v in point.items()}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``fit`` subcommand."""
    p = subparsers.add_parser(
        "fit",
        help="fit the memory law to a sweep (.nc) and print the summary",
        description="Fit dL = C * r^alpha * length^(-beta) + b (or another registered form) "
        "to a NetCDF sweep in the lawfit data contract.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", help="NetCDF file (loss_reduction over rank and length)")
    p.add_argument("--form", default="power_law", help="registered form (default: power_law)")
    p.add_argument(
        "--capacity",
        choices=["rank", "n_params"],
        default="rank",
        help="capacity input: LoRA rank or trainable parameter count",
    )
    p.add_argument(
        "--by", nargs="+", default=None, metavar="DIM", help="grouping dims: one fit per group"
    )
    p.add_argument(
        "--shared",
        nargs="+",
        default=None,
        metavar="PARAM",
        help="with --by: also test whether the groups share these parameters of the form "
        "(e.g. alpha beta: do two model families share the exponents?)",
    )
    p.add_argument(
        "--sel",
        action="append",
        default=[],
        metavar="DIM=VALUE",
        help="select a coordinate first (repeatable)",
    )
    p.add_argument(
        "--exclude",
        default="memorized",
        help="'memorized' (loss_after <= ln 2, default), 'none', or a threshold",
    )
    p.add_argument(
        "--loss",
        choices=["l2", "huber"],
        default="l2",
        help="least squares (l2) or the outlier-robust Huber loss (default: l2)",
    )
    p.add_argument(
        "--huber-delta",
        type=cli.bounded_float(0.0, what="a Huber threshold"),
        default=None,
        help="Huber threshold in fit-space units (default: 1.345 x the MAD scale "
        "of the least-squares residuals)",
    )
    p.add_argument(
        "--space",
        choices=["auto", "linear", "log"],
        default="auto",
        help="fit in linear ΔL or in log ΔL; auto (default): log when the residual "
        "spread grows with ΔL (Breusch-Pagan, lawfit.space.choose_space)",
    )
    cli.add_uncertainty_args(p, bootstrap=0, what="behind the intervals (0: asymptotic only)")
    p.add_argument(
        "--unit",
        default="cell",
        help="resampling unit: cell, seed, data_seed, run, residual, wild (default: cell)",
    )
    p.add_argument(
        "--cluster",
        default=None,
        metavar="COL",
        help="also print cluster-robust (CR2, Bell-McCaffrey dof) intervals over this column "
        "(data_seed, seed or run): calibrated down to 3 clusters, unlike --unit's bootstrap",
    )
    p.add_argument(
        "--ci-method",
        choices=["percentile", "bca"],
        default="percentile",
        help="bootstrap interval: percentile or bias-corrected accelerated (default: percentile)",
    )
    p.add_argument(
        "--at",
        action="append",
        default=[],
        type=parse_point,
        metavar="INPUT=VALUE,...",
        help="also predict dL with its prediction interval at this point, e.g. "
        "rank=4,length=512 (repeatable; forms in loss_before need loss_before=...)",
    )
    p.add_argument(
        "--in-cluster",
        default=None,
        type=lambda v: next(iter(parse_sel([f"value={v}"]).values())),
        metavar="VALUE",
        help="with --cluster and --at: predict a new cell of this cluster (e.g. data_seed 1, "
        "whose measured cells shift the centre), not of a new one",
    )
    p.add_argument(
        "--lack-of-fit",
        action="store_true",
        help="also test the law's misfit at its design points against the scatter of "
        "replicated cells (lawfit.lack_of_fit; an F test)",
    )
    p.add_argument(
        "--lack-of-fit-within",
        nargs="+",
        default=(),
        metavar="COL",
        help="the same test with replicates that also share these columns (data_seed: "
        "against the scatter between initialisation seeds on one target sequence, the "
        "footing of a form that reads loss_before); implies --lack-of-fit",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="save the result(s) as JSON")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit fit``."""
    import lawfit
    from lawfit.commands._common import check_output_path, open_input, parse_exclude

    check_output_path(args.json, "--json", inputs=[args.data])
    if args.shared and not args.by:
        raise LawfitError(
            "--shared tests whether groups share parameters; name the groups with --by "
            "(e.g. --by model --shared alpha beta)."
        )
    _check_points(args.at, args.form, args.capacity)
    if args.in_cluster is not None and not (args.cluster and args.at):
        raise LawfitError(
            f"--in-cluster {args.in_cluster} predicts a new cell of that cluster at the --at "
            "points, with --cluster's intervals: give --cluster COL and --at too "
            "(e.g. --cluster data_seed --at rank=4,length=512 --in-cluster 1)."
        )
    ds = apply_sel(open_input(args.data), parse_sel(args.sel))
    _check_columns(ds, args)
    exclude = parse_exclude(args.exclude)
    try:
        res = _fit(args, ds, exclude)
    except LawfitError as exc:
        if not _only_shared(args):
            raise _with_group_hint(exc, args) from exc
        print(f"per-group laws not printed: {exc}\nthe test below leaves such groups out")
        _print_shared(args, ds, exclude)
        return 0
    cli.show(res, has_by=True)
    if args.cluster:
        for where, one in _each_fit(res):
            ci = one.conf_int("cluster", confidence_level=args.level, cluster=args.cluster)
            print(f"\ncluster-robust intervals over {args.cluster}{where}:\n{ci.to_string()}")
    if args.at:
        _print_points(res, args.at, args.level, args.cluster, args.in_cluster)
    if args.shared:
        _print_shared(args, ds, exclude)
    if args.lack_of_fit or args.lack_of_fit_within:
        for where, one in _each_fit(res):
            lof = lawfit.lack_of_fit(one, within=args.lack_of_fit_within)
            print(f"\nlack of fit{where}:\n{lof.summary()}")
    if args.json:
        res.save(args.json)
        print(f"saved {args.json}")
    return 0


def _with_group_hint(exc: LawfitError, args) -> LawfitError:
    """Add to a --by fit's failure in one group how to fit the others, or borrow a law.

    Parameters
    ----------
    exc : LawfitError
        The error ``lawfit.fit`` raised.
    args : argparse.Namespace
        The command's options.

    Returns
    -------
    LawfitError
        ``exc`` itself unless it names one group of a ``--by`` fit; then the same message
        with the two ways on.
    """
    if not args.by or not str(exc).startswith("group {"):
        return exc
    dim = args.by[0]
    return LawfitError(
        f"{exc} With --by, every group must hold a law of its own: fit the others by "
        f"selecting them (--sel {dim}=VALUE), or carry another group's law to this one from "
        f"its few cells (lawfit transfer {args.data} --sel {dim}=OTHER --anchors {args.data} "
        f"--anchors-sel {dim}=THIS --at rank=R,length=L)."
    )


def _fit(args, ds, exclude):
    """Return ``lawfit.fit`` of the data with the command's options."""
    import lawfit

    return lawfit.fit(
        ds,
        args.form,
        capacity=args.capacity,
        by=args.by,
        exclude=exclude,
        loss=args.loss,
        huber_delta=args.huber_delta,
        space=args.space,
        bootstrap=args.bootstrap,
        unit=args.unit,
        ci_method=args.ci_method,
        confidence_level=args.level,
        rng=args.seed,
    )


def _only_shared(args) -> bool:
    """Whether --shared is all the command asks of the per-group fits."""
    extra = (args.cluster, args.at, args.lack_of_fit, args.lack_of_fit_within, args.json)
    return bool(args.shared) and not any(extra)


def _check_columns(ds, args) -> None:
    """Refuse options naming columns, clusters or parameters the data lacks, before fitting.

    Raises
    ------
    LawfitError
        A --cluster, --lack-of-fit-within or --unit that is no dim or coordinate of the
        dataset (``run``, built from ``seed`` and ``data_seed``, is allowed), an
        --in-cluster value the cluster column does not hold, or a --shared parameter that
        the form does not have.
    """
    from lawfit import _validate as V
    from lawfit.forms import get_form

    have = cli.data_columns(ds)  # the fitted cells' columns come from these
    V.known_columns(args.cluster, have, "--cluster")
    V.known_columns(args.lack_of_fit_within, have, "--lack-of-fit-within")
    cli.check_resampling(ds, args.unit, args.bootstrap)
    if args.in_cluster is not None and args.cluster in ds.coords:
        held = [v.item() for v in np.unique(ds[args.cluster].values)]
        if args.in_cluster not in held:
            raise LawfitError(
                f"--in-cluster {args.in_cluster} is not a {args.cluster} of the data, which has "
                f"{held}: pass one of them, or drop --in-cluster to predict a new {args.cluster}."
            )
    for param in args.shared or ():
        V.one_of(param, "--shared", get_form(args.form).params)


def _each_fit(res) -> list[tuple[str, object]]:
    """Return ``(" (group)", fit)`` for each fit of a grouped result, ``("", fit)`` for one."""
    if isinstance(res, Mapping):
        return [(f" ({', '.join(map(str, key))})", one) for key, one in res.items()]
    return [("", res)]


def _print_shared(args, ds, exclude) -> None:
    """Print the test of shared parameters across the --by groups (lawfit.shared_exponents)."""
    import lawfit

    test = lawfit.shared_exponents(
        ds,
        by=args.by,
        form=args.form,
        shared=args.shared,
        exclude=exclude,
        space=args.space,
        confidence_level=args.level,
        cluster=args.cluster,
    )
    print()
    cli.show(test, has_by=True)
