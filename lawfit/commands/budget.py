"""``lawfit budget``: cells still improving at the step budget, and exponents against budget."""

from __future__ import annotations

import argparse

from lawfit.commands import _common as cli

_EPILOG = """\
examples:
  lawfit budget sweep.nc --sel task=long_context --sel objective=sft
  lawfit budget sweep.nc --sel task=phonebook --sel objective=sft --budgets 200 400 600 \\
      --window 50 --csv cells.csv
  lawfit budget probe.nc --budgets 600 1200 1750 --trajectory   # ΔL of each cell per budget
  lawfit budget law.nc --sel objective=sft --extrapolate 2   # twice the budget, backtested
  lawfit budget carriers.nc --no-fit   # per-cell test only: any mix of carriers and tasks
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``budget`` subcommand."""
    p = cli.add_command(
        subparsers,
        "budget",
        help="cells still improving at the step budget; exponents vs budget",
        description="Read each cell's training trajectory: which cells stopped at the budget "
        "while their loss was still falling, and the law refitted as if the sweep "
        "had used smaller budgets.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--budgets",
        nargs="+",
        type=cli.int_at_least(1, "a step budget"),
        default=None,
        metavar="STEPS",
        help="logged steps to refit at (default: 1/4, 1/2, 3/4 and all of it)",
    )
    p.add_argument(
        "--window",
        type=cli.int_at_least(1, "a number of steps"),
        default=None,
        metavar="STEPS",
        help="look-back for 'still improving' (default: the last 10%% of the budget)",
    )
    p.add_argument(
        "--tol",
        type=cli.bounded_float(0.0, what="a relative ΔL gain"),
        default=0.01,
        help="relative ΔL gain over the window that counts as improving (0.01)",
    )
    p.add_argument("--space", choices=["linear", "log"], default="linear", help=cli.SPACE_HELP)
    cli.add_uncertainty_args(p, bootstrap=200)
    p.add_argument(
        "--unit",
        default="cell",
        help="bootstrap resampling unit: cell, seed, data_seed, run (default: cell); with "
        "fewer than 10 clusters the tables quote the cluster-robust interval",
    )
    cli.add_csv_arg(p, "per-cell table")
    p.add_argument(
        "--no-fit",
        action="store_true",
        help="print only the per-cell test and its counts per setting, fitting no law (for "
        "a dataset of several carriers, tasks or objectives, or too few cells for a law)",
    )
    p.add_argument(
        "--trajectory",
        action="store_true",
        help="also print each cell's ΔL at every budget of --budgets",
    )
    p.add_argument(
        "--extrapolate",
        type=cli.bounded_float(1.0, what="a multiple of the budget"),
        default=None,
        metavar="HORIZON",
        help="also extrapolate each cell's curve to HORIZON x the budget and refit, with the "
        "backtest from budget/HORIZON (lawfit.budget_extrapolation; a sensitivity analysis)",
    )
    p.add_argument(
        "--fit-from",
        type=cli.bounded_float(0.0, 1.0, what="a share of the budget"),
        default=0.5,
        metavar="SHARE",
        help="with --extrapolate: fit each curve's tail from SHARE x the budget on (0.5)",
    )
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit budget``."""
    from lawfit.budget import budget_sensitivity, delta_by_budget
    from lawfit.errors import LawfitError

    ds = cli.open_selected(args)
    if not args.no_fit:
        cli.check_resampling(ds, args.unit, args.bootstrap)
    if args.trajectory:
        print(delta_by_budget(ds, args.budgets).to_string(index=False, float_format="%.4g"))
        print()
    if args.no_fit:
        return _convergence_only(ds, args)
    try:
        res = budget_sensitivity(
            ds,
            args.budgets,
            window=args.window,
            tol=args.tol,
            space=args.space,
            unit=args.unit,
            **cli.uncertainty_kwargs(args),
        )
    except LawfitError as exc:
        if "not named in by=" in str(exc):
            raise LawfitError(f"{exc} Or pass --no-fit for the per-cell test alone.") from exc
        if "could not be fitted at any budget" not in str(exc):
            raise
        # too few cells for the law (e.g. a one-cell budget probe): the per-cell reading stands
        code = _convergence_only(ds, args)
        print(f"note: {exc}")
        return code
    code = cli.print_result(res, args.csv, lambda: res.convergence)
    if args.extrapolate is not None:
        from lawfit.extrapolate import budget_extrapolation

        ext = budget_extrapolation(
            ds,
            horizon=args.extrapolate,
            fit_from=args.fit_from,
            space=args.space,
            unit=args.unit,
            **cli.uncertainty_kwargs(args),
        )
        print("\nPast the budget (extrapolated; trust it as far as its backtest):")
        cli.show(ext)
    return code


#: columns of the convergence table that tell settings apart (one law each)
_SETTING_COLUMNS = ("model", "task", "random_ratio", "objective", "modules")


def _convergence_only(ds, args) -> int:
    """Print the per-cell convergence test and how many cells fail it per setting."""
    from lawfit.budget import convergence

    conv = convergence(ds, window=args.window, tol=args.tol)
    print(conv.to_string(index=False))
    checked = conv[conv["stop_reason"].isin(["budget", "converged"])]
    print(
        f"\n{int(checked['still_improving'].sum())} of {len(checked)} cells stopped by the "
        "budget or the convergence stop were still improving (best ΔL grew by more than "
        f"{args.tol:.0%} over the {conv.attrs['window_text']})"
    )
    settings = [c for c in _SETTING_COLUMNS if c in checked and checked[c].nunique() > 1]
    if settings and len(checked):
        counts = checked.groupby(settings)["still_improving"].agg(["sum", "size"])
        counts.columns = ["still_improving", "cells"]
        print(counts.to_string())
    if args.csv:
        cli.write_csv(conv, args.csv)
    return 0
