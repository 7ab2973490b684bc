"""``lawfit transition``: the p > 0.5 phase transition of verbatim recall."""

from __future__ import annotations

import argparse

from lawfit.commands._common import (
    add_data_args,
    add_uncertainty_args,
    open_selected,
    write_csv,
)

_EPILOG = """\
examples:
  lawfit transition sweep.nc --sel task=long_context --sel objective=sft
  lawfit transition sweep.nc --sel task=phonebook --unit entry --bootstrap 2000 --csv pt.csv
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``transition`` subcommand."""
    p = subparsers.add_parser(
        "transition", help="recall threshold p*, sufficiency, cascade, cell-level transition",
        description="Token- and cell-level analysis of the p > 0.5 phase transition.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    add_uncertainty_args(p, bootstrap=1000)
    p.add_argument("--unit", choices=["run", "entry"], default="run",
                   help="unit of the cascade correlation (default: run)")
    p.add_argument("--capacity", choices=["rank", "n_params"], default="rank",
                   help="capacity axis of the cell-level transition: LoRA rank or trainable "
                        "parameters (default: rank)")
    p.add_argument("--beta", type=float, default=None,
                   help="fix the length exponent of the capacity variable")
    p.add_argument("--csv", default=None, metavar="OUT", help="write the tidy table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit transition``."""
    from lawfit.transition import phase_transition

    ds = open_selected(args)
    res = phase_transition(ds, bootstrap=args.bootstrap, cascade_unit=args.unit,
                           capacity=args.capacity, beta=args.beta,
                           confidence_level=args.level, rng=args.seed)
    print(res.summary())
    if args.csv:
        write_csv(res.to_dataframe(), args.csv)
    return 0
