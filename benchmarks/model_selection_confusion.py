"""Model-selection confusion table: does lawfit.compare recover the form that made the data?

For each built-in candidate form, simulate `--reps` sweeps from it (ranks 1-128,
lengths 64-4096, 2 seeds, 5 % multiplicative noise; lawfit.testing.selection.TRUTHS),
run lawfit.compare on each, and count which form wins by AICc and by BIC. Rows: true
form; columns: selected form. Run:

    python benchmarks/model_selection_confusion.py --reps 20 --space log
    python benchmarks/model_selection_confusion.py --reps 20 --space linear
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from lawfit.compare import compare
from lawfit.forms_extra import BUILTIN_CANDIDATES
from lawfit.testing.selection import TRUTHS, synthetic_form_dataset


def run(reps: int, space: str, noise: float, seed: int):
    picks = {"aicc": [], "bic": []}
    for i, true in enumerate(BUILTIN_CANDIDATES):
        for rep in range(reps):
            ds = synthetic_form_dataset(true, TRUTHS[true], noise=noise, rng=seed + 1000 * i + rep)
            pool = ("modules",) if ds.sizes["modules"] > 1 else ()
            if not pool:
                ds = ds.isel(modules=0)
            res = compare(ds, pool=pool, holdout=(), space=space)
            t = res.table
            picks["aicc"].append((true, t.loc[t["aicc"].idxmin(), "form"]))
            picks["bic"].append((true, t.loc[t["bic"].idxmin(), "form"]))
    out = {}
    for crit, pairs in picks.items():
        df = pd.DataFrame(pairs, columns=["true", "selected"])
        tab = pd.crosstab(df["true"], df["selected"]).reindex(
            index=list(BUILTIN_CANDIDATES), columns=list(BUILTIN_CANDIDATES), fill_value=0
        )
        out[crit] = tab
    return out


def _markdown(tab: pd.DataFrame) -> str:
    cols = [str(c) for c in tab.columns]
    lines = ["| true \\ selected | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for idx, row in tab.iterrows():
        lines.append(f"| {idx} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--space", choices=["linear", "log"], default="log")
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    t0 = time.time()
    tabs = run(a.reps, a.space, a.noise, a.seed)
    short = {
        n: n.replace("power_law", "pl").replace("_no_offset", "_no_b") for n in BUILTIN_CANDIDATES
    }
    for crit, tab in tabs.items():
        tab = tab.rename(index=short, columns=short)
        acc = sum(tab.iloc[i, i] for i in range(len(tab))) / tab.to_numpy().sum()
        print(
            f"\n## selected by {crit.upper()} (space={a.space}, noise={a.noise}, "
            f"{a.reps} sweeps per true form); overall accuracy {acc:.1%}\n"
        )
        print(_markdown(tab))
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
