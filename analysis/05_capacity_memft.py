"""Step 5 - capacity planning and MemFT.

From the SFT law (02): the rank needed for verbatim recall (loss_after ≤ ln 2) at each
length with bootstrap CIs (every draw inverted, unreachable draws counted), the longest
target a rank can hold, bits stored per adapter parameter against the 2 and 3.6
bits/param anchors; then the gradient budget SFT spends on tokens already above p = 0.5
and MemFT's rank savings (separate laws, shared exponents, measured MemFT cells).

    python analysis/05_capacity_memft.py [DATA.nc] [--bootstrap 1000]
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import header, load, parser, quiet, settings, sft  # noqa: E402

import lawfit  # noqa: E402
from lawfit.capacity import SHOWN_COLUMNS  # noqa: E402
from lawfit.data import LN2, collected_lengths  # noqa: E402


def capacity(cells, n_boot):
    law = lawfit.fit(cells, "power_law", bootstrap=n_boot, rng=0)
    lengths = collected_lengths(cells).astype(float)  # not lengths the sweep only plans
    lengths = np.concatenate([lengths, [2 * lengths.max(), 4 * lengths.max()]])
    pc = lawfit.predict_capacity(
        law, length=lengths, target=LN2, target_kind="loss_after", data=cells
    )
    print("rank needed for recall (loss_after ≤ ln 2):")
    cols = [c for c in SHOWN_COLUMNS if c in pc.table]
    print(pc.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for n in pc.notes:
        print("note:", n)
    rmax = float(cells["rank"].max())
    pl = lawfit.predict_capacity(law, rank=rmax, target=0.5)
    t = pl.table.iloc[0]
    print(
        f"\nlongest target with ΔL ≥ 0.5 nats/token at rank {rmax:g}: {t['estimate']:.4g} "
        f"tokens [{t['low']:.4g}, {t['high']:.4g}]"
    )


def main():
    args = parser(__doc__).parse_args()
    quiet()
    ds = load(args)
    tokens = load(args, kind="tokens") if args.synthetic else ds
    for (label, sub), (_, tsub) in zip(settings(ds), settings(tokens), strict=False):
        header(f"Setting: {label}")
        cells = sft(sub)
        if cells is None:
            print("no ok SFT cells: skipped\n")
            continue
        try:
            capacity(cells, args.bootstrap)
        except lawfit.LawfitError as exc:
            print(f"capacity not predicted: {exc}")
        try:
            print("\n" + lawfit.bits_per_parameter(cells).summary())
        except lawfit.LawfitError as exc:
            print(f"\nbits per parameter not computed: {exc}")
        try:
            print("\n" + lawfit.gradient_budget(tsub, bootstrap=args.bootstrap, rng=0).summary())
        except lawfit.LawfitError as exc:
            print(f"\ngradient budget not computed: {exc}")
        try:
            ms = lawfit.memft_savings(tsub.squeeze(drop=False), bootstrap=args.bootstrap, rng=0)
            print("\n" + ms.summary())
        except lawfit.LawfitError as exc:
            print(f"\nMemFT savings not computed: {exc}")
        print()


if __name__ == "__main__":
    main()
