"""``lawfit transfer``: a source model's law carried to a new model from a few of its cells."""

from __future__ import annotations

import argparse

from lawfit import _validate as V
from lawfit.commands import _common as cli

_EPILOG = """\
examples:
  lawfit transfer smollm2.nc --sel objective=sft --anchors gemma.nc --at rank=1,length=256
  lawfit transfer smollm2.nc --sel objective=sft --anchors gemma.nc --free C b \\
      --at rank=2,length=256 --at rank=4,length=512 --in-cluster 0 --csv predicted.csv
  lawfit transfer smollm2.nc --sel objective=sft --anchors gemma.nc --form saturating \\
      --at rank=1,length=256,loss_before=16.46

The source law is fitted as `lawfit fit DATA --sel ...` fits it; the free parameters are then
fitted to the anchors (default: the scale C), and each --at point gets one new cell's value
with a prediction interval that assumes the other parameters and the cells' scatter carry over.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``transfer`` subcommand."""
    from lawfit.commands.fit import parse_point

    p = cli.add_command(
        subparsers,
        "transfer",
        help="carry a fitted law to a new model from a few of its cells",
        description="Fit the law on DATA (the source model), keep its parameters except "
        "--free, fit those to the new model's --anchors cells, and predict new cells of the "
        "new model at --at with prediction intervals (lawfit.transfer_law).",
        epilog=_EPILOG,
    )
    p.add_argument("--anchors", required=True, help="the new model's cells (NetCDF or CSV)")
    p.add_argument(
        "--anchors-sel",
        action="append",
        default=[],
        metavar="DIM=VALUE",
        help="select a coordinate of the anchors first (repeatable)",
    )
    p.add_argument(
        "--form",
        default="power_law",
        help="registered form of the source's law (default: power_law)",
    )
    p.add_argument(
        "--free",
        nargs="+",
        default=None,
        metavar="PARAM",
        help="parameters fitted to the anchors (default: the form's scale, its first "
        "parameter: C, or c of the saturating form; C b needs two anchors)",
    )
    p.add_argument(
        "--at",
        action="append",
        type=parse_point,
        required=True,
        metavar="INPUT=VALUE,...",
        help="a new cell to predict, e.g. rank=4,length=512 (repeatable)",
    )
    p.add_argument(
        "--cluster",
        default="data_seed",
        help="column naming target sequences (default: data_seed)",
    )
    p.add_argument(
        "--in-cluster",
        type=float,
        default=None,
        help="the anchors' target sequence the new cells are on (default: a new sequence)",
    )
    p.add_argument(
        "--level",
        type=cli.bounded_float(0.0, 1.0, what="a level in (0, 1)"),
        default=0.95,
        help="level of the intervals (default: 0.95)",
    )
    cli.add_csv_arg(p, "predictions table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit transfer``."""
    import sys
    import warnings

    import pandas as pd

    import lawfit
    from lawfit.commands.fit import apply_sel, parse_sel
    from lawfit.transfer import transfer_law

    source = cli.open_selected(args)
    anchors = apply_sel(cli.open_input(args.anchors), parse_sel(args.anchors_sel))
    V.known_columns(args.cluster, {*source.dims, *source.coords}, "--cluster")  # before the fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's own flags are in its summary
        fit = lawfit.fit(source, args.form, profile=False)
    free = args.free or [fit.param_names[0]]
    law = transfer_law(fit, anchors, free=free, cluster=args.cluster)
    in_cluster = _as_label(args.in_cluster)
    rows = [law.predict(in_cluster=in_cluster, level=args.level, **pt) for pt in args.at]
    table = pd.concat(rows, ignore_index=True)
    print(law.summary())
    where = "a new sequence" if in_cluster is None else f"{args.cluster} {in_cluster}"
    print(f"\npredicted dL of one new cell on {where}, {args.level:.0%} prediction intervals:")
    print(table.to_string(index=False))
    if args.csv:
        sys.stdout.flush()
        cli.write_csv(table, args.csv)
    return 0


def _as_label(value: float | None):
    """Return an integral --in-cluster as an int (data_seed values are integers)."""
    if value is None or not float(value).is_integer():
        return value
    return int(value)
