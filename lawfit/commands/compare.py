"""``lawfit compare``: rank alternative scaling forms fitted on the same cells."""

from __future__ import annotations

import argparse

from lawfit.commands import _common as cli

_EPILOG = """\
examples:
  lawfit compare sweep.nc --sel task=phonebook --sel objective=sft
  lawfit compare sweep.nc --sel task=phonebook --space log --criterion bic --csv ranking.csv
  lawfit compare sweep.nc --pool modules          one law in n_params across adapter placements
  lawfit compare sweep.nc --cluster data_seed     nested tests robust to cells sharing a sequence
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``compare`` subcommand."""
    p = cli.add_command(
        subparsers,
        "compare",
        help="rank alternative scaling forms (AICc/BIC, LR and Vuong tests)",
        description="Fit the paper's law and its alternatives on the same cells and rank them.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--forms",
        nargs="+",
        default=None,
        metavar="FORM",
        help="registered forms to compare (default: the built-in candidates)",
    )
    p.add_argument("--space", choices=["linear", "log"], default="linear", help=cli.SPACE_HELP)
    p.add_argument(
        "--criterion",
        choices=["aicc", "bic"],
        default="aicc",
        help="information criterion that ranks the forms (default: aicc)",
    )
    p.add_argument(
        "--exclude",
        default="memorized",
        help="'memorized' (default), 'none', or a loss_after threshold",
    )
    p.add_argument(
        "--pool",
        nargs="+",
        default=[],
        metavar="DIM",
        help="grouping dims pooled into one law (e.g. modules)",
    )
    p.add_argument(
        "--no-holdout",
        action="store_true",
        help="skip the held-out errors (extrapolation in rank and length, leaving one target "
        "sequence out): the ranking and tests only, several times faster",
    )
    p.add_argument(
        "--cluster",
        default=None,
        metavar="COL",
        help="also test each nested pair's restriction with the cluster-robust covariance "
        "over this column (data_seed: target sequences; CR2 Wald, HTZ F): robust_pvalue",
    )
    cli.add_csv_arg(p, "ranking table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit compare``."""
    from lawfit.compare import compare
    from lawfit.compare.candidates import HOLDOUT_AXES

    res = compare(
        cli.open_selected(args),
        args.forms,
        space=args.space,
        criterion=args.criterion,
        exclude=cli.parse_exclude(args.exclude),
        pool=tuple(args.pool),
        holdout=() if args.no_holdout else HOLDOUT_AXES,
        cluster=args.cluster,
    )
    return cli.print_result(res, args.csv, lambda: res.table)
