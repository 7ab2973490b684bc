"""The README's numbers about the shipped dataset are the ones `lawfit report` computes from it.

The README quotes the report on ``data/law_cpu_converged.nc`` (cells, the law with its
cluster-robust intervals, α − β, lack of fit, capacity, recall threshold, MemFT), and
``analysis/09_carriers.py`` on ``data/carriers_converged.nc`` (bits per parameter of each
carrier), and the second model family's cells in ``data/gemma_cpu.nc`` beside SmolLM2's.
The files grow every session; this test fails when the README was not updated with them,
and names the sentence that went stale.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from lawfit.lack_of_fit import lack_of_fit
from lawfit.report import build_report
from lawfit.robust import preferred_interval

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "law_cpu_converged.nc"


@pytest.fixture(scope="module")
def readme() -> str:
    """The README with runs of whitespace folded to one space and ASCII minus signs."""
    return _folded(ROOT / "README.md")


def _folded(path: Path) -> str:
    """The text of ``path`` with runs of whitespace folded to one space and ASCII minus signs."""
    return re.sub(r"\s+", " ", path.read_text(encoding="utf-8")).replace("−", "-")


@pytest.fixture(scope="module")
def report():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_report(DATA, rng=0)


@pytest.fixture(scope="module")
def results(report) -> dict:
    (setting,) = report.results.values()
    return setting


def _interval(est: float, low: float, high: float, digits: int = 2) -> str:
    return f"{est:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _quoted(readme: str, expected: str, where: str = "the README's 'The shipped data'") -> None:
    assert expected.replace("−", "-") in readme, (
        f"{where} section should say {expected!r} (what this project's code computes from the "
        "shipped data); update it after merging new cells"
    )


def test_cell_counts(readme, report):
    status = next(x for kind, x in report.blocks if kind == "p" and "The sweep has" in x)
    total, done = re.search(r"The sweep has (\d+) cells: (\d+) finished", status).groups()
    _quoted(readme, f"{done} of its {total} cells")
    if int(done) < int(total):
        _quoted(readme, "It is PARTIAL")


def test_the_law_and_its_intervals(readme, results):
    law = results["law"]
    ci, _, _ = preferred_interval(law)
    a, b = (ci.loc[p] for p in ("alpha", "beta"))
    alpha = _interval(law.params["alpha"], a["low"], a["high"])
    beta = _interval(law.params["beta"], b["low"], b["high"])
    _quoted(readme, f"on the {law.n_obs} unmemorized SFT cells: α = {alpha}, β = {beta}")
    _quoted(readme, f"R² = {law.r2:.3f}")
    diff = law.contrast({"alpha": 1, "beta": -1}, cluster="data_seed")
    text = _interval(diff["estimate"], diff["low"], diff["high"])
    _quoted(readme, f"α − β = {text} (p = {diff['pvalue']:.2g} on {diff['dof']:.1f} degrees")


def test_lack_of_fit(readme, results):
    lof = lack_of_fit(results["law"])
    _quoted(
        readme,
        f"F = {lof.statistic:.2f} on {lof.df_lack} and {lof.df_pure} dof, p = {lof.pvalue:.2f}",
    )


def test_which_form(readme, results):
    table = results["compare"].table.set_index("form")
    _quoted(readme, f"AICc weight {table.loc['saturating', 'weight_aicc']:.2f}")


def test_capacity_bits_and_recall_threshold(readme, results):
    row = results["capacity"].table.set_index("length").loc[512.0]
    rank = _interval(row["estimate"], row["low"], row["high"], digits=1)
    _quoted(readme, f"verbatim recall at ℓ = 512 needs rank {rank}")
    forms = results["capacity_forms"]
    saturating = forms.table.query("form == 'saturating' and length == 512")["estimate"].item()
    _quoted(readme, f"{saturating:.1f} under the saturating form")
    averaged = forms.averaged.set_index("length").loc[512.0, "estimate"]
    _quoted(readme, f"averaged over the forms by their weights {averaged:.2f}")
    _quoted(readme, f"up to {results['bits'].max_bits_per_param:.2f} bits per adapter parameter")
    table = results["transition"].to_dataframe().set_index("quantity")
    row = table.loc["threshold_p_star"]
    _quoted(readme, f"p* = {_interval(row['estimate'], row['low'], row['high'])}")
    row = table.loc["threshold_isotonic"]
    _quoted(readme, f"model-free {_interval(row['estimate'], row['low'], row['high'])}")
    link = table.loc["p_value_logistic_link", "estimate"]
    _quoted(readme, f"parametric bootstrap p = {link:.2f}")
    fit = results["transition"].token_fit
    _quoted(readme, f"{fit.n_tokens} tokens in {fit.n_runs_informative} informative runs")


def test_memft_saving(readme, results):
    claim = next(c for c in results["memft_claims"] if c.startswith("memft_ot"))
    saving = re.search(r"rank saving (-?[\d.]+)% \[(-?[\d.]+)%, (-?[\d.]+)%\]", claim).groups()
    est, low, high = (f"{float(x):.1f} %" for x in saving)
    _quoted(readme, f"saves {est} [{low}, {high}] of the rank")


def test_memft_against_sft_on_the_same_targets(readme, results):
    """The README's paired MemFT numbers are the report's (lawfit.memft.paired)."""
    paired = results["memft"].paired
    for method in ("memft_ot", "memft_sw"):
        (r,) = paired[(paired["objective"] == method) & (paired["length"] == 128)].itertuples()
        _quoted(readme, f"{r.ratio:.3f}× SFT's ΔL [{r.low:.3f}, {r.high:.3f}]")
        gain = [100 * g for g in (r.accuracy_gain, r.accuracy_gain_low, r.accuracy_gain_high)]
        _quoted(
            readme,
            f"{gain[0]:.1f} more points of token accuracy [{gain[1]:+.1f}, {gain[2]:+.1f}]",
        )
    (r,) = paired[(paired["objective"] == "memft_sw") & (paired["length"] == 512)].itertuples()
    _quoted(readme, f"({r.ratio:.2f}× at ℓ = 512)")
    _quoted(readme, "({} against {} at ℓ = 512)".format(*r.recalled.split("/")))
    (r,) = paired[(paired["objective"] == "memft_sw") & (paired["length"] == 128)].itertuples()
    memft, sft = zip(*(pair.split("/") for pair in r.recalled.split(", ")), strict=True)
    _quoted(readme, f"recalls the first {_listed(memft)} of its tokens where SFT's recalls")
    _quoted(readme, f"SFT's recalls {_listed(sft)} (")


def _listed(items) -> str:
    """``a, b and c``, as the README lists numbers."""
    return ", ".join(items[:-1]) + " and " + items[-1]


def test_the_scorecard_of_predictions(readme):
    """The README's record of cells predicted before they ran is the scorecard's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "predictions", ROOT / "analysis" / "15_predictions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    card = module.scorecard(module.load_registry())
    law = module.own_law(card)  # a law carried to another model is scored apart
    held = law[law["held_to"] & law["inside"].notna()]
    inside = int(held["inside"].sum())
    _quoted(readme, f"Of {len(held)} cells predicted before they ran, {inside} landed inside")
    line = next(ln for ln in module.summary(card) if ln.strip().startswith("P(at most"))
    _quoted(readme, f"(P = {line.rsplit('= ', 1)[1].split()[0]} for 95 % intervals)")


