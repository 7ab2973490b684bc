"""Sweep configuration: a TOML/YAML file or CLI flags, validated before anything trains.

A sweep is the union of one or more grid blocks. Each block is a cartesian product over
``models × tasks × random_ratios × methods × modules × ranks × lengths × seeds``; keys
missing in a block come from ``[defaults]``. Example::

    name = "smollm2-cpu"
    [defaults]
    models = ["smollm2"]
    methods = ["sft"]
    modules = ["mlp@20"]
    ranks = [1, 2, 4, 8, 16, 32]
    lengths = [64, 128, 256, 512]
    seeds = [0, 1]
    [train]
    max_steps = 300
    [[grid]]
    tasks = ["long_context"]
    random_ratios = [1.0]
    [[grid]]
    tasks = ["phonebook"]
    random_ratios = [0.0]
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collect.adapters import parse_modules
from collect.errors import CollectError
from collect.models import check_model_name
from collect.objectives import METHODS
from collect.probe import AUTOCASTS, SCHEDULES, WARM_STARTS, TrainConfig, train_settings

AXES = (
    "models",
    "tasks",
    "random_ratios",
    "methods",
    "modules",
    "ranks",
    "lengths",
    "seeds",
    "data_seeds",
)
DIMS = (
    "model",
    "task",
    "random_ratio",
    "method",
    "modules",
    "rank",
    "length",
    "seed",
    "data_seed",
)
TASK_NAMES = ("phonebook", "long_context")
DATA_KEYS = (
    "data_seed",
    "source",
    "device",
    "dtype",
    "threads",
    "pack_prompts",
    "checkpoint_minutes",
)
#: random_ratio of a cell whose block gives none: PhoneBook numbers are already random (0.0),
#: long-context targets default to pure random tokens (1.0, the paper's r100).
TASK_DEFAULT_RATIO = {"phonebook": 0.0, "long_context": 1.0}
DEFAULTS: dict[str, list] = {
    "models": ["smollm2"],
    "tasks": ["long_context"],
    "random_ratios": [None],
    "methods": ["sft"],
    "modules": ["mlp@20"],
    "seeds": [0],
    "data_seeds": [0],
}


@dataclass(frozen=True)
class CellKey:
    """The coordinates of one cell of the sweep."""

    model: str
    task: str
    random_ratio: float
    method: str
    modules: str
    rank: int
    length: int
    seed: int
    #: target-content replicate (which random sequence, which phone book)
    data_seed: int = 0

    def slug(self) -> str:
        """Return a readable, filesystem-safe name (plus a hash that makes it unique).

        Cells of the first target sequence (``data_seed = 0``) keep the names they had before
        ``data_seed`` became a coordinate, so earlier sweep directories stay readable.
        """
        fields = dataclasses.asdict(self)
        if self.data_seed == 0:
            del fields["data_seed"]
        digest = hashlib.sha1(json.dumps(fields).encode()).hexdigest()[:10]
        mods = self.modules.replace("@", "-at-").replace("+", "_").replace(",", "_")
        mods = mods.replace(":", "-")  # carrier specs (memtok:m)
        content = f"-d{self.data_seed}" if self.data_seed else ""
        return (
            f"{self.task}-rr{self.random_ratio:g}-{self.method}-{mods}-r{self.rank}"
            f"-l{self.length}-s{self.seed}{content}-{digest}"
        )


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: grid blocks, training settings, data settings."""

    name: str
    grids: tuple[dict[str, tuple], ...]
    train: TrainConfig = field(default_factory=TrainConfig)
    data_seed: int = 0
    source: str | dict[str, str] | None = None
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    #: pack entries around their shared prompt prefix (speed only: not in :meth:`settings`)
    pack_prompts: bool = True
    #: minutes between checkpoints of a running cell (0: none); not in :meth:`settings`
    checkpoint_minutes: float = 10.0

    def cells(self) -> list[CellKey]:
        """Every cell of the sweep (union of the blocks, without duplicates, in order)."""
        seen: dict[CellKey, None] = {}
        for grid in self.grids:
            for combo in itertools.product(*(grid[a] for a in AXES)):
                model, task, ratio, *rest = combo
                ratio = TASK_DEFAULT_RATIO[task] if ratio is None else ratio
                seen.setdefault(CellKey(model, task, ratio, *rest), None)
        return list(seen)

    def cells_matching(self, patterns: list[str]) -> list[CellKey]:
        """Return the sweep's cells (in order) whose name matches a shell-style pattern.

        A cell's name is its file name without ``.nc``, as ``collect plan`` lists it.

        Raises
        ------
        CollectError
            A pattern that matches no cell, naming a few cells to match instead.
        """
        cells = self.cells()
        names = [key.slug() for key in cells]
        for pattern in patterns:
            if not fnmatch.filter(names, pattern):
                shown = ", ".join(names[:3])
                raise CollectError(
                    f"--cells {pattern!r} matches none of the {len(names)} cells of sweep "
                    f"{self.name!r} (names such as {shown}). Quote the pattern so that the "
                    "shell leaves its * alone; `collect plan` lists every name."
                )
        return [
            k
            for k, n in zip(cells, names, strict=True)
            if any(fnmatch.fnmatch(n, p) for p in patterns)
        ]

    def source_for(self, task: str) -> str | None:
        """Return the source file of ``task`` (``[data] source`` is a path or a table per task)."""
        if isinstance(self.source, dict):
            return self.source.get(task)
        return self.source

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (recorded in the dataset's attributes)."""
        return {
            "name": self.name,
            "grids": [{k: list(v) for k, v in g.items()} for g in self.grids],
            "train": train_settings(self.train),
            "data_seed": self.data_seed,
            "source": self.source,
            "device": self.device,
            "dtype": self.dtype,
            "threads": self.threads,
            "pack_prompts": self.pack_prompts,
            "checkpoint_minutes": self.checkpoint_minutes,
        }

    def settings(self) -> dict[str, Any]:
        """Everything that changes a cell's result: the training and data settings."""
        return {
            "train": train_settings(self.train),
            "data_seed": self.data_seed,
            "source": self.source,
            "dtype": self.dtype,
        }

    def fingerprint(self) -> str:
        """Hash of everything that changes a cell's result (training and data settings)."""
        return settings_hash(self.settings())

    def fingerprint_without_budget(self) -> str:
        """Hash of the settings except ``[train] max_steps`` (what budget extension compares)."""
        return settings_hash(without_budget(self.settings()))


def settings_hash(settings: dict[str, Any]) -> str:
    """Hash a :meth:`SweepConfig.settings` mapping (12 hex digits)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


#: [train] settings that make up a cell's budget: an extended sweep may change them
#: (``collect.sweep.extension_source`` checks that the lr of every step already run agrees)
BUDGET_SETTINGS = (
    "max_steps",
    "schedule",
    "cooldown_steps",
    "converge_from",
    "converge_tol",
    "converge_window",
)


def without_budget(settings: dict[str, Any]) -> dict[str, Any]:
    """Copy a :meth:`SweepConfig.settings` mapping without its :data:`BUDGET_SETTINGS`."""
    train = {k: v for k, v in settings.get("train", {}).items() if k not in BUDGET_SETTINGS}
    return {**settings, "train": train}


def settings_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Describe where two :meth:`SweepConfig.settings` mappings differ, one line per setting."""
    missing = object()

    def flat(settings):
        out = {}
        for name, value in settings.items():
            if name == "train" and isinstance(value, dict):
                out.update({f"[train] {k}": v for k, v in value.items()})
            else:
                out[f"[data] {name}"] = value
        return out

    a, b = flat(old), flat(new)
    lines = []
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name, missing), b.get(name, missing)
        if x != y:
            show = [("(unset)" if v is missing else repr(v)) for v in (x, y)]
            lines.append(f"{name}: {show[0]} before, {show[1]} now")
    return lines


