"""Step 9 - carriers: bits stored per parameter, per byte and per training FLOP (issue 15).

    python analysis/09_carriers.py DATASET [--markdown] [--bootstrap N]

For a carrier sweep (LoRA placements such as mlp_block@20 and the collect carriers memtok:m,
memtok:m@k, kv:m@k, skv:k@LAYERS in the ``modules`` dimension) prints, per setting (task ×
random ratio) and per carrier size and target length: n_params, n_bytes, bits stored and
bits recalled exactly (information bits, lawfit.information: mean and 95 % t-interval over
the target sequences, data_seed), bits per parameter and per byte, the steps taken and an
estimate of the FLOPs spent writing the memory; then each carrier's best size and length
(the capacity it has shown), and a closing sentence naming the carrier that stores the most
per byte and per FLOP on this dataset, whatever the answer.

FLOPs are an ESTIMATE (the ~6·N·T rule written out for a frozen model; see ``cell_flops``):
per optimizer step, the forward pass through the layers run every step (all layers, or the
layers from the carrier's first layer on when the probe caches the frozen prefix), 2
FLOPs per weight per position plus the attention scores; the backward pass through the
layers the carrier's gradient passes (from its first layer to the head), activation
gradients only (the base weights are frozen: ~1× the forward of those layers, 2× for
attention), plus 6 FLOPs per carrier parameter per position; the cached prefix once per
cell; memory positions (memtok) counted at every layer they pass, memory slots (kv) in the
attention only. Not counted: packing savings, the measurement passes (loss before/after,
greedy decoding), norms, softmax, the optimizer. A carrier written without training (skv)
costs one forward pass with the attention read back (2× the forward attention).
Positions per step come from rebuilding the cell's entries (collect.tasks) with the model's
tokenizer; the layer shapes from the model's config (collect.models.load_skeleton: no
weights). Where these cannot be had, the FLOPs are left out and the reason printed.
(``collect plan`` prints another, coarser figure for planning: 6 × every weight × batch
tokens × max_steps, an upper bound; this one follows each cell's steps and its carrier.)

The per-carrier law with its intervals is lawfit.carriers (another part of issue 15): when
it is importable, its summaries are printed after the descriptive tables.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_figures")
)
from _common import header, parser  # noqa: E402
from carriers import _interval, carrier_cells, carrier_points  # noqa: E402

SETTING = ["model", "task", "random_ratio", "objective"]


# ----------------------------------------------------------------------------- FLOPs
@dataclass(frozen=True)
class ModelShape:
    """What the FLOP estimate needs of a model: per-layer weights and attention width."""

    layer_weights: tuple[int, ...]  # weights of the matrices (ndim 2) of each decoder layer
    attn_width: int  # n_heads × head_dim (the query/key width the scores are taken over)
    head_weights: int  # vocab × hidden (the output projection, tied or not)

    @property
    def n_layers(self) -> int:
        """Number of decoder layers."""
        return len(self.layer_weights)


@functools.cache
def model_shape(model: str) -> ModelShape:
    """Read a model's layer shapes from its config (meta device: no weights are loaded)."""
    from collect.adapters import decoder_layers
    from collect.models import load_skeleton

    loaded = load_skeleton(model)
    _, layers = decoder_layers(loaded.model)
    cfg = loaded.model.config
    heads = int(cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    weights = tuple(
        int(sum(p.numel() for p in layer.parameters() if p.ndim == 2)) for layer in layers
    )
    return ModelShape(weights, heads * head_dim, int(cfg.vocab_size) * int(cfg.hidden_size))


@functools.cache
def _tokenizer(model: str):
    from collect.models import load_tokenizer

    return load_tokenizer(model)


@functools.cache
def row_lengths(
    model: str, task: str, length: int, random_ratio: float, data_seed: int, source: str | None
) -> tuple[int, ...]:
    """Positions of each batch row of a cell (its entries' prompt + target tokens)."""
    from collect.probe import prompt_ids
    from collect.tasks import build_task

    tok = _tokenizer(model)
    entries = build_task(
        task, tok, length, random_ratio=random_ratio, data_seed=data_seed, source=source
    )
    return tuple(len(prompt_ids(tok, e.key)) + len(e.target_ids) for e in entries)


def carrier_layers(modules: str, n_layers: int) -> tuple[int, int, str]:
    """First layer the carrier's gradient reaches, memory positions added, and its kind.

    Returns ``(k, m, kind)``: ``kind`` is ``"weights"`` (a LoRA placement: k = its lowest
    layer), ``"memtok"`` (m extra positions from layer k on), ``"kv"`` (m key/value slots
    read from layer k on) or ``"skv"`` (written without training).
    """
    from collect.adapters import parse_modules
    from collect.carriers import memory_size, parse_carrier

    spec = parse_carrier(modules)
    if spec is None:
        layers = parse_modules(modules).layers
        return (0 if layers is None else min(x % n_layers for x in layers)), 0, "weights"
    kind, m = spec.parts[0], memory_size(spec)
    k = 0 if spec.layers is None else min(x % n_layers for x in spec.layers)
    return k, m, kind


def attention_flops(width: int, rows: tuple[int, ...], memory: int = 0) -> float:
    """Forward FLOPs of one layer's attention scores and weighted values over causal rows.

    Each query reads the keys before it and ``memory`` slots: 2 FLOPs per multiply-add for
    QKᵀ and again for AV, so 4·width per (query, key) pair.
    """
    pairs = sum(n * (n + 1) / 2 + n * memory for n in rows)
    return 4.0 * width * pairs


def cell_flops(
    shape: ModelShape,
    modules: str,
    rows: tuple[int, ...],
    n_targets: int,
    n_params: float,
    steps: float,
    prefix_cache: bool,
) -> dict:
    """Estimated FLOPs of writing one cell's memory (see the module docstring).

    Returns a dict with ``flops`` (the total), ``per_step``, ``once`` (cached prefix or
    the write pass of an untrained carrier) and ``grad_layers`` (layers the gradient passes).
    """
    n_layers = shape.n_layers
    k, m, kind = carrier_layers(modules, n_layers)
    positions = float(sum(rows))
    if kind == "skv":  # one forward pass, attention read back: no training
        once = sum(
            2.0 * w * positions + 2 * attention_flops(shape.attn_width, rows)
            for w in shape.layer_weights
        )
        return dict(flops=once, per_step=0.0, once=once, grad_layers=0)
    start = k if prefix_cache else 0  # layers below k: once per cell from the prefix cache
    per_step, once = 0.0, 0.0
    for layer, w in enumerate(shape.layer_weights):
        extra = m if kind == "memtok" and layer >= k else 0  # memory positions in the layer
        slots = m if kind in ("kv", "memtok") and layer >= k else 0
        fwd = 2.0 * w * (positions + extra) + attention_flops(shape.attn_width, rows, slots)
        if layer < start:
            once += fwd
            continue
        per_step += fwd
        if layer >= k:  # activation gradients only: the base weights are frozen
            per_step += 2.0 * w * (positions + extra) + 2 * attention_flops(
                shape.attn_width, rows, slots
            )
    per_step += 2 * 2.0 * shape.head_weights * n_targets  # head forward + its input gradient
    per_step += 6.0 * n_params * (positions if kind == "weights" else 1.0)
    return dict(
        flops=once + steps * per_step, per_step=per_step, once=once, grad_layers=n_layers - k
    )


def add_flops(cells: pd.DataFrame, ds) -> tuple[pd.DataFrame, list[str]]:
    """Add ``flops`` (and ``flops_per_step``) to every cell, or say why they are missing."""
    notes = []
    config = json.loads(ds.attrs.get("config", "{}") or "{}")
    protocol = json.loads(ds.attrs.get("protocol", "{}") or "{}")
    prefix_cache = bool(
        protocol.get("prefix_cache", config.get("train", {}).get("prefix_cache", True))
    )
    source = config.get("source")
    out = cells.copy()
    out["flops"], out["flops_per_step"] = np.nan, np.nan
    missing = set()
    for i, c in out.iterrows():
        try:
            shape = model_shape(str(c["model"]))
            src = source.get(c["task"]) if isinstance(source, dict) else source
            rows = row_lengths(
                str(c["model"]),
                str(c["task"]),
                int(c["length"]),
                float(c["random_ratio"]),
                int(c["data_seed"]),
                src,
            )
            f = cell_flops(
                shape,
                str(c["modules"]),
                rows,
                int(c["length"]),
                float(c["n_params"]),
                float(c.get("steps", np.nan)),
                prefix_cache,
            )
        except Exception as exc:  # noqa: BLE001 - any failure leaves the FLOPs unknown
            missing.add(f"{c['model']} {c['task']} {c['modules']}: {type(exc).__name__}: {exc}")
            continue
        out.loc[i, "flops"], out.loc[i, "flops_per_step"] = f["flops"], f["per_step"]
    notes += [f"FLOPs unknown for {m}" for m in sorted(missing)]
    if out["flops"].isna().all():
        notes.append(
            "no FLOP estimate: the model config or the task entries could not be "
            "rebuilt (needs the collect extra and the model's tokenizer)"
        )
    if "steps" not in cells:
        notes.append("no 'steps' in the dataset: training FLOPs cannot be estimated")
    return out, notes


# ----------------------------------------------------------------------------- tables
def _fmt_interval(mean: float, ci: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.4g}" if not np.isfinite(ci) else f"{mean:.4g} ± {ci:.3g}"


def group_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per setting, carrier size and length: sizes, bits with intervals, FLOPs."""
    setting = [c for c in SETTING if c in cells]
    keys = [*setting, "carrier", "modules", "rank", "n_params", "n_bytes", "length"]
    per_target = (
        cells.groupby([*keys, "data_seed"], dropna=False)[
            ["bits_stored", "bits_recalled", "steps", "flops"]
        ]
        .mean()
        .reset_index()
    )
    rows = []
    for key, g in per_target.groupby(keys, dropna=False):
        stored, _, s_ci, n = _interval(g["bits_stored"].to_numpy())
        recalled, _, r_ci, _ = _interval(g["bits_recalled"].to_numpy())
        flops = float(g["flops"].mean())
        rec = dict(zip(keys, key, strict=True))
        rec.update(
            targets=n,
            stored=_fmt_interval(stored, s_ci),
            recalled=_fmt_interval(recalled, r_ci),
            stored_mean=stored,
            recalled_mean=recalled,
            bits_per_param=stored / rec["n_params"],
            bits_per_byte=stored / rec["n_bytes"],
            steps=float(g["steps"].mean()),
            gflops=flops / 1e9,
            bits_per_pflop=stored / flops * 1e15 if flops > 0 else np.nan,
        )
        rows.append(rec)
    return pd.DataFrame(rows)


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
    """The closing sentence: which carrier stores the most per byte and per FLOP."""
    parts = []
    for column, per in (
        ("bits_per_byte", "per byte"),
        ("bits_per_pflop", "per PFLOP spent writing it (estimated)"),
    ):
        best = best_of_each(table, column)
        if not len(best):
            parts.append(f"bits {per}: not computable here ({column} missing)")
            continue
        top = best[column].max()
        if not top > 0:
            parts.append(f"no carrier stores any information bits, so none stores the most {per}")
            continue
        tied = best[np.isclose(best[column], top, rtol=1e-9, atol=0)]
        who = " and ".join(tied["carrier"])
        at = ", ".join(
            f"{r.modules}, rank {int(r.rank)}, length {int(r.length)}" for r in tied.itertuples()
        )
        rest = best.drop(tied.index)
        runner = (
            f"; next {rest.iloc[0]['carrier']} at {rest.iloc[0][column]:.3g}" if len(rest) else ""
        )
        parts.append(
            f"{who} store{'s' if len(tied) == 1 else ''} the most bits {per}: "
            f"{top:.3g} ({at}; {int(tied.iloc[0]['targets'])} target "
            f"sequence(s)){runner}"
        )
        trained = best[best["steps"] > 0]
        if column == "bits_per_pflop" and (tied["steps"] == 0).any() and len(trained):
            t = trained.iloc[0]
            parts.append(
                f"per training FLOP, among the carriers written by training, "
                f"{t['carrier']} at {t[column]:.3g} ({t['modules']}, rank "
                f"{int(t['rank'])}, length {int(t['length'])})"
            )
    return f"On this dataset ({label}): " + "; ".join(parts) + "."


def law_summaries(sub, bootstrap: int) -> None:
    """The per-carrier law and bits/param CIs of lawfit.carriers, where it exists."""
    # ---- PLACE FOR THE LAW (issue 15 item 3): lawfit.carriers, built on another branch ----
    try:
        from lawfit.carriers import carrier_bits, carrier_law
    except ImportError:
        print(
            "per-carrier law: lawfit.carriers is not in this checkout (issue 15 item 3); "
            "the tables above are descriptive only (no law fitted here).\n"
        )
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, run in (
            (
                "bits per parameter and per byte (lawfit.carriers.carrier_bits)",
                lambda: carrier_bits(sub, bootstrap=bootstrap, unit="data_seed", rng=0),
            ),
            (
                "law per carrier vs n_params (lawfit.carriers.carrier_law)",
                lambda: carrier_law(sub, size="params"),
            ),
            ("law per carrier vs n_bytes", lambda: carrier_law(sub, size="bytes")),
        ):
            try:
                print(f"{name}:\n{run().summary()}\n")
            except Exception as exc:  # noqa: BLE001 - report why, carry on
                print(f"{name}: not computed ({type(exc).__name__}: {exc})\n")


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
    cells, notes = add_flops(cells, ds)
    table = group_table(cells)
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
