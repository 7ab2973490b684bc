"""``lawfit carriers``: one capacity law across memory carriers, and bits per size."""

from __future__ import annotations

import argparse

from lawfit import _validate as V
from lawfit.commands import _common as cli

_EPILOG = """\
examples:
  lawfit carriers sweep.nc --sel task=long_context       law per carrier, shared exponents?
  lawfit carriers sweep.nc --cluster data_seed           cluster-robust intervals and test
  lawfit carriers sweep.nc --size bytes --space log      the law against bytes, log-space fit
  lawfit carriers sweep.nc --store 1e4 1e5               smallest carrier storing N bits
  lawfit carriers sweep.nc --bits recalled --dtype bfloat16 --csv bits.csv
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``carriers`` subcommand."""
    p = cli.add_command(
        subparsers,
        "carriers",
        help="one capacity law across carriers (LoRA, memory tokens, KV memory), bits per size",
        description="Fit the law per carrier (the modules dim: mlp_block@20, memtok:m, kv:m@k, "
        "skv:k@LAYERS) against its size in parameters or bytes, test whether the carriers "
        "share exponents, and give bits per parameter and per byte per carrier.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--size",
        choices=["params", "bytes"],
        default="params",
        help="size the law is fitted against: n_params or n_bytes (default: params)",
    )
    p.add_argument(
        "--bits",
        choices=["stored", "recalled", "dl"],
        default="stored",
        help="bits counted: information stored, recalled, or ΔL bits (default: stored)",
    )
    p.add_argument("--space", choices=["linear", "log"], default="linear", help=cli.SPACE_HELP)
    p.add_argument(
        "--significance",
        type=cli.bounded_float(0.0, 1.0, what="a significance level"),
        default=0.05,
        help="level of the test of shared exponents (default: 0.05)",
    )
    p.add_argument(
        "--cluster",
        default=None,
        metavar="COL",
        help="cluster-robust (CR2) intervals of the law and a cluster-robust test of shared "
        "exponents over this column (data_seed: target sequences); the test needs more "
        "sequences than restrictions",
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="storage dtype (float32, bfloat16, ...) when the data records none",
    )
    p.add_argument(
        "--store",
        nargs="+",
        type=cli.bounded_float(0.0, what="a number of bits"),
        default=None,
        metavar="BITS",
        help="also give the smallest carrier of each kind storing these many bits",
    )
    cli.add_uncertainty_args(p, bootstrap=500)
    p.add_argument(
        "--unit",
        default="cell",
        choices=["cell", "seed", "data_seed", "run"],
        help="bootstrap resampling unit (default: cell)",
    )
    cli.add_csv_arg(p, "per-carrier bits table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Execute ``lawfit carriers``."""
    from lawfit.carriers import carrier_bits, carrier_law

    data = cli.open_selected(args)
    V.known_columns(args.cluster, {*data.dims, *data.coords}, "--cluster")
    common = dict(unit=args.unit, dtype=args.dtype, **cli.uncertainty_kwargs(args))
    law = carrier_law(
        data,
        size=args.size,
        space=args.space,
        significance=args.significance,
        cluster=args.cluster,
        **common,
    )
    cli.show(law)
    bits = carrier_bits(data, bits=args.bits, **common)
    print()
    cli.show(bits)
    if args.store:
        print()
        cli.show(bits.predict(args.store))
    if args.csv:
        cli.write_csv(bits.table, args.csv)
    return 0
