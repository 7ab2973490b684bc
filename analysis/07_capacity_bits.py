"""Capacity in bits: information stored, bits recalled and ΔL bits, per cell and per parameter.

Prints, as Markdown, the numbers of docs/capacity_bits.md: every ok cell's bits stored
(Σₜ max(0, Hₜ − CE_after,ₜ/ln 2)), bits saved (the same without the per-token floor),
bits recalled (entropy of the entries reproduced exactly) and ΔL bits, with bits per
trainable parameter; then the cells the law is fitted to (SFT on long-context random tokens,
loss_after > ln 2) and their range.

    python analysis/07_capacity_bits.py [DATA.nc]
"""

import argparse
import os
import sys

import lawfit
from lawfit.data import LN2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import markdown, read_dataset  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLS = ["bits_stored", "bits_saved", "bits_recalled", "bits_dl", "bits_max"]
PER_PARAM = {
    "bits_stored": "stored/param",
    "bits_recalled": "recalled/param",
    "bits_dl": "ΔL bits/param",
}


def table(cells):
    if "objective" not in cells and "method" in cells:  # files from before the contract's name
        cells = cells.rename(columns={"method": "objective"})
    out = cells[["task", "objective", "rank", "length", *COLS, "n_params"]].copy()
    for col, name in PER_PARAM.items():
        out[name] = out[col] / out["n_params"]
    out["loss_after"] = cells["loss_after"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "data", "smollm2_cpu.nc"))
    args = ap.parse_args()
    ds = read_dataset(args.data)
    res = lawfit.bits_per_parameter(ds)
    la = ds["loss_after"].to_dataframe().reset_index()
    keys = [c for c in la.columns if c in res.cells.columns]
    cells = table(res.cells.merge(la[[*keys, "loss_after"]], on=keys))
    print("## Every ok cell\n")
    print(markdown(cells))
    fitted = cells[
        (cells.task == "long_context") & (cells.objective == "sft") & (cells.loss_after > LN2)
    ]
    print(f"\n## The {len(fitted)} cells of the law fit (long-context SFT, loss_after > ln 2)\n")
    print(markdown(fitted))
    print()
    for name in PER_PARAM.values():
        print(f"- {name}: {fitted[name].min():.3f} to {fitted[name].max():.3f}")
    print("\nNotes:")
    for note in res.notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
