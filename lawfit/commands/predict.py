"""``lawfit predict``: rank needed for a target at a length, or longest length held."""

from __future__ import annotations

import argparse

from lawfit.commands import _common as cli
from lawfit.data import LN2
from lawfit.errors import LawfitError

_EPILOG = """\
examples:
  lawfit predict sweep.nc --sel task=phonebook --length 1024 4096 --target 0.693 \\
      --target-kind loss_after --bootstrap 1000     rank needed for recall
  lawfit predict sweep.nc --rank 16 --target 0.5    longest length with dL >= 0.5
  lawfit predict fit.json --length 2048 --target 1.0 --loss-before 4.1
  lawfit predict sweep.nc --length 512 2048 --target 0.693 --target-kind loss_after \
      --by-form                                      ... and every compared form's answer
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``predict`` subcommand."""
    p = cli.add_command(
        subparsers,
        "predict",
        help="capacity planning: rank needed for a target, longest length held",
        description="Invert the fitted law on every bootstrap draw. DATA is a .nc sweep "
        "(fitted here) or a .json fit saved by `lawfit fit --json`.",
        epilog=_EPILOG,
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--length",
        nargs="+",
        type=cli.bounded_float(0.0, what="a length in tokens"),
        help="target length(s) in tokens",
    )
    g.add_argument(
        "--rank",
        nargs="+",
        type=cli.bounded_float(0.0, what="a rank (or parameter count)"),
        help="capacity(ies): rank, or n_params for a law in n_params",
    )
    p.add_argument(
        "--target",
        nargs="+",
        type=cli.bounded_float(0.0, what="a target in nats/token"),
        required=True,
        help="target dL, or target loss_after (0.693 = ln 2 = recall)",
    )
    p.add_argument(
        "--target-kind",
        choices=["loss_reduction", "loss_after"],
        default="loss_reduction",
        help="what --target is: a loss reduction dL or a loss after training, both "
        "in nats/token (default: loss_reduction)",
    )
    p.add_argument(
        "--loss-before",
        type=cli.bounded_float(0.0, what="a loss in nats/token"),
        default=None,
        help="base-model loss (nats/token); default: from the data",
    )
    p.add_argument(
        "--form", default="power_law", help="registered form to fit and invert (default: power_law)"
    )
    p.add_argument(
        "--capacity",
        choices=["rank", "n_params"],
        default="rank",
        help="capacity input: LoRA rank or trainable parameter count (default: rank)",
    )
    cli.add_uncertainty_args(p, bootstrap=1000)
    p.add_argument(
        "--unit",
        default="cell",
        help="bootstrap resampling unit: cell, seed, run, residual, wild (default: cell)",
    )
    p.add_argument(
        "--interval",
        choices=["auto", "bootstrap", "cluster"],
        default="auto",
        help="interval of the answers: bootstrap percentile, or cluster-robust delta "
        "method over the --unit clusters (calibrated down to 3); auto: cluster-robust "
        "when the bootstrap has fewer than 10 clusters (default: auto)",
    )
    p.add_argument(
        "--by-form",
        action="store_true",
        help="also answer with every form of `lawfit compare` on the same data: each "
        "form's point answer, their Akaike-weighted average and spread (one --target; "
        "a .nc DATA)",
    )
    cli.add_csv_arg(p, "predictions table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit predict``."""
    from lawfit.capacity import predict_capacity

    saved = str(args.data).lower().endswith(".json")
    if args.by_form and (saved or len(args.target) != 1 or args.capacity != "rank"):
        raise LawfitError(
            "--by-form fits every form on the data: it needs a .nc DATA (not a saved fit), "
            f"one --target and --capacity rank; got {args.data!r}, {len(args.target)} "
            f"target(s), --capacity {args.capacity}."
        )
    data = None
    if saved:
        import lawfit

        if args.sel:
            raise LawfitError(
                f"--sel selects cells of a dataset; {args.data!r} is a saved fit, fitted on the "
                "cells it was given. Drop --sel, or give the .nc dataset instead."
            )
        cli.check_output_path(getattr(args, "csv", None), "--csv", inputs=[args.data])
        res = lawfit.load(args.data)
        if not hasattr(res, "theta"):
            raise LawfitError(
                f"{args.data!r} holds several fits; predict needs one. Refit one "
                "setting (lawfit fit ... --sel ...) and save it."
            )
    else:
        from lawfit.fitting import fit

        data = cli.open_selected(args)
        cli.check_resampling(data, args.unit, args.bootstrap, only_bootstrap=False)
        res = fit(
            data, args.form, capacity=args.capacity, unit=args.unit, **cli.uncertainty_kwargs(args)
        )
    pred = predict_capacity(
        res,
        length=args.length,
        rank=args.rank,
        target=args.target,
        target_kind=args.target_kind,
        loss_before=args.loss_before,
        data=data,
        confidence_level=args.level,
        interval=args.interval,
    )
    cli.show(pred)
    if args.target_kind == "loss_after" and any(t > LN2 + 1e-9 for t in args.target):
        print("note: loss_after targets above ln 2 do not guarantee verbatim recall")
    if args.by_form:
        _print_by_form(args, data)
    if args.csv:
        cli.write_csv(pred.table, args.csv)
    return 0


def _print_by_form(args, data) -> None:
    """Answer the same query with every form of a comparison on ``data``."""
    from lawfit.capacity_forms import capacity_by_form
    from lawfit.compare import compare

    query = {"length": args.length} if args.length else {"rank": args.rank}
    res = capacity_by_form(
        compare(data),
        target=args.target[0],
        target_kind=args.target_kind,
        loss_before=args.loss_before,
        data=data,
        **query,
    )
    print()
    cli.show(res)
