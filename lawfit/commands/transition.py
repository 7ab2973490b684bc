"""``lawfit transition``: the p > 0.5 phase transition of verbatim recall."""

from __future__ import annotations

import argparse

from lawfit.commands import _common as cli

_EPILOG = """\
examples:
  lawfit transition sweep.nc --sel task=long_context --sel objective=sft
  lawfit transition sweep.nc --sel task=phonebook --unit entry --bootstrap 2000 --csv pt.csv
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``transition`` subcommand."""
    p = cli.add_command(
        subparsers,
        "transition",
        help="recall threshold p*, sufficiency, cascade, cell-level transition",
        description="Token- and cell-level analysis of the p > 0.5 phase transition.",
        epilog=_EPILOG,
    )
    cli.add_uncertainty_args(p, bootstrap=1000)
    p.add_argument(
        "--unit",
        choices=["run", "entry"],
        default="run",
        help="unit of the cascade correlation (default: run)",
    )
    p.add_argument(
        "--capacity",
        choices=["rank", "n_params"],
        default="rank",
        help="capacity axis of the cell-level transition: LoRA rank or trainable "
        "parameters (default: rank)",
    )
    p.add_argument(
        "--beta", type=float, default=None, help="fix the length exponent of the capacity variable"
    )
    p.add_argument(
        "--threshold-interval",
        choices=["profile", "bootstrap", "delta"],
        default="profile",
        help="interval of p*: profile likelihood (default; it held its level on simulated "
        "long-context data), run bootstrap or run-clustered delta method; all three are "
        "in the table",
    )
    cli.add_csv_arg(p, "tidy table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit transition``."""
    from lawfit.transition import phase_transition

    return cli.run_analysis(
        args,
        phase_transition,
        lambda res: res.to_dataframe(),
        cascade_unit=args.unit,
        capacity=args.capacity,
        beta=args.beta,
        threshold_interval=args.threshold_interval,
    )
