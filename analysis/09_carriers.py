"""Step 9 - carriers: bits stored per parameter, per byte and per training FLOP (issue 15).

    python analysis/09_carriers.py DATASET [--markdown] [--bootstrap N]

For a carrier sweep (LoRA placements such as mlp_block@20 and the collect carriers memtok:m,
memtok:m@k, kv:m@k, skv:k@LAYERS in the ``modules`` dimension) prints, per setting (task ×
random ratio) and per carrier size and target length: n_params, n_bytes, bits stored and
bits recalled exactly (information bits, lawfit.information: mean and 95 % t-interval over
the target sequences, data_seed), the base model's floor (the same "bits stored" measured
before training: what a carrier that learned nothing still shows, since the untrained model
gives some tokens more than their uniform probability by chance) and the bits above it,
bits per parameter and per byte, the steps taken and an estimate of the FLOPs spent writing
the memory; then each carrier's best size and length (the capacity it has shown), and a
closing sentence naming the carrier that stores the most bits above the base model's floor
per byte and per FLOP on this dataset, whatever the answer (a carrier that only reaches the
floor stores nothing, however cheap it was to write).

FLOPs are an ESTIMATE written out for a frozen model (``collect.cost`` says what it counts
and what not): the forward and activation-gradient passes of the layers each step runs, the
head, the cached prefix once, memory positions and slots where a carrier adds them, one
forward pass for a carrier written without training. Where the model config or the task
entries cannot be had, the FLOPs are left out and the reason printed.
(``collect plan`` prints another, coarser figure for planning: 6 × every weight × batch
tokens × max_steps, an upper bound; this one follows each cell's steps and its carrier.)

The per-carrier law with its intervals (lawfit.carriers) is printed after the descriptive
tables, where a carrier has enough cells for one.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_figures")
)
from _common import header, parser  # noqa: E402
from carriers import (  # noqa: E402
    _interval,
    carrier_cells,
    carrier_points,
    format_interval,
    paired_ratio_text,
)

from collect.cost import add_flops  # noqa: E402

SETTING = ["model", "task", "random_ratio", "objective"]


# ----------------------------------------------------------------------------- tables
def group_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per setting, carrier size and length: sizes, bits with intervals, FLOPs."""
    if "still_improving" not in cells:  # no trajectories: not known
        cells = cells.assign(still_improving=np.nan)
    setting = [c for c in SETTING if c in cells]
    keys = [*setting, "carrier", "modules", "rank", "n_params", "n_bytes", "length"]
    per_target = (
        cells.groupby([*keys, "data_seed"], dropna=False)[
            [
                "bits_stored",
                "bits_recalled",
                "bits_stored_base",
                "bits_content",
                "steps",
                "flops",
                "still_improving",
            ]
        ]
        .mean()
        .reset_index()
    )
    stops = _stop_reasons(cells, keys)
    rows = []
    for key, g in per_target.groupby(keys, dropna=False):
        stored, _, s_ci, n = _interval(g["bits_stored"].to_numpy())
        recalled, _, r_ci, _ = _interval(g["bits_recalled"].to_numpy())
        flops = float(g["flops"].mean())
        gains = (g["bits_stored"] - g["bits_stored_base"]).to_numpy()
        gain, _, g_ci, _ = _interval(gains)
        rec = dict(zip(keys, key, strict=True))
        rec.update(
            targets=n,
            stopped=stops.get(key, ""),
            stored=format_interval(stored, s_ci),
            recalled=format_interval(recalled, r_ci),
            base_floor=float(g["bits_stored_base"].mean()),
            above_floor=gain,
            above=format_interval(gain, g_ci),
            resolved=_resolved(gains, g["bits_content"].to_numpy(float)),
            above_by_target=dict(zip(g["data_seed"], gains, strict=True)),
            flops_by_target=dict(zip(g["data_seed"], g["flops"], strict=True)),
            stored_mean=stored,
            recalled_mean=recalled,
            bits_per_param=stored / rec["n_params"],
            bits_per_byte=stored / rec["n_bytes"],
            steps=float(g["steps"].mean()),
            still_improving=bool((g["still_improving"] > 0).any()),
            gflops=flops / 1e9,
            bits_per_pflop=stored / flops * 1e15 if flops > 0 else np.nan,
        )
        rows.append(rec)
    table = pd.DataFrame(rows)
    gain = table["above_floor"].where(table["resolved"])
    table["above_per_byte"] = gain / table["n_bytes"]
    table["above_per_pflop"] = gain / (table["gflops"] * 1e9) * 1e15
    return table


