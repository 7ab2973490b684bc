"""The report's opening: the one-screen summary, the dataset and its cell counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from lawfit._tokens import CELL_DIMS
from lawfit.data import LN2
from lawfit.errors import LawfitError
from lawfit.report.settings import _Setting
from lawfit.robust import preferred_interval

#: status text of a grid point that holds no cell
NO_CELL = ("not_run", "nan", "")


def _count_cells(ds: xr.Dataset) -> dict:
    """Cells of the dataset by state: collected statuses, memorized, not yet run."""
    out: dict = {"statuses": {}, "memorized": 0, "sweep": None, "not_run": None}
    if "status" in ds:
        st = pd.Series(np.asarray(ds["status"].values).ravel().astype(str))
        empty = st.isin(NO_CELL)  # xr.concat/align of two sweeps fills with NaN, not "not_run"
        out["statuses"] = st[~empty].value_counts().to_dict()
        out["not_run"] = int(empty.sum())
    elif "loss_reduction" in ds:
        out["statuses"] = {"ok": int(ds["loss_reduction"].notnull().sum())}
    if "loss_after" in ds:
        mem = ds["loss_after"] <= LN2
        if "status" in ds:
            mem = mem & (ds["status"] == "ok")
        out["memorized"] = int(mem.sum())
    if "n_cells" in ds.attrs and "n_cells_done" in ds.attrs:
        out["sweep"] = (int(ds.attrs["n_cells_done"]), int(ds.attrs["n_cells"]))
    return out


def _data_status(counts: dict) -> str:
    """One sentence on what the dataset holds, in cells of the sweep."""
    st = counts["statuses"]
    n = sum(st.values())
    ok = st.get("ok", 0)
    parts = [f"{ok} ok ({counts['memorized']} of them memorized, loss_after ≤ ln 2)"]
    parts += [f"{v} {k}" for k, v in st.items() if k != "ok"]
    text = f"{n} cells collected: " + ", ".join(parts) + "."
    if counts["sweep"] is not None:
        done, total = counts["sweep"]
        text += f" The sweep has {total} cells: {done} finished, {total - done} not yet run" + (
            " (a PARTIAL dataset)." if done < total else "."
        )
    elif counts["not_run"]:
        text += (
            f" {counts['not_run']} other points of the dataset's grid (the product of its "
            "coordinates) hold no cell."
        )
    return text


def _ci(d: pd.DataFrame, param: str) -> str:
    r = d.loc[d["param"] == param].iloc[0]
    return f"{r['estimate']:.3g} [{r['low']:.3g}, {r['high']:.3g}]"


def _summary_law(res: dict) -> str:
    law = res.get("law")
    if law is None:
        return "not fitted"
    d = law.to_dataframe().reset_index()
    if "low" not in d:
        return f"α = {law.params['alpha']:.3g}, β = {law.params['beta']:.3g}"
    ci, method, reason = preferred_interval(law)
    d = d.drop(columns=["low", "high"]).merge(ci, left_on="param", right_index=True)
    how = f" ({method}: {reason})" if method else ""
    text = f"α = {_ci(d, 'alpha')}, β = {_ci(d, 'beta')}{how}"
    return f"{text}; R² = {law.r2:.3f}, n = {law.n_obs}{_summary_lack_of_fit(law)}"


def _summary_lack_of_fit(law) -> str:
    """``"; lack of fit p = ..."`` where the law's design points are replicated, else ``""``."""
    from lawfit.lack_of_fit import lack_of_fit

    try:
        return f"; lack of fit p = {lack_of_fit(law).pvalue:.2g}"
    except LawfitError:
        return ""


def _summary_best_form(res: dict) -> str:
    if "compare_log" in res:
        return f"{res['compare_log'].best} (log space: heteroscedastic residuals)"
    return res["compare"].best if "compare" in res else "not compared"


def _summary_threshold(res: dict) -> str:
    pt = res.get("transition")
    if pt is None:
        return "not computed"
    row = pt.to_dataframe().set_index("quantity")
    if "threshold_p_star" not in row.index:
        return "not computed"
    r = row.loc["threshold_p_star"]
    text = f"p* = {r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"
    unreliable = ("few_informative_runs", "threshold_not_logistic", "one_miss_per_run")
    if any(f.code in unreliable for f in pt.flags):
        text += " (flagged: interval not reliable, see the section)"
    return text


def _summary_capacity(res: dict) -> str:
    bits = res.get("bits")
    if bits is None or not math.isfinite(bits.max_bits_per_param):
        return "not computed"
    text = f"{bits.max_bits_per_param:.3g} bits/param (largest measured)"
    by_rank = bits.by_rank
    if len(by_rank) and "saturated" in by_rank and by_rank["saturated"].any():
        text += "; a lower bound where targets were memorized"
    if len(by_rank) and "at_longest" in by_rank and by_rank["at_longest"].any():
        text += "; a lower bound where a rank stored the most at its longest target"
    return text


