"""Command-line interface: ``lawfit <command> ...``.

Each subcommand lives in its own module under :mod:`lawfit.commands` and exposes
``add_parser(subparsers)``; the parser it adds sets ``func`` (called with the parsed
arguments, returns an exit code). Add a command by appending its module to
``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lawfit.commands._common import as_command_line
from lawfit.errors import LawfitError

#: Modules (under lawfit.commands) that provide subcommands, in help order.
COMMANDS = [
    "fit",
    "compare",
    "transition",
    "predict",
    "memft",
    "budget",
    "carriers",
    "transfer",
    "report",
]

_EPILOG = """\
examples:
  lawfit fit sweep.nc                                  fit the memory law, print the summary
  lawfit fit sweep.nc --sel model=llama --bootstrap 2000 --unit seed
  lawfit fit sweep.nc --by model task --json fits.json one law per (model, task)
  lawfit fit sweep.nc --capacity n_params --space log --loss huber
  lawfit compare sweep.nc --sel task=phonebook         rank alternative forms
  lawfit transition sweep.nc --sel task=long_context   recall threshold p*, cascade
  lawfit predict sweep.nc --length 4096 --target 0.693 --target-kind loss_after
  lawfit memft sweep.nc --sel task=phonebook           MemFT savings over SFT
  lawfit budget sweep.nc --sel task=phonebook          is dL converged at the step budget?
  lawfit carriers sweep.nc --store 1e4                 one law across carriers, bits/param
  lawfit transfer a.nc --anchors b.nc --at rank=4,length=512   a's law on model b's cells
  lawfit report sweep.nc -o report.html                everything, one report
  lawfit <command> --help                              options of one command

Data: a NetCDF file in the lawfit data contract (docs/CONVENTIONS.md), i.e. at least
loss_reduction over the dims rank and length. Docs: docs/lawfit.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    from lawfit import __version__

    parser = argparse.ArgumentParser(
        prog="lawfit",
        description=(
            "Fit and query the Parametric Memory Law of LoRA memorization, "
            "dL = C * r^alpha * length^(-beta) + b, with bootstrap and "
            "profile-likelihood uncertainty."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lawfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        mod = importlib.import_module(f"lawfit.commands.{name}")
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lawfit`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LawfitError as exc:
        message = as_command_line(str(exc), has_by=hasattr(args, "by"))
        print(f"lawfit {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
