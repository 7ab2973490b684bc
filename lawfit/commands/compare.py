"""``lawfit compare``: rank alternative scaling forms fitted on the same cells."""

from __future__ import annotations

import argparse

from lawfit.commands._common import SPACE_HELP, add_data_args, open_selected, write_csv

_EPILOG = """\
examples:
  lawfit compare sweep.nc --sel task=phonebook --sel objective=sft
  lawfit compare sweep.nc --sel task=phonebook --space log --criterion bic --csv ranking.csv
  lawfit compare sweep.nc --pool modules          one law in n_params across adapter placements
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``compare`` subcommand."""
    p = subparsers.add_parser(
        "compare", help="rank alternative scaling forms (AICc/BIC, LR and Vuong tests)",
        description="Fit the paper's law and its alternatives on the same cells and rank them.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--forms", nargs="+", default=None, metavar="FORM",
                   help="registered forms to compare (default: the built-in candidates)")
    p.add_argument("--space", choices=["linear", "log"], default="linear", help=SPACE_HELP)
    p.add_argument("--criterion", choices=["aicc", "bic"], default="aicc",
                   help="information criterion that ranks the forms (default: aicc)")
    p.add_argument("--exclude", default="memorized",
                   help="'memorized' (default), 'none', or a loss_after threshold")
    p.add_argument("--pool", nargs="+", default=[], metavar="DIM",
                   help="grouping dims pooled into one law (e.g. modules)")
    p.add_argument("--no-holdout", action="store_true", help="skip held-out extrapolation")
    p.add_argument("--csv", default=None, metavar="OUT", help="write the ranking table")
    p.set_defaults(func=run)
    return p


def parse_exclude(value):
    """Map the --exclude string to lawfit.fit's argument."""
    if value in (None, "none", "None"):
        return None
    if value == "memorized":
        return value
    return float(value)


def run(args) -> int:
    """Execute ``lawfit compare``."""
    from lawfit.compare import compare

    ds = open_selected(args)
    res = compare(ds, args.forms, space=args.space, criterion=args.criterion,
                  exclude=parse_exclude(args.exclude), pool=tuple(args.pool),
                  holdout=() if args.no_holdout else ("rank", "length"))
    print(res.summary())
    if args.csv:
        write_csv(res.table, args.csv)
    return 0
