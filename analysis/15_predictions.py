"""The scorecard: single cells predicted before they ran, against what they measured.

Since session 15 the next cell of the law sweep has often been predicted, from the file as it
stood, and written down in docs/analyses.md before the cell ran or finished. The predictions
are collected in ``data/predictions.toml`` (each with the commit that first holds it and the
command that computed it); this script reads each cell's measured ΔL from the dataset it
landed in and scores every interval: inside or not, and the error of its centre.

One interval per cell is the one it is held to (``held_to``): the cell interval the write-up
named, else the default form's first written one. Those are one-cell 95 % intervals, so about
19 in 20 should hold; the summary gives the binomial probability of doing as badly or worse.
A mean law's interval is not meant to cover one cell: it is listed, never counted. Cells of
another model predicted by a law carried over (``lawfit.transfer_law``, kind "cell of a new
model") test whether the law transfers, not the law itself: they are scored on a line of
their own.

A closing line scores the same kind of interval on every fitted cell of the newest dataset
the registry names, each cell held out of its own fit
(:func:`lawfit.robust.leave_one_out_coverage`, power law, SFT, clustered over data_seed):
many more cells than were predicted, but not written down before they ran, and the folds
share most of their cells.

    python analysis/15_predictions.py              # the table and the summary
    python analysis/15_predictions.py --markdown   # the same for docs/analyses.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
import warnings
from functools import cache

import pandas as pd
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, header, markdown  # noqa: E402

REGISTRY = os.path.join(ROOT, "data", "predictions.toml")
#: the fields each prediction and each of its readings must have
FIELDS = ("id", "session", "written_in", "dataset", "rank", "length", "data_seed", "reading")
READING_FIELDS = ("form", "kind", "centre", "low", "high", "held_to")
#: a cell of another model, predicted by carrying a law over (lawfit.transfer_law)
TRANSFER = "cell of a new model"
KINDS = ("mean law", "cell of a new sequence", "cell of this sequence", TRANSFER)
#: the nominal coverage of every interval in the registry
LEVEL = 0.95


def load_registry(path: str = REGISTRY) -> list[dict]:
    """Read and check the registry of predictions.

    Parameters
    ----------
    path : str
        A TOML file of ``[[prediction]]`` tables (see ``data/predictions.toml``).

    Returns
    -------
    list of dict
        The predictions, each with its ``reading`` list.
    """
    with open(path, "rb") as fh:
        entries = tomllib.load(fh).get("prediction", [])
    if not entries:
        sys.exit(f"{path} holds no [[prediction]] table; see data/predictions.toml's header.")
    for entry in entries:
        name = entry.get("id", "?")
        readings = entry.get("reading", [])
        missing = [f for f in FIELDS if f not in entry]
        missing += [f"reading.{f}" for r in readings for f in READING_FIELDS if f not in r]
        bad = [r["kind"] for r in readings if r.get("kind") not in KINDS]
        if missing or bad:
            sys.exit(
                f"{path}: prediction {name!r} lacks {missing or 'nothing'} and has unknown kinds "
                f"{bad or 'none'}; expected the fields {FIELDS} and, per reading, "
                f"{READING_FIELDS} with kind one of {KINDS}."
            )
        if any(r["held_to"] and r["kind"] == "mean law" for r in entry["reading"]):
            sys.exit(f"{path}: prediction {name!r} holds a cell to a mean law's interval.")
    return entries


@cache
def _dataset(relpath: str):
    import lawfit.data

    return lawfit.data.open_dataset(os.path.join(ROOT, relpath))


def measured(entry: dict) -> tuple[float, str]:
    """The predicted cell's ΔL (NaN until it is merged ``ok``) and its status.

    Parameters
    ----------
    entry : dict
        One prediction of the registry (SFT, initialisation seed 0 of its dataset).

    Returns
    -------
    tuple of (float, str)
        ``(loss_reduction, status)``.
    """
    ds = _dataset(entry["dataset"])
    at = dict(rank=entry["rank"], length=entry["length"], data_seed=entry["data_seed"])
    at.update({"objective": "sft", "seed": 0})
    try:
        cell = ds.sel({k: v for k, v in at.items() if k in ds.dims}).squeeze(drop=True)
    except KeyError:
        return float("nan"), "not in the sweep"
    status = str(cell["status"].item()) if "status" in cell else "ok"
    value = float(cell["loss_reduction"].item())
    return (value, status) if status == "ok" else (float("nan"), status)


def scorecard(entries: list[dict]) -> pd.DataFrame:
    """One row per reading: the interval, the measured ΔL, whether it lies inside.

    Parameters
    ----------
    entries : list of dict
        From :func:`load_registry`.

    Returns
    -------
    pandas.DataFrame
        Columns ``id, session, form, kind, held_to, centre, low, high, measured, status,
        error_pct, inside`` (``inside`` is None until the cell is measured).
    """
    rows = []
    for entry in entries:
        value, status = measured(entry)
        for r in entry["reading"]:
            done = value == value  # not NaN
            rows.append(
                {
                    "id": entry["id"],
                    "session": entry["session"],
                    "form": r["form"],
                    "kind": r["kind"],
                    "held_to": bool(r["held_to"]),
                    "centre": r["centre"],
                    "low": r["low"],
                    "high": r["high"],
                    "measured": value,
                    "status": status,
                    "error_pct": 100 * (value / r["centre"] - 1) if done else float("nan"),
                    "inside": (r["low"] <= value <= r["high"]) if done else None,
                }
            )
    return pd.DataFrame(rows)


def own_law(card: pd.DataFrame) -> pd.DataFrame:
    """The readings of cells predicted by their own model's law (transfers left out)."""
    return card[card["kind"] != TRANSFER]