def _as_list(name: str, value: Any) -> list:
    if isinstance(value, str | int | float):
        return [value]
    if not isinstance(value, list | tuple) or not value:
        raise CollectError(f"sweep key {name!r} must be a non-empty list, got {value!r}.")
    return list(value)


def _check_block(block: dict[str, list], where: str) -> dict[str, tuple]:
    for axis in AXES:
        if axis not in block:
            raise CollectError(
                f"{where}: no {axis!r} given and no default; add `{axis} = [...]` to the block "
                "or to [defaults]."
            )
    for r in block["ranks"]:
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise CollectError(f"{where}: ranks must be positive integers, got {r!r}.")
    for n in block["lengths"]:
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise CollectError(f"{where}: lengths must be positive integers, got {n!r}.")
    for axis in ("seeds", "data_seeds"):
        for s in block[axis]:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise CollectError(
                    f"{where}: {axis} must be non-negative integers, got {s!r}; e.g. "
                    f"`{axis} = [0, 1, 2]`."
                )
    for model in block["models"]:
        try:
            check_model_name(model)
        except CollectError as err:
            raise CollectError(f"{where}: {err}") from None
    for m in block["methods"]:
        if m not in METHODS:
            raise CollectError(f"{where}: unknown method {m!r}; expected one of {list(METHODS)}.")
    for t in block["tasks"]:
        if t not in TASK_NAMES:
            raise CollectError(f"{where}: unknown task {t!r}; expected one of {list(TASK_NAMES)}.")
    for x in block["random_ratios"]:
        if x is None:
            continue
        if not isinstance(x, int | float) or not 0.0 <= float(x) <= 1.0:
            raise CollectError(f"{where}: random_ratios must lie in [0, 1], got {x!r}.")
    for spec in block["modules"]:
        if not parse_modules(spec).is_trained and set(block["methods"]) - {"sft"}:
            raise CollectError(
                f"{where}: {spec!r} is written without training, so objectives other than "
                f"'sft' do not apply (got methods {list(block['methods'])}); put skv cells "
                'in a block with `methods = ["sft"]`.'
            )
    out = {axis: tuple(block[axis]) for axis in AXES}
    out["random_ratios"] = tuple(None if x is None else float(x) for x in out["random_ratios"])
    return out


