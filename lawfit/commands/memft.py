"""``lawfit memft``: what MemFT saves over SFT (gradient budget, rank and parameters)."""

from __future__ import annotations

import argparse

from lawfit.commands import _common as cli
from lawfit.data import LN2

_EPILOG = """\
examples:
  lawfit memft sweep.nc --sel task=phonebook
  lawfit memft sweep.nc --unit data_seed       # the laws' intervals speak for new targets
  lawfit memft sweep.nc --sel task=long_context --target 1.0 --target-kind loss_reduction \\
      --lengths 1024 4096 --bootstrap 1000 --csv savings.csv
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``memft`` subcommand."""
    p = cli.add_command(
        subparsers,
        "memft",
        help="MemFT savings over SFT: gradient budget, predicted rank/params",
        description="Share of SFT's loss weight on tokens already above threshold, and the "
        "rank/parameter savings predicted by laws fitted per method.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--target",
        type=cli.bounded_float(0.0, what="a target in nats/token"),
        default=LN2,
        help="fidelity target (default ln 2 on loss_after)",
    )
    p.add_argument(
        "--target-kind",
        choices=["loss_after", "loss_reduction"],
        default="loss_after",
        help="what --target is: a loss reduction dL or a loss after training, both "
        "in nats/token (default: loss_after)",
    )
    p.add_argument(
        "--lengths",
        nargs="+",
        type=cli.bounded_float(0.0, what="a length in tokens"),
        default=None,
        help="target lengths at which to predict the savings (default: the "
        "observed lengths and 2x and 4x the longest)",
    )
    cli.add_uncertainty_args(p, bootstrap=500)
    p.add_argument(
        "--unit",
        default="cell",
        choices=["cell", "seed", "data_seed", "run"],
        help="bootstrap resampling unit of the laws (default: cell; data_seed resamples "
        "whole target sequences, as lawfit report does with 2+ of them)",
    )
    cli.add_csv_arg(p, "predictions table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit memft``."""
    from lawfit.memft import memft_savings

    ds = cli.open_selected(args)
    cli.check_resampling(ds, args.unit, args.bootstrap)
    res = memft_savings(
        ds,
        target=args.target,
        target_kind=args.target_kind,
        lengths=args.lengths,
        unit=args.unit,
        **cli.uncertainty_kwargs(args),
    )
    return cli.print_result(res, args.csv, lambda: res.predictions)