CARRIERS = ROOT / "data" / "carriers_converged.nc"


def test_the_memory_carriers_bits_per_parameter(readme):
    """The README's carrier paragraph quotes `analysis/09_carriers.py` on the shipped file."""
    import xarray as xr

    from lawfit.carriers import carrier_bits

    ds = xr.load_dataset(CARRIERS)
    cells = f"{ds.attrs['n_cells_done']} of {ds.attrs['n_cells']} cells"
    assert cells in readme, f"the README should say {cells!r} of {CARRIERS.name}"
    sub = ds.sel(task="long_context", random_ratio=1.0, objective="sft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = carrier_bits(sub, bootstrap=1000, unit="data_seed", rng=0)
    rows = res.table.set_index("carrier")
    thin = " ".join(f.message.split(":")[0] for f in res.flags if f.code == "unbalanced_clusters")
    named = {
        "mlp_block@20": "LoRA",
        "kv@27": "the KV prefix",
        "memtok@20": "memory tokens",
        "memtok": "layer-0 memory tokens",
    }
    cols = ["bits_per_param", "bits_per_param_low", "bits_per_param_high"]
    for carrier, name in named.items():
        interval = _interval(*rows.loc[carrier, cols])
        if f"{carrier} (" in thin:  # a size lacks a sequence: its interval is not quoted
            assert f"{name} {interval.split()[0]} (no interval" in readme, (carrier, thin)
            assert interval.split(" ", 1)[1] not in readme, f"{name}'s interval is too narrow"
        else:
            quoted = f"{name} {interval}"
            assert quoted in readme, f"the README should say {quoted!r} (analysis/09_carriers.py)"
    assert f"sparse KV memory {rows.loc['skv@27,28,29', 'bits_per_param']:.2f}" in readme


def test_the_memory_carriers_leaders_and_their_paired_leads(readme):
    """The README's per-byte and per-FLOP leaders are `analysis/09_carriers.py`'s verdict."""
    import importlib.util

    import xarray as xr

    spec = importlib.util.spec_from_file_location("an09", ROOT / "analysis" / "09_carriers.py")
    an = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(an)
    ds = xr.load_dataset(CARRIERS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, table, _ = an.carrier_tables(ds, an.carrier_cells(ds))
    lc = table[table["task"] == "long_context"]
    text = re.sub(r"\s+", " ", an.verdict(lc, "long_context"))
    byte, flop = re.findall(
        r"stores the most bits above the base model's floor per (byte|PFLOP)"
        r"[^;]*?: ([\d.e+]+) \(([^;]+); \d target sequence\(s\)\); next \S+ "
        r"at ([\d.e+]+) \(ratio per sequence [^:]*: \S+ ahead on (\d) of (\d); "
        r"geometric mean ([\d.]+ \[[\d.]+, [\d.]+\])",
        text,
    )
    assert byte[0] == "byte" and "mlp_block@20" in byte[2], text  # LoRA leads per byte
    _quoted(readme, f"{byte[1]} bits against a trained KV prefix's {byte[3]}")
    only = "only " if byte[4] < byte[5] else ""
    _quoted(readme, f"ahead on {only}{byte[4]} of the {byte[5]} target sequences")
    _quoted(readme, f"(ratio {byte[6]})")
    assert flop[0] == "PFLOP" and "kv:" in flop[2], text  # the KV prefix leads per FLOP
    both = "on both sequences" if flop[4] == flop[5] == "2" else f"on {flop[4]} of {flop[5]}"
    _quoted(readme, f"the KV prefix leads, {both}, by {flop[6]}")


def test_the_second_model_familys_cells_beside_smollm2s(readme):
    """Gemma's collected cells (README) and its bits stored against SmolLM2's at the same
    design point (the collection log's section on the second model family)."""
    import numpy as np

    from lawfit.data.reading import open_dataset
    from lawfit.information import information_bits

    gemma = open_dataset(ROOT / "data" / "gemma_cpu.nc")
    done, total = int(gemma.attrs["n_cells_done"]), int(gemma.attrs["n_cells"])
    _quoted(readme, f"(`data/gemma_cpu.nc`, {done} of {total};")
    smol = open_dataset(DATA)

    def bits(ds, **at):
        cells = information_bits(ds.sel(objective=["sft"])).cells
        sel = np.logical_and.reduce([cells[k] == v for k, v in at.items()])
        return cells.loc[sel & (cells["seed"] == 0)]

    log = _folded(ROOT / "docs" / "collection_log.md")
    where = "docs/collection_log.md's 'The second model family'"
    first = bits(gemma, rank=1, length=128, data_seed=0)
    (stored,) = first["bits_stored"]
    (n_params,) = gemma["n_params"].sel(rank=1).values.ravel()
    _quoted(log, f"stores {stored:,.0f} bits, {stored / n_params:.2f} bits per parameter", where)
    ref = bits(smol, rank=1, length=128)["bits_stored"]
    per = ref / float(smol["n_params"].sel(rank=1).max())
    _quoted(log, f"stores {ref.min():,.0f}–{ref.max():,.0f} bits", where)
    words = dict(enumerate(("no", "one", "two", "three", "four", "five", "six", "seven")))
    n = words.get(len(ref), str(len(ref)))
    _quoted(log, f"({per.min():.2f}–{per.max():.2f} per parameter) on {n} sequences", where)
    second = gemma.sel(rank=2, length=128, data_seed=0).squeeze()
    forced = round(float(second["token_accuracy"]) * 128)
    recalled = int(second["greedy_correct"].sum())
    _quoted(log, f"brings the same target to {float(second['loss_after']):.2f} nats/token", where)
    _quoted(log, f"with {forced} of its 128 tokens the model's first choice", where)
    _quoted(log, f"recalls {recalled} of 128 (`greedy_correct`)", where)
