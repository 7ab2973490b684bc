"""Helpers shared by the analysis subcommands (compare, transition, predict, memft, report)."""

from __future__ import annotations

import argparse
import re

from lawfit.errors import LawfitError


def add_command(
    subparsers, name: str, *, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """Register subcommand ``name`` with its examples epilog and the data arguments.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``lawfit`` subcommand registry.
    name, help, description, epilog : str
        Subcommand name, one-line help, description and examples (printed verbatim).

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser, with the positional ``data`` and ``--sel`` added.
    """
    p = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p)
    return p


def add_csv_arg(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--csv OUT`` ("write the <what>")."""
    p.add_argument("--csv", default=None, metavar="OUT", help=f"write the {what}")


def uncertainty_kwargs(args: argparse.Namespace) -> dict:
    """Map ``--bootstrap``, ``--level`` and ``--seed`` to the analysis keyword arguments."""
    return {"bootstrap": args.bootstrap, "confidence_level": args.level, "rng": args.seed}


def run_analysis(args: argparse.Namespace, analysis, table, **kwargs) -> int:
    """Run ``analysis`` on the selected data with the uncertainty options, then report it.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options with ``data``, ``--sel``, ``--bootstrap``, ``--level``, ``--seed``
        and ``--csv``.
    analysis : callable
        ``analysis(ds, **kwargs, bootstrap=, confidence_level=, rng=)`` returning a result
        with ``summary()``.
    table : callable
        Maps the result to the DataFrame written by ``--csv``.
    **kwargs
        The command's own options for ``analysis``.

    Returns
    -------
    int
        Exit status 0.
    """
    res = analysis(open_selected(args), **kwargs, **uncertainty_kwargs(args))
    return print_result(res, args.csv, lambda: table(res))


def print_result(res, csv: str | None, table) -> int:
    """Print ``res.summary()`` and, when ``csv`` is given, write ``table()`` there.

    Parameters
    ----------
    res : object
        An analysis result with a ``summary()`` method.
    csv : str or None
        The ``--csv`` path.
    table : callable
        Returns the DataFrame to write (called only when ``csv`` is given).

    Returns
    -------
    int
        Exit status 0.
    """
    show(res)
    if csv:
        write_csv(table(), csv)
    return 0


def show(res, has_by: bool = False) -> None:
    """Print ``res.summary()`` with the library's ``ds.sel(...)`` hints as this CLI's flags."""
    print(as_command_line(str(res.summary()), has_by))


def add_data_args(p, *, sel=True):
    """Add the positional data path and the repeatable ``--sel DIM=VALUE``."""
    p.add_argument("data", help="NetCDF file in the lawfit data contract")
    if sel:
        p.add_argument(
            "--sel",
            action="append",
            default=[],
            metavar="DIM=VALUE",
            help="select a coordinate first (repeatable), e.g. --sel task=phonebook",
        )


SPACE_HELP = (
    "fit in linear ΔL or in log ΔL (log: for residual spread that grows with ΔL) (default: linear)"
)


def add_uncertainty_args(p, *, bootstrap: int, what: str = "behind the intervals") -> None:
    """Add ``--bootstrap N``, ``--level`` and ``--seed``, each checked as argparse parses it.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The subcommand's parser.
    bootstrap : int
        Default number of replicates (0: no bootstrap).
    what : str
        What the replicates are for, in the help of ``--bootstrap``.
    """
    p.add_argument(
        "--bootstrap",
        type=bootstrap_count,
        default=bootstrap,
        metavar="N",
        help=f"bootstrap replicates {what} (default: {bootstrap})",
    )
    p.add_argument(
        "--level",
        type=bounded_float(0.0, 1.0, what="a confidence level"),
        default=0.95,
        help="confidence level of the intervals (default: 0.95)",
    )
    p.add_argument(
        "--seed",
        type=int_at_least(0, "a random seed"),
        default=0,
        help="random seed of the bootstrap: same seed, same numbers (default: 0)",
    )


def bootstrap_count(text: str) -> int:
    """Parse ``--bootstrap``: 0 (no bootstrap) or at least 2 replicates.

    Raises
    ------
    argparse.ArgumentTypeError
        Anything else (a usage error before any work).
    """
    value = _integer(text)
    if value is None or value == 1 or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected 0 (no bootstrap) or a number of replicates >= 2, e.g. 1000; got {text!r}"
        )
    return value


def int_at_least(low: int, what: str = "an integer"):
    """Return an argparse ``type`` accepting an integer >= ``low`` (see :func:`bounded_float`)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what} >= {low}; got {text!r}")
        return value

    return parse