def _stop_reasons(cells: pd.DataFrame, keys: list) -> dict:
    """Each row's stop reasons, joined (empty when the data records none), by row key."""
    if "stop_reason" not in cells:
        return {}
    joined = cells.groupby(keys, dropna=False)["stop_reason"].agg(
        lambda s: "/".join(sorted({str(r) for r in s.dropna() if str(r)}))
    )
    return joined.to_dict()


#: Bits above the floor smaller than this share of the content's entropy are not resolved.
RESOLUTION = 0.01


def _resolved(gains: np.ndarray, content: np.ndarray) -> bool:
    """Whether a carrier stores bits above the base model's floor on every target.

    The gain (bits stored minus the floor, paired per target sequence) must exceed 1 % of
    the content's entropy on each target sequence. (A 95 % interval over the targets is
    not the test: with two sequences its t(1) half-width is 12.7 standard errors, and it
    called 500-bit gains over a 19-bit floor "nothing". Each target's gain is itself a
    measurement whose training noise is far below 1 % of the content.)
    """
    gains = np.asarray(gains, float)
    return bool(gains.size and np.all(np.isfinite(gains)) and np.all(gains > RESOLUTION * content))


SHOWN = {
    "carrier": "carrier",
    "modules": "modules",
    "rank": "rank",
    "n_params": "n_params",
    "n_bytes": "n_bytes",
    "length": "length",
    "targets": "targets",
    "stored": "bits stored (95% CI)",
    "recalled": "bits recalled (95% CI)",
    "base_floor": "base model's floor",
    "above": "above the floor (95% CI)",
    "bits_per_param": "stored/param",
    "bits_per_byte": "stored/byte",
    "steps": "steps",
    "gflops": "GFLOP (est.)",
    "bits_per_pflop": "stored/PFLOP",
}


def shown(table: pd.DataFrame) -> pd.DataFrame:
    out = table[[c for c in SHOWN if c in table]].rename(columns=SHOWN)
    for col in ("n_params", "n_bytes", "rank", "length", "targets"):
        if col in out:
            out[col] = out[col].astype("Int64")
    return out