def _summary_memft(res: dict) -> str:
    claims = res.get("memft_claims")
    if claims is None:
        return "no MemFT comparison"
    return "; ".join(claims) if claims else "no MemFT saving computable"


def _summary(
    settings: list[_Setting], counts: dict, empty: list[str], combined: bool = False
) -> list:
    """Build the one-screen summary: one row per setting, then the data's status.

    ``combined``: the data joins several files (``collect combine``), whose grid is the
    product of their coordinates, so a setting with nothing may be one no file planned
    (a model at another model's placement), and the line says so.
    """
    rows = [
        {
            "setting": st.label,
            "law (SFT, 95% CI)": _summary_law(st.results),
            "best form": _summary_best_form(st.results),
            "recall threshold": _summary_threshold(st.results),
            "capacity": _summary_capacity(st.results),
            "MemFT vs SFT": _summary_memft(st.results),
        }
        for st in settings
    ]
    blocks: list = [("h2", "Summary")]
    if rows:
        blocks.append(("table", pd.DataFrame(rows)))
    blocks.append(("p", "Data: " + _data_status(counts)))
    if empty:
        what = (
            "Settings none of the combined files holds (their coordinates' product; no section): "
            if combined
            else "Settings with nothing collected (no section): "
        )
        blocks.append(("p", what + "; ".join(empty) + "."))
    failed = [f"{st.label}: {t}" for st in settings for t in st.results.get("errors", {})]
    if failed:
        blocks.append(
            (
                "note",
                "sections that failed on an unexpected error (a bug, please "
                "report it): " + "; ".join(failed) + ".",
            )
        )
    return blocks


def _dims_sentence(ds: xr.Dataset, counts: dict) -> str:
    """Name the grid's coordinates, how many of their combinations are cells, then the rest.

    A merged sweep is stored on the product of its coordinates, so the sizes alone overstate
    what was collected (a sequence with one cell still counts once along ``data_seed``).
    """
    grid = {d: n for d, n in ds.sizes.items() if d in CELL_DIMS}
    other = {d: n for d, n in ds.sizes.items() if d not in CELL_DIMS}
    product = int(np.prod(list(grid.values()))) if grid else 0
    cells = counts["sweep"][1] if counts["sweep"] is not None else sum(counts["statuses"].values())
    text = "Cell coordinates: " + ", ".join(f"{d}={n}" for d, n in grid.items())
    text += f": {product:,} combinations, of which {cells:,} are "
    text += "the sweep's cells" if counts["sweep"] is not None else "collected cells"
    text += " (the other combinations hold no cell)." if cells < product else "."
    if other:
        text += " Per-cell axes: " + ", ".join(f"{d}={n}" for d, n in other.items()) + "."
    return text + " Variables: " + ", ".join(sorted(map(str, ds.data_vars))) + "."


def _dataset_section(ds: xr.Dataset, counts: dict) -> list:
    """Dims, variables, synthetic/partial warnings and the cell counts."""
    blocks: list = [("h2", "Dataset"), ("p", _dims_sentence(ds, counts))]
    if str(ds.attrs.get("synthetic", "")).lower() == "true":
        blocks.append(
            (
                "note",
                "this dataset is SYNTHETIC (attrs synthetic=true): numbers below "
                "describe the simulator, not a model.",
            )
        )
    if str(ds.attrs.get("complete", "true")).lower() == "false":
        blocks.append(
            (
                "note",
                f"this dataset is PARTIAL: {ds.attrs.get('n_cells_done', '?')} "
                f"of {ds.attrs.get('n_cells', '?')} cells of its sweep are "
                "collected (attrs complete=false); every number below rests on "
                "the collected cells only.",
            )
        )
    rows = [
        {"cells": "ok, not memorized", "n": counts["statuses"].get("ok", 0) - counts["memorized"]},
        {"cells": "ok, memorized (loss_after ≤ ln 2)", "n": counts["memorized"]},
    ]
    rows += [{"cells": k, "n": v} for k, v in counts["statuses"].items() if k != "ok"]
    if counts["sweep"] is not None:
        done, total = counts["sweep"]
        rows.append({"cells": "not yet run (of the sweep)", "n": total - done})
    blocks.append(("table", pd.DataFrame(rows)))
    if "loss_reduction" not in ds or "rank" not in ds.dims or "length" not in ds.dims:
        blocks.append(
            (
                "note",
                "no loss_reduction over rank and length: the law, model "
                "selection and capacity sections are skipped.",
            )
        )
    return blocks