def _check_source(source: Any) -> str | dict[str, str] | None:
    if source is None or isinstance(source, str):
        return source
    if isinstance(source, dict) and set(source) <= set(TASK_NAMES):
        return {task: str(path) for task, path in source.items()}
    raise CollectError(
        f"[data] source must be a path or a table {{task = path}} with tasks from "
        f"{list(TASK_NAMES)}; got {source!r}."
    )


def _by_priority(blocks: list[dict]) -> list[tuple[int, dict]]:
    """Order ``[[grid]]`` blocks by their optional ``priority`` (higher runs first).

    Blocks of equal priority (the default is 0) keep the order they are listed in. Returns
    ``(index in the file, block without the priority key)`` pairs.
    """
    for i, block in enumerate(blocks):
        priority = block.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int | float):
            raise CollectError(
                f"[[grid]] block {i}: priority must be a number (higher runs first), "
                f"got {priority!r}."
            )
    order = sorted(range(len(blocks)), key=lambda i: -blocks[i].get("priority", 0))
    return [(i, {k: v for k, v in blocks[i].items() if k != "priority"}) for i in order]


def config_from_dict(raw: dict[str, Any]) -> SweepConfig:
    """Validate a raw mapping (parsed TOML/YAML or built from CLI flags) into a config."""
    known = {"name", "defaults", "grid", "train", "data", *AXES}
    unknown = set(raw) - known
    if unknown:
        raise CollectError(
            f"unknown top-level sweep keys {sorted(unknown)}; known: {sorted(known)}."
        )
    grids, blocks = _grid_blocks(raw)
    train = _train_section(raw)
    data = _data_section(raw, grids, blocks)
    data["dtype"] = _autocast_model_dtype(train, data.get("dtype"))
    minutes = data.get("checkpoint_minutes", 10.0)
    return SweepConfig(
        name=str(raw.get("name", "sweep")),
        grids=tuple(grids),
        train=train,
        data_seed=int(data.get("data_seed", 0)),
        source=_check_source(data.get("source")),
        device=data.get("device"),
        dtype=data.get("dtype"),
        threads=data.get("threads"),
        pack_prompts=data.get("pack_prompts", True),
        checkpoint_minutes=float(minutes),
    )