def _integer(text: str) -> int | None:
    """``int(text)``, or None where the text is not an integer."""
    try:
        return int(text)
    except ValueError:
        return None


def bounded_float(low: float, high: float = float("inf"), what: str = "a number"):
    """Return an argparse ``type`` accepting a finite number strictly between low and high.

    Parameters
    ----------
    low, high : float
        The open interval accepted.
    what : str
        What the number is, for the message.

    Returns
    -------
    callable
        Parses the text, or raises ``argparse.ArgumentTypeError`` (a usage error before
        any work).
    """
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low < value < high):
            bound = f"> {low:g}" if math.isinf(high) else f"between {low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"expected {what} {bound}; got {text!r}")
        return value

    return parse


def data_columns(ds) -> set[str]:
    """Return the columns a fit of ``ds`` has: dims, coordinates, and ``run`` where built.

    Parameters
    ----------
    ds : xarray.Dataset
        The selected data.

    Returns
    -------
    set of str
    """
    from lawfit.data import REPLICATE_DIMS

    have = {str(name) for name in (*ds.dims, *ds.coords)}
    if set(REPLICATE_DIMS) <= have:
        have.add("run")  # built from seed and data_seed
    return have


def check_resampling(ds, unit: str, bootstrap: int, *, only_bootstrap: bool = True) -> None:
    """Refuse a ``--unit`` the analysis cannot use, before any fitting.

    Parameters
    ----------
    ds : xarray.Dataset
        The selected data.
    unit : str
        The ``--unit`` given: a resampling scheme or a column to resample clusters of.
    bootstrap : int
        The ``--bootstrap`` replicates (0: none).
    only_bootstrap : bool
        Whether the bootstrap is the unit's only use (``lawfit predict`` also clusters its
        cluster-robust intervals on it).

    Raises
    ------
    LawfitError
        A unit other than ``cell`` without a bootstrap, where it would be ignored, or a
        unit that is neither a scheme nor a column of the data.
    """
    from lawfit import _validate as V
    from lawfit.bootstrap import RESAMPLING_UNITS

    if only_bootstrap and unit != "cell" and not bootstrap:
        raise LawfitError(
            f"--unit {unit} picks what --bootstrap resamples, and --bootstrap is 0, so it would "
            "be ignored: add --bootstrap N (e.g. --bootstrap 1000), or drop --unit."
        )
    if unit not in RESAMPLING_UNITS:  # else a column whose clusters are resampled
        columns = data_columns(ds) - set(RESAMPLING_UNITS) - {"step", "token"}
        V.one_of(unit, "--unit", (*RESAMPLING_UNITS, *sorted(columns)))


def check_output_path(path, flag: str, inputs=()) -> None:
    """Fail before any work when ``path`` cannot be written, or would overwrite an input.

    Parameters
    ----------
    path : str or path-like or None
        The output file a command will write at its end (None: nothing to check).
    flag : str
        The option that named it, for the message (e.g. ``"-o"``).
    inputs : iterable of str or path-like
        The files the command reads: writing over one of them would lose it.

    Raises
    ------
    LawfitError
        If the folder does not exist, is not writable, ``path`` is a folder, or ``path`` is
        one of ``inputs``.
    """
    import os
    from pathlib import Path

    if path is None:
        return
    p = Path(path)
    for source in inputs:
        if Path(source).exists() and p.exists() and os.path.samefile(source, p):
            raise LawfitError(
                f"{flag} {path}: that is the input {source}, which writing would destroy; "
                f"choose another output name (e.g. {p.with_name(p.stem + '_out' + p.suffix)})."
            )
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise LawfitError(
            f"{flag} {path}: that is a folder; expected a file name, e.g. {p / 'out'}."
        )
    if not folder.is_dir():
        raise LawfitError(
            f"{flag} {path}: the folder {str(folder)!r} does not exist; create "
            f"it first (mkdir -p {folder}) or write elsewhere."
        )
    if not os.access(folder, os.W_OK):
        raise LawfitError(
            f"{flag} {path}: the folder {str(folder)!r} is not writable; "
            "choose another output path."
        )


