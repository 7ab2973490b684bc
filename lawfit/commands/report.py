"""``lawfit report``: run every analysis and write one Markdown or HTML report."""

from __future__ import annotations

import argparse
import sys

from lawfit.commands import _common as cli

_EPILOG = """\
examples:
  lawfit report sweep.nc -o report.md
  lawfit report sweep.nc -o report.html --bootstrap 2000
  lawfit report sweep.nc --format md > report.md
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand."""
    p = cli.add_command(
        subparsers,
        "report",
        help="run every analysis and write one report (Markdown or HTML)",
        description="Best form, exponents with CIs, p*, sufficiency, cascade, capacity "
        "predictions, bits/param and MemFT savings, per setting of the sweep. "
        "Sections the data cannot support say why they were skipped.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "-o", "--output", default=None, metavar="OUT", help="output file (default: standard output)"
    )
    p.add_argument(
        "--format",
        choices=["md", "html"],
        default=None,
        help="output format (default: from the suffix of -o, else md)",
    )
    cli.add_uncertainty_args(p, bootstrap=500, what="behind every interval")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print no progress (by default each section is announced on stderr)",
    )
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit report``."""
    import time

    from lawfit.report import build_report, report_format

    cli.check_output_path(args.output, "-o", inputs=[args.data])  # before any work
    if args.output:
        report_format(args.output, args.format)
    ds = cli.open_selected(args)
    started = time.perf_counter()

    def announce(text: str) -> None:
        print(f"[{time.perf_counter() - started:5.1f} s] {text}", file=sys.stderr, flush=True)

    rep = build_report(
        ds,
        bootstrap=args.bootstrap,
        confidence_level=args.level,
        rng=args.seed,
        progress=None if args.quiet else announce,
    )
    fmt = args.format
    if args.output:
        rep.save(args.output, format=fmt)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(rep.to_html() if fmt == "html" else rep.to_markdown())
    return 0