def render(frame: pd.DataFrame, as_markdown: bool) -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if not np.isfinite(v) else f"{v:.4g}"
        return "" if v is pd.NA else str(v)

    if not as_markdown:
        return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    rows = [list(map(str, frame.columns)), ["---"] * frame.shape[1]]
    rows += [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def best_of_each(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per carrier, its row with the largest ``column`` (ties: the first)."""
    ok = table.dropna(subset=[column])
    return ok.loc[ok.groupby("carrier")[column].idxmax()].sort_values(column, ascending=False)


def verdict(table: pd.DataFrame, label: str) -> str:
    """The closing sentence: which carrier stores the most per byte and per FLOP.

    Counted are the bits stored above the base model's floor (``above_floor``), so that a
    carrier reaching only the floor, however cheap, is not named; such carriers are listed.
    """
    parts = [_at_the_floor(table)] if len(_at_the_floor(table)) else []
    for column, per in (
        ("above_per_byte", "per byte"),
        ("above_per_pflop", "per PFLOP spent writing it (estimated)"),
    ):
        best = best_of_each(table, column)
        if not len(best):
            parts.append(
                f"no carrier stores bits above the base model's floor (or its "
                f"{'bytes' if 'byte' in column else 'FLOPs'} are unknown), so none stores the "
                f"most {per}"
            )
            continue
        top = best[column].max()
        tied = best[np.isclose(best[column], top, rtol=1e-9, atol=0)]
        who = " and ".join(tied["carrier"])
        at = ", ".join(
            f"{r.modules}, rank {int(r.rank)}, length {int(r.length)}{_learning(r)}"
            for r in tied.itertuples()
        )
        rest = best.drop(tied.index)
        runner = (
            f"; next {rest.iloc[0]['carrier']} at {rest.iloc[0][column]:.3g}"
            f"{_learning(rest.iloc[0])} ({_lead(tied.iloc[0], rest.iloc[0], column)})"
            if len(rest)
            else ""
        )
        parts.append(
            f"{who} store{'s' if len(tied) == 1 else ''} the most bits above the base "
            f"model's floor {per}: "
            f"{top:.3g} ({at}; {int(tied.iloc[0]['targets'])} target "
            f"sequence(s)){runner}"
        )
        if column == "above_per_pflop" and len(rest):
            parts += _unlike_stops(tied.iloc[0], rest.iloc[0])
        trained = best[best["steps"] > 0]
        if column == "above_per_pflop" and (tied["steps"] == 0).any() and len(trained):
            t = trained.iloc[0]
            parts.append(
                f"per training FLOP, among the carriers written by training, "
                f"{t['carrier']} at {t[column]:.3g} ({t['modules']}, rank "
                f"{int(t['rank'])}, length {int(t['length'])})"
            )
    return f"On this dataset ({label}): " + "; ".join(parts) + "."


def per_target(row, column: str) -> pd.Series:
    """A table row's ``column`` (``above_per_byte`` or ``above_per_pflop``) per target sequence."""
    gains = pd.Series(row["above_by_target"], dtype=float)
    if column == "above_per_byte":
        return gains / row["n_bytes"]
    return gains / pd.Series(row["flops_by_target"], dtype=float) * 1e15


def _lead(first, second, column: str) -> str:
    """The leader's value over the runner-up's on each target sequence both rows hold.

    The two rows' means differ by less than their sequences scatter more often than not, so
    the sentence says how often the leader is ahead target by target and the paired interval
    of the ratio, not only which mean is larger.
    """
    a, b = per_target(first, column), per_target(second, column)
    shared = a.index.intersection(b.index)
    if not len(shared):
        return "no target sequence in common: not compared pairwise"
    ratio = (a[shared] / b[shared]).sort_index()
    return paired_ratio_text(ratio, f"{first['carrier']} ahead")


def _unlike_stops(first, second) -> list[str]:
    """Say so when the two best per-FLOP rows stopped for different reasons.

    Their FLOPs count the steps until the stop rule fired, and a cell that stops as
    ``memorized`` (every token above p = 0.5) runs fewer than one that recalls greedily but
    never gets there and runs to the convergence test or the budget, so their order depends
    on the stop criterion as well as on the carrier.
    """
    a, b = str(first.get("stopped", "")), str(second.get("stopped", ""))
    if not a or not b or a == b:
        return []
    return [
        f"but the two stopped for different reasons ({first['carrier']}: {a}; "
        f"{second['carrier']}: {b}), and the FLOPs count the steps until each stopped, so "
        "the order depends on the stop criterion too"
    ]


def _learning(row) -> str:
    """Say so when a row's cells were still improving when they stopped (a lower bound)."""
    if not getattr(row, "still_improving", False):
        return ""
    return " (still improving when it stopped: a lower bound)"


def _at_the_floor(table: pd.DataFrame) -> str:
    """Name the carriers that store nothing resolved above the floor at any size."""
    resolved = table.groupby("carrier")["resolved"].any()
    floor_only = sorted(resolved.index[~resolved])
    if not floor_only:
        return ""
    return (
        f"{' and '.join(floor_only)} store{'s' if len(floor_only) == 1 else ''} nothing above "
        "the base model's floor at any size here (no more than 1 % of the content's "
        "entropy on some target sequence)"
    )


def law_summaries(sub, bootstrap: int) -> None:
    """Print the per-carrier law and the bits/param intervals of lawfit.carriers."""
    from lawfit.carriers import carrier_bits, carrier_law
    from lawfit.data import target_cluster

    # two or more target sequences: the laws' intervals are cluster-robust over them
    cluster = target_cluster(sub)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, run in (
            (
                "bits per parameter and per byte (lawfit.carriers.carrier_bits)",
                lambda: carrier_bits(sub, bootstrap=bootstrap, unit="data_seed", rng=0),
            ),
            (
                "law per carrier vs n_params (lawfit.carriers.carrier_law)",
                lambda: carrier_law(sub, size="params", cluster=cluster),
            ),
            (
                "law per carrier vs n_bytes",
                lambda: carrier_law(sub, size="bytes", cluster=cluster),
            ),
        ):
            try:
                print(f"{name}:\n{run().summary()}\n")
            except Exception as exc:  # noqa: BLE001 - report why, carry on
                print(f"{name}: not computed ({type(exc).__name__}: {exc})\n")


def protocol_notes(ds) -> list[str]:
    """Say which lr each carrier's cells ran under, when the dataset combines sweeps.

    ``collect combine`` records each cell's ``[train]`` settings in the variable
    ``protocol``; a single sweep's dataset has one protocol and gets no note.
    """
    import json

    if "protocol" not in ds:
        return []
    done = ds["status"] == "ok"
    notes = []
    for modules in ds["modules"].values:
        texts = set(ds["protocol"].sel(modules=modules).values[done.sel(modules=modules).values])
        lrs = sorted({json.loads(t)["lr"] for t in texts if t})
        if lrs:
            shown = ", ".join(f"{lr:g}" for lr in lrs)
            notes.append(f"{modules}: cells collected under [train] lr {shown}")
    return notes


def carrier_tables(ds, cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The cells with FLOPs and still-improving flags, their :func:`group_table`, the notes."""
    from lawfit.budget import with_still_improving

    cells, notes = add_flops(with_still_improving(cells, ds), ds)
    return cells, group_table(cells), notes + protocol_notes(ds)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = ap.parse_args()
    if args.synthetic:
        sys.exit(
            "09_carriers.py has no --synthetic mode: the demo data hold one carrier and "
            "no content entropy. Give a carrier dataset (collect a carrier sweep, e.g. "
            "sweeps/carriers_cpu.toml, and merge it)."
        )
    from _common import load

    ds = load(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = carrier_cells(ds)
    n_carriers = cells["carrier"].nunique()
    if n_carriers < 2:
        print(
            f"note: {n_carriers} carrier(s) with ok cells ({sorted(cells['carrier'].unique())})"
            ": nothing to compare across carriers; the tables describe it alone."
        )
    cells, table, notes = carrier_tables(ds, cells)
    setting = [c for c in SETTING if c in table]
    for key, sub in table.groupby(setting, dropna=False):
        label = ", ".join(f"{k}={v}" for k, v in zip(setting, key, strict=True))
        header(f"Carriers: {label}")
        print(
            "per carrier size and target length (mean over target sequences, data_seed; "
            "± = 95 % t-interval half-width; FLOPs: estimate, see the script's docstring):"
        )
        print(render(shown(sub), args.markdown) + "\n")
        capacity = carrier_points(
            cells[np.logical_and.reduce([cells[k] == v for k, v in zip(setting, key, strict=True)])]
        )
        cap = sub.merge(
            capacity[["modules", "n_params", "length"]], on=["modules", "n_params", "length"]
        )
        print("each carrier size at the length storing the most bits (its shown capacity):")
        print(render(shown(cap), args.markdown) + "\n")
        sel = {k: [v] for k, v in zip(setting, key, strict=True) if k in ds.dims}
        law_summaries(ds.sel(sel), args.bootstrap)
        print(verdict(sub, label) + "\n")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
