"""Helpers shared by the analysis subcommands (compare, transition, predict, memft, report)."""

from __future__ import annotations

from lawfit.errors import LawfitError


def add_data_args(p, *, sel=True):
    """Add the positional data path and the repeatable ``--sel DIM=VALUE``."""
    p.add_argument("data", help="NetCDF file in the lawfit data contract")
    if sel:
        p.add_argument("--sel", action="append", default=[], metavar="DIM=VALUE",
                       help="select a coordinate first (repeatable), e.g. --sel task=phonebook")


def open_selected(args):
    """Open ``args.data`` and apply ``--sel``."""
    from lawfit.commands.fit import apply_sel, parse_sel
    from lawfit.data import open_dataset

    ds = open_dataset(args.data)
    return apply_sel(ds, parse_sel(getattr(args, "sel", [])))


def write_csv(df, path):
    """Write a DataFrame as CSV and say so on stderr."""
    import sys

    if df is None or len(df) == 0:
        raise LawfitError(f"nothing to write to {path!r}: the table is empty.")
    df.to_csv(path, index=False)
    print(f"wrote {path}", file=sys.stderr)
