"""Capacity in bits: information stored, bits recalled and ΔL bits, per cell and per parameter.

Prints, as Markdown, the numbers of docs/capacity_bits.md: every ok cell's bits stored
(Σₜ max(0, Hₜ − CE_after,ₜ/ln 2)), bits saved (the same without the per-token floor),
bits recalled (entropy of the entries reproduced exactly) and ΔL bits, with bits per
trainable parameter; then the cells the law is fitted to (SFT on long-context random tokens,
loss_after > ln 2) and their range, per model.

On a file that holds two or more models (``collect combine A.nc B.nc -o both.nc``) every row
names its model and adapter placement, and a last table sets the models side by side at each
design point (task, objective, rank, length) that more than one of them holds: bits stored
(mean and range over target sequences), per parameter, the loss left, the target tokens that
are the model's first choice under teacher forcing and those that free-running greedy
decoding from the key reproduces. The two models' targets are different random tokens from
different vocabularies, so a row compares what each adapter stores of its own target, in
bits, not the same content.

    python analysis/07_capacity_bits.py [DATA.nc]
"""

import argparse
import os
import sys

import pandas as pd

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
#: a design point, as every table names it
POINT = ["task", "objective", "rank", "length"]
#: columns shown only where the cells take more than one value of them
VARYING = ["model", "modules", "data_seed", "seed"]


def cell_measures(ds) -> pd.DataFrame:
    """Per cell: loss left, teacher-forced token accuracy and tokens recalled greedily."""
    measures = ds[["loss_after", "token_accuracy"]]
    measures["greedy_tokens"] = ds["greedy_correct"].sum("token")
    frame = measures.to_dataframe().reset_index()
    return frame.drop(columns=[c for c in ("token", "step") if c in frame])


def table(cells: pd.DataFrame) -> pd.DataFrame:
    """Every cell's bits with bits per parameter, one row per cell."""
    if "objective" not in cells and "method" in cells:  # files from before the contract's name
        cells = cells.rename(columns={"method": "objective"})
    ids = [c for c in VARYING if c in cells and cells[c].nunique() > 1]
    out = cells[[*ids, *POINT, *COLS, "n_params"]].copy()
    for col, name in PER_PARAM.items():
        out[name] = out[col] / out["n_params"]
    for col in ("loss_after", "token_accuracy", "greedy_tokens"):
        if col in cells:
            out[col] = cells[col]
    return out


def across_models(cells: pd.DataFrame) -> pd.DataFrame:
    """Each model at every design point that two or more models hold, side by side."""
    if "model" not in cells or cells["model"].nunique() < 2:
        return pd.DataFrame()
    shared = cells.groupby(POINT)["model"].transform("nunique") > 1
    rows = []
    for (*point, model), g in cells[shared].groupby([*POINT, "model"], sort=True):
        stored = g["bits_stored"]
        rows.append(
            dict(
                zip(POINT, point, strict=True),
                model=model,
                cells=len(g),
                sequences=g["data_seed"].nunique() if "data_seed" in g else 1,
                n_params=int(g["n_params"].iloc[0]),
                bits_stored=stored.mean(),
                stored_min=stored.min(),
                stored_max=stored.max(),
                **{"stored/param": (stored / g["n_params"]).mean()},
                loss_after=g["loss_after"].mean(),
                teacher_forced=(g["token_accuracy"] * g["length"]).round().mean(),
                greedy_tokens=g["greedy_tokens"].mean(),
            )
        )
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "data", "smollm2_cpu.nc"))
    args = ap.parse_args()
    ds = read_dataset(args.data)
    res = lawfit.bits_per_parameter(ds)
    measures = cell_measures(ds)
    keys = [c for c in measures.columns if c in res.cells.columns]
    merged = res.cells.merge(measures, on=keys)
    cells = table(merged)
    print("## Every ok cell\n")
    print(markdown(cells))
    fitted = cells[
        (cells.task == "long_context") & (cells.objective == "sft") & (cells.loss_after > LN2)
    ]
    print(
        f"\n## The {len(fitted)} cells of the law fit (long-context SFT, loss_after > ln 2;"
        " each model fits its own)\n"
    )
    print(markdown(fitted))
    print()
    groups = fitted.groupby("model") if "model" in fitted else [("", fitted)]
    for model, g in groups:
        label = f"{model}: " if model else ""
        for name in PER_PARAM.values():
            print(f"- {label}{name}: {g[name].min():.3f} to {g[name].max():.3f}")
    side = across_models(merged)
    if len(side):
        print("\n## The models side by side at the design points they share\n")
        print(markdown(side))
        print(
            "\nEach model's targets are its own random tokens (other vocabularies): a row"
            " compares the bits each adapter stores of its own target. teacher_forced: target"
            " tokens that are the first choice given the true prefix; greedy_tokens: tokens"
            " free-running greedy decoding from the key reproduces (means over sequences)."
        )
    print("\nNotes:")
    for note in res.notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