def _grid_blocks(raw: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """Each ``[[grid]]`` block over ``[defaults]`` and top-level axes, checked, by priority.

    Returns the merged, checked grids and the blocks as written (same order).
    """
    defaults = {**DEFAULTS, **{k: _as_list(k, v) for k, v in raw.get("defaults", {}).items()}}
    top = {k: _as_list(k, raw[k]) for k in AXES if k in raw}
    defaults.update(top)
    for key in defaults:
        if key not in AXES:
            raise CollectError(f"unknown sweep axis {key!r} in [defaults]; known: {list(AXES)}.")
    grids, blocks = [], []
    listed = raw.get("grid") or [{}]
    if not isinstance(listed, list) or not all(isinstance(b, dict) for b in listed):
        raise CollectError(
            "grid must be a list of blocks, each a table of axes (TOML: write [[grid]] with two "
            f"brackets for each block, not [grid]); got {type(listed).__name__} {listed!r:.80}."
        )
    for i, block in _by_priority(listed):
        blocks.append(block)
        bad = set(block) - set(AXES)
        if bad:
            raise CollectError(
                f"[[grid]] block {i}: unknown keys {sorted(bad)}; known: {[*AXES, 'priority']}."
            )
        merged = {**defaults, **{k: _as_list(k, v) for k, v in block.items()}}
        grids.append(_check_block(merged, f"[[grid]] block {i}"))
    return grids, blocks


def _train_section(raw: dict[str, Any]) -> TrainConfig:
    """Check the ``[train]`` table and return it as a :class:`TrainConfig`."""
    train_raw = dict(raw.get("train", {}))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = set(train_raw) - fields
    if bad:
        raise CollectError(f"unknown [train] keys {sorted(bad)}; known: {sorted(fields)}.")
    return TrainConfig(**_check_train(train_raw))


def _data_section(raw: dict[str, Any], grids: list[dict], blocks: list[dict]) -> dict:
    """Check the ``[data]`` table; set its sweep-wide ``data_seed`` on every grid.

    That older form says every cell uses one target sequence, so a ``data_seeds`` axis
    written anywhere must agree with it.
    """
    data = dict(raw.get("data", {}))
    if "data_seed" in data:
        seed = data["data_seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise CollectError(f"[data] data_seed must be an integer >= 0, got {seed!r}.")
        explicit = "data_seeds" in raw or "data_seeds" in raw.get("defaults", {})
        given = {
            s
            for grid, block in zip(grids, blocks, strict=True)
            if explicit or "data_seeds" in block
            for s in grid["data_seeds"]
        }
        if given - {seed}:
            raise CollectError(
                f"[data] data_seed = {seed} says every cell uses target sequence {seed}, but a "
                f"data_seeds axis gives {sorted(given)}; use only the axis "
                "(e.g. `data_seeds = [0, 1, 2]` in [defaults] or a [[grid]] block)."
            )
        for grid in grids:
            grid["data_seeds"] = (seed,)
    bad = set(data) - set(DATA_KEYS)
    if bad:
        raise CollectError(f"unknown [data] keys {sorted(bad)}; known: {sorted(DATA_KEYS)}.")
    _check_data(data)
    return data


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file (``.toml``, ``.yaml``/``.yml`` or ``.json``)."""
    path = Path(path)
    if not path.exists():
        raise CollectError(f"sweep config {str(path)!r} does not exist.")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise CollectError(f"sweep config must be .toml, .yaml or .json, got {path.name!r}.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CollectError(f"sweep config {str(path)!r} cannot be read as text: {exc}.") from None
    raw = _parse_config_text(path, text)
    if not isinstance(raw, dict):
        raise CollectError(
            f"{path}: expected a table of sweep keys (name, [defaults], [[grid]], [train], "
            f"[data]); the file holds a {type(raw).__name__}."
        )
    return config_from_dict(raw)


def _parse_config_text(path: Path, text: str) -> Any:
    """Parse TOML/YAML/JSON text; a syntax error names the file and the line."""
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CollectError(f"{path}: not valid TOML: {exc}. Fix that line.") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CollectError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}.") from None
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        raise CollectError(f"{path}{line}: not valid YAML: {what}. Fix that line.") from None


def _unique_key_loader():
    """Build a YAML SafeLoader that refuses a key given twice in one mapping (as TOML does)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicated key {key!r}", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: [train] key -> (test, expected): checked before anything trains (a negative grad_clip
#: once trained the loss *up* and stored the cells as ok).
TRAIN_RULES: dict[str, tuple[Any, str]] = {
    "lr": (lambda v: _is_number(v) and v > 0, "a number > 0, e.g. 1e-2"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "grad_clip": (lambda v: _is_number(v) and v > 0, "a max gradient norm > 0, e.g. 1.0"),
    "max_steps": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "log_every": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "patience": (lambda v: _is_int(v) and v >= 1, "an integer number of steps >= 1"),
    "min_delta": (lambda v: _is_number(v) and v >= 0, "a relative improvement >= 0"),
    "stop_when_memorized": (lambda v: isinstance(v, bool), "true or false"),
    "prefix_cache": (lambda v: isinstance(v, bool), "true or false"),
    "lora_alpha": (lambda v: v is None or (_is_number(v) and v > 0), "a number > 0 (or unset)"),
    "schedule": (lambda v: v in SCHEDULES, f"one of {list(SCHEDULES)}"),
    "lora_dropout": (
        lambda v: _is_number(v) and 0 <= v < 1,
        "a probability in [0, 1) (the paper uses 0.1; 0 turns dropout off)",
    ),
    "decay_factor": (
        lambda v: _is_number(v) and 0 < v < 1,
        "a number in (0, 1), e.g. 0.1: the lr drops tenfold at each plateau",
    ),
    "max_decays": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "cooldown_steps": (
        lambda v: _is_int(v) and v >= 1,
        "an integer number of steps >= 1 (the last steps, over which the lr decays to 0)",
    ),
    "converge_from": (
        lambda v: _is_int(v) and v >= 0,
        "a step >= 0 from which a converged cell stops (0: never; e.g. 3000)",
    ),
    "converge_tol": (
        lambda v: _is_number(v) and 0 < v < 1,
        "a relative ΔL gain in (0, 1), e.g. 0.01",
    ),
    "converge_window": (
        lambda v: _is_number(v) and 0 < v < 1,
        "a share of the steps run in (0, 1), e.g. 0.1 (the last 10 %)",
    ),
    "autocast": (
        lambda v: v in AUTOCASTS,
        f"one of {list(AUTOCASTS)} ('bfloat16': training steps' matrix products in bf16, "
        "everything else in float32)",
    ),
    "warm_start": (
        lambda v: v in WARM_STARTS,
        f"one of {list(WARM_STARTS)} ('half_rank': start rank r from the converged rank r // 2)",
    ),
}
#: Floating dtypes a model can be loaded in (``[data] dtype``).
DTYPES = ("float32", "float16", "bfloat16", "float64")


_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|meta)(:\d+)?$")
#: [data] key -> (test, expected); unknown keys are refused before these run.
DATA_RULES: dict[str, tuple[Any, str]] = {
    "data_seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "device": (
        lambda v: v is None or (isinstance(v, str) and bool(_DEVICE.match(v))),
        "a torch device such as 'cpu', 'cuda' or 'cuda:1'",
    ),
    "dtype": (lambda v: v is None or v in DTYPES, f"one of {list(DTYPES)}"),
    "threads": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1"),
    "pack_prompts": (lambda v: isinstance(v, bool), "true or false"),
    "checkpoint_minutes": (
        lambda v: _is_number(v) and v >= 0,
        "a number of minutes >= 0 (0: no checkpoints)",
    ),
}


def _apply_rules(section: str, values: dict[str, Any], rules: dict[str, tuple[Any, str]]):
    for key, value in values.items():
        test, expected = rules.get(key, (lambda v: True, ""))
        if not test(value):
            raise CollectError(
                f"[{section}] {key} must be {expected}; got {value!r} "
                f"({type(value).__name__}). Fix it in the sweep config."
            )


def _autocast_model_dtype(train: TrainConfig, dtype: str | None) -> str | None:
    """Return the model's dtype: float32 under ``[train] autocast`` (autocast computes down).

    Without autocast, ``dtype`` as given (unset: the device's default).
    """
    if train.autocast == "none":
        return dtype
    if dtype not in (None, "float32"):
        raise CollectError(
            f'[train] autocast = "{train.autocast}" computes down from a float32 model, but '
            f'[data] dtype = "{dtype}". Remove [data] dtype (autocast loads the model in '
            'float32) or set [train] autocast = "none" to train in the model\'s dtype.'
        )
    return "float32"


def _check_train(train: dict[str, Any]) -> dict[str, Any]:
    """Type- and range-check the ``[train]`` values; return them unchanged."""
    _apply_rules("train", train, TRAIN_RULES)
    _check_cooldown(train)
    _check_converge(train)
    return train


def _check_converge(train: dict[str, Any]) -> None:
    """Refuse a convergence stop that cannot act as one: off, late, or under a decaying lr."""
    start = train.get("converge_from", 0)
    if not start:
        stray = [k for k in ("converge_tol", "converge_window") if k in train]
        if stray:
            raise CollectError(
                f"[train] {', '.join(stray)} only apply with converge_from > 0 (the step from "
                "which the convergence stop may fire); set converge_from or remove them."
            )
        return
    budget = train.get("max_steps", TrainConfig.max_steps)
    if start >= budget:
        raise CollectError(
            f"[train] converge_from must be below max_steps ({budget}), the cap of a cell that "
            f"never converges; got {start}. Raise max_steps (e.g. to {2 * start})."
        )
    schedule = train.get("schedule", "constant")
    if schedule != "constant":
        raise CollectError(
            f"[train] converge_from needs schedule = 'constant' (under {schedule!r} the lr of a "
            "step depends on when the cell stops); got schedule = " + repr(schedule) + "."
        )


def _check_cooldown(train: dict[str, Any]) -> None:
    """Refuse a ``cooldown`` schedule without a fitting ``cooldown_steps``, and vice versa."""
    cooling = train.get("schedule") == "cooldown"
    steps = train.get("cooldown_steps")
    if cooling and steps is None:
        raise CollectError(
            "[train] schedule = 'cooldown' needs cooldown_steps, the number of last steps over "
            "which the lr decays to 0; got none. Add e.g. cooldown_steps = 300."
        )
    if not cooling and steps is not None:
        raise CollectError(
            f"[train] cooldown_steps = {steps} only applies to schedule = 'cooldown', but the "
            f"schedule is {train.get('schedule', 'constant')!r}. Remove cooldown_steps or set "
            "schedule = 'cooldown'."
        )
    budget = train.get("max_steps", TrainConfig.max_steps)
    if cooling and steps > budget:
        raise CollectError(
            f"[train] cooldown_steps must be at most max_steps ({budget}); got {steps}. "
            "The cool-down is the last part of the budget: shorten it or raise max_steps."
        )


def _check_data(data: dict[str, Any]) -> None:
    """Type- and range-check the ``[data]`` values (unknown keys are refused earlier)."""
    _apply_rules("data", data, DATA_RULES)