def open_input(path):
    """Open the DATA of a command: a NetCDF file, or a tidy CSV table (one row per cell).

    A ``.csv`` becomes a Dataset over the contract dims among its columns (``rank``,
    ``length``, ``seed``, ...), as :func:`lawfit.data.as_dataset` reads a DataFrame.
    """
    from lawfit.data import as_dataset, open_dataset

    if str(path).lower().endswith(".csv"):
        return as_dataset(path)
    return open_dataset(path)


def open_selected(args):
    """Check the output paths (``-o``, ``--csv``), then open ``args.data`` and apply ``--sel``."""
    from lawfit.commands.fit import apply_sel, parse_sel

    check_output_path(getattr(args, "output", None), "-o", inputs=[args.data])
    check_output_path(getattr(args, "csv", None), "--csv", inputs=[args.data])
    ds = open_input(args.data)
    return apply_sel(ds, parse_sel(getattr(args, "sel", [])))


def write_csv(df, path):
    """Write a DataFrame as CSV and say so on stderr."""
    import sys

    if df is None or len(df) == 0:
        raise LawfitError(f"nothing to write to {path!r}: the table is empty.")
    df.to_csv(path, index=False)
    print(f"wrote {path}", file=sys.stderr)


def parse_exclude(value: str | None) -> str | float | None:
    """Map --exclude ('memorized', 'none' or a loss_after threshold) to lawfit.fit's argument."""
    if value is None or value.lower() == "none":
        return None
    if value == "memorized":
        return value
    try:
        return float(value)
    except ValueError:
        raise LawfitError(
            f"--exclude expects 'memorized', 'none' or a number; got {value!r}."
        ) from None


#: a library hint ``ds.sel(dim=value)`` or ``ds.sel({'dim': value})``, value possibly ``...``
_SEL_HINT = re.compile(
    r"ds\.sel\(\s*(?:\{\s*['\"](?P<key>\w+)['\"]\s*:\s*(?P<kval>[^{}()]*?)\s*\}"
    r"|(?P<dim>\w+)\s*=\s*(?P<val>[^()]*?)|(?P<any>\.\.\.))\s*\)"
)


#: the library's ``by=['dim', ...]`` argument in a hint
_BY_HINT = re.compile(r"\bby=\[(?P<dims>[^\]]*)\]")


def as_command_line(message: str, has_by: bool = False) -> str:
    """Rewrite the library's Python hints in an error message as this CLI's flags.

    The library says ``select one first, e.g. ds.sel(task='phonebook')``; a user of the
    ``lawfit`` command selects with ``--sel task=phonebook``, so that is what it is told.

    Parameters
    ----------
    message : str
        The text of a :class:`~lawfit.errors.LawfitError`.
    has_by : bool
        The command has ``--by``: the hint ``by=['model']`` becomes ``--by model`` too.

    Returns
    -------
    str
        The message with every ``ds.sel(...)`` hint written as ``--sel DIM=VALUE``.
    """
    if has_by:
        message = _BY_HINT.sub(
            lambda m: "--by " + " ".join(d.strip(" '\"") for d in m["dims"].split(",")),
            message,
        )

    def flag(match: re.Match) -> str:
        if match["any"]:
            return "--sel DIM=VALUE"
        dim = match["key"] or match["dim"]
        value = (match["kval"] if match["key"] else match["val"]).strip().strip("'\"")
        return f"--sel {dim}={'VALUE' if value in ('', '...') else value}"

    return _SEL_HINT.sub(flag, message)