def summary(card: pd.DataFrame) -> list[str]:
    """The held-to intervals' record, and how likely a record this poor is at 95 % coverage.

    Cells of another model predicted by a law carried over (``kind`` "cell of a new model")
    test another claim, that the law transfers: they get a line of their own.
    """
    transfer, card = card[card["kind"] == TRANSFER], own_law(card)
    held = card[card["held_to"] & card["inside"].notna()]
    n, k = len(held), int(held["inside"].sum())
    pending = card.loc[card["held_to"] & card["inside"].isna(), "id"].tolist()
    lines = [f"held-to cell intervals: {k} of {n} measured cells inside their 95 % interval"]
    if n:
        tail = stats.binom.cdf(k, n, LEVEL)
        lines.append(
            f"  P(at most {k} of {n} inside | every interval covers 95 %) = {tail:.3f}"
            + ("  (fewer than 95 % intervals would hold)" if tail < 0.05 else "")
        )
        misses = held.loc[~held["inside"].astype(bool), ["id", "session"]]
        for _, m in misses.iterrows():
            lines.append(f"  outside: {m['id']} (session {m['session']})")
    cells = card[(card["kind"] != "mean law") & card["inside"].notna()]
    lines.append(
        f"every cell interval, each form: {int(cells['inside'].sum())} of {len(cells)} inside"
    )
    if len(transfer):
        done = transfer[transfer["held_to"] & transfer["inside"].notna()]
        lines.append(
            "cells of a new model, predicted by a law carried over (lawfit.transfer_law): "
            f"{int(done['inside'].sum())} of {len(done)} measured inside their held-to interval"
        )
        pending += transfer.loc[transfer["held_to"] & transfer["inside"].isna(), "id"].tolist()
    if pending:
        lines.append(f"pending (not yet measured): {', '.join(pending)}")
    return lines


def held_out_summary(entries: list[dict]) -> str:
    """Leave-one-out coverage of one-cell intervals on the newest dataset of the registry.

    The newest dataset of a prediction by its own model's law: a transfer's new model may
    have too few cells for a law of its own.
    """
    import lawfit
    from lawfit.robust import leave_one_out_coverage

    own = [e for e in entries if all(r["kind"] != TRANSFER for r in e["reading"])]
    relpath = max(own, key=lambda e: e["session"])["dataset"]
    ds = _dataset(relpath)
    if "objective" in ds.dims:
        ds = ds.sel(objective="sft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cover = leave_one_out_coverage(lawfit.fit(ds), cluster="data_seed", level=LEVEL)
    misses = cover.table[~cover.table["inside"]]
    listed = "; ".join(
        f"rank {r['rank']:g}, l {r['length']:g}, sequence {r['data_seed']:g} "
        f"({r['error_pct']:+.1f} %)"
        for _, r in misses.iterrows()
    )
    return f"{relpath}: {cover}" + (f"; outside: {listed}" if listed else "")


def _shown(card: pd.DataFrame) -> pd.DataFrame:
    """The scorecard as printed: intervals as text; a mean law's verdict in parentheses."""
    verdict = card["inside"].map({True: "yes", False: "no", None: "—"})
    mean_law = card["kind"] == "mean law"
    verdict[mean_law & card["inside"].notna()] = "(" + verdict + ")"
    verdict[~mean_law & (card["inside"] == False)] = "**no**"  # noqa: E712
    bounds = card[["centre", "low", "high"]].to_numpy()
    return card.assign(
        interval=[f"{c:.2f} [{lo:.2f}, {hi:.2f}]" for c, lo, hi in bounds],
        measured=card["measured"].map(lambda v: f"{v:.3f}" if v == v else "—"),
        error_pct=card["error_pct"].map(lambda v: f"{v:+.1f}" if v == v else "—"),
        inside=verdict,
        held_to=card["held_to"].map({True: "held to", False: ""}),
    )[["id", "session", "form", "kind", "held_to", "interval", "measured", "error_pct", "inside"]]


def main(argv: list[str] | None = None) -> int:
    """Print the scorecard of the registry's predictions."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("registry", nargs="?", default=REGISTRY, help="the predictions (TOML)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument(
        "--no-held-out",
        action="store_true",
        help="skip the leave-one-out coverage of the newest dataset's cells",
    )
    args = ap.parse_args(argv)
    card = scorecard(load_registry(args.registry))
    shown = _shown(card)
    if args.markdown:
        print(markdown(shown))
    else:
        header(f"Predictions written down before the cells ran ({args.registry})")
        print(shown.to_string(index=False))
    print()
    print("\n".join(summary(card)))
    if not args.no_held_out:
        print(held_out_summary(load_registry(args.registry)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
