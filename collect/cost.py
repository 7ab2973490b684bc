"""Compute estimates of collection cells: the FLOPs the lean training loop spends on a cell.

One written-out estimate (the ~6·N·T rule for a frozen model) serves two readers: the carrier
analysis (bits stored per training FLOP, ``analysis/09_carriers.py``) and the sweep price
(``analysis/01_collect.py --price``, which turns FLOPs into hours with the seconds per FLOP
measured on collected cells). Per optimizer step: the forward pass through the layers run
every step (all layers, or the layers from the adapter's first layer on when the probe caches
the frozen prefix), 2 FLOPs per weight per position plus the attention scores; the backward
pass through the layers the gradient passes (from the adapter's first layer to the head),
activation gradients only (the base weights are frozen: ~1× the forward of those layers, 2×
for attention), plus 6 FLOPs per adapter parameter per position; the head's forward and its
input gradient; the cached prefix once per cell; memory positions (memtok) counted at every
layer they pass, memory slots (kv) in the attention only. Not counted: packing savings, the
measurement passes (loss before/after, greedy decoding), norms, softmax, the optimizer. A
carrier written without training (skv) costs one forward pass with the attention read back.

Model shapes come from the model's config (:func:`collect.models.load_skeleton`: no weights),
positions per row from rebuilding the cell's entries (:mod:`collect.tasks`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


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


def key_flops(
    model: str,
    task: str,
    length: int,
    random_ratio: float,
    data_seed: int,
    modules: str,
    *,
    steps: float,
    prefix_cache: bool = True,
    n_params: float = 0.0,
    source: str | None = None,
) -> dict:
    """Estimated FLOPs of one cell, given by its coordinates (see :func:`cell_flops`).

    ``n_params`` (the adapter's own scalars) only adds the adapter's 6 FLOPs per parameter per
    position, well under 0.1 % of a step for the adapters here; 0 leaves it out (a cell not yet
    run has no recorded count).
    """
    rows = row_lengths(model, task, int(length), float(random_ratio), int(data_seed), source)
    return cell_flops(model_shape(model), modules, rows, int(length), n_params, steps, prefix_cache)


def sweep_cell_flops(key, config, steps: float, *, once: bool = True) -> float:
    """Estimated FLOPs of one cell of a sweep that runs ``steps`` more steps.

    ``key`` is a :class:`collect.config.CellKey` of ``config`` (its sweep, which says whether
    the prefix is cached and which source texts are used); ``once`` counts the cached prefix,
    which a resumed cell does not compute again.
    """
    f = key_flops(
        key.model,
        key.task,
        key.length,
        key.random_ratio,
        key.data_seed,
        key.modules,
        steps=steps,
        prefix_cache=config.train.prefix_cache,
        source=config.source_for(key.task),
    )
    return f["per_step"] * steps + (f["once"] if once else 0.0)


def add_flops(cells, ds) -> tuple:
    """Add ``flops`` (and ``flops_per_step``) to every cell, or say why they are missing.

    Parameters
    ----------
    cells : pandas.DataFrame
        One row per cell: ``model``, ``task``, ``length``, ``random_ratio``, ``data_seed``,
        ``modules``, ``n_params`` and ``steps``.
    ds : xarray.Dataset
        The merged dataset they come from (its ``protocol`` and ``config`` attributes say
        whether the prefix was cached and which source texts were used).

    Returns
    -------
    (pandas.DataFrame, list of str)
        The cells with ``flops`` and ``flops_per_step`` (NaN where unknown), and notes.
    """
    import json

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
            src = source.get(c["task"]) if isinstance(source, dict) else source
            f = key_flops(
                str(c["model"]),
                str(c["task"]),
                int(c["length"]),
                float(c["random_ratio"]),
                int(c["data_seed"]),
                str(c["modules"]),
                steps=float(c.get("steps", np.nan)),
                prefix_cache=prefix_cache,
                n_params=float(c["n_params"]),
                source=src,
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


def seconds_per_flop(ds) -> np.ndarray:
    """Wall seconds per estimated FLOP of each finished cell of a merged dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        Merged dataset with ``wall_time``, ``steps``, ``status`` and ``n_params``.

    Returns
    -------
    numpy.ndarray
        One rate per finished cell (``status == "ok"``, at least one step) whose FLOPs could
        be estimated (:func:`add_flops`).

    Raises
    ------
    CollectError
        When no finished cell has both a wall time and a FLOP estimate.
    """
    from collect.errors import CollectError

    cells = ds[["wall_time", "steps", "status", "n_params"]].to_dataframe().reset_index()
    done = cells[(cells["status"] == "ok") & (cells["steps"] > 0)]
    if "objective" in done and "data_seed" not in done:
        done = done.assign(data_seed=0)  # files from before target replicates
    costed, notes = add_flops(done, ds)
    rates = (costed["wall_time"] / costed["flops"]).dropna().to_numpy(float)
    if not rates.size:
        raise CollectError(
            "no finished cell with a wall time and a FLOP estimate in the data: nothing to "
            "measure speed on" + "".join(f"\n  {n}" for n in notes)
        )
    return rates
