"""Budget extension (``extend_from``): check an old sweep may be extended, plan each cell.

A cell of the old sweep is copied (it stopped early), resumed from its saved training state
(it stopped at the old budget) or run from scratch; see :func:`extension_plan`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collect.config import CellKey, SweepConfig, settings_differences, without_budget
from collect.errors import CollectError
from collect.objectives import budget_dependent
from collect.probe import TrainConfig
from collect.store import read_cell, read_state, state_path

#: old cells that stopped before their budget: a larger budget would stop them the same way
#: ("written": a carrier written without training, such as the Memory³ sparse KV memory)
EARLY_STOPS = ("memorized", "plateau", "converged", "written")


@dataclass(frozen=True)
class ExtensionSource:
    """A sweep directory whose cells a sweep with a larger step budget builds on."""

    out_dir: Path
    fingerprint: str  # the old cells' fingerprint
    max_steps: int  # the old budget


def extension_source(
    config: SweepConfig, old_dir: str | Path, out_dir: str | Path | None = None
) -> ExtensionSource:
    """Check that ``config`` may extend the sweep in ``old_dir`` (nothing trains or is written).

    Every training and data setting must equal the old sweep's, except the budget: ``[train]
    max_steps`` may grow, and the lr schedule may change where it gives every step the old
    sweep ran the old lr (a constant run continued under ``cooldown`` whose constant phase
    covers the old budget; :func:`check_same_lr`). The grid may differ: cells the old sweep
    lacks run from scratch.

    Raises
    ------
    CollectError
        If ``old_dir`` holds no sweep, is ``out_dir`` itself, its settings differ (the
        message names each differing setting), or its lr differs at a step it ran.
    """
    old_dir = Path(old_dir)
    meta = old_dir / "sweep.json"
    if not meta.exists():
        raise CollectError(
            f"--extend-from {old_dir}: no sweep.json there; give a directory that "
            "`collect run` wrote."
        )
    if out_dir is not None and Path(out_dir).resolve() == old_dir.resolve():
        raise CollectError(
            f"--extend-from {old_dir} is the output directory itself; write the extended sweep "
            "to a new --out directory (the old one stays as it is)."
        )
    old = json.loads(meta.read_text())
    old_settings = {name: old.get(name) for name in config.settings()}
    diffs = settings_differences(without_budget(old_settings), without_budget(config.settings()))
    if diffs:
        raise CollectError(
            f"cannot extend {old_dir}: only [train] max_steps and the schedule may change, but "
            "these settings "
            "differ:\n  " + "\n  ".join(diffs) + "\nUse the old sweep's settings, or run "
            "without --extend-from."
        )
    old_budget = int(old_settings["train"]["max_steps"])
    if config.train.max_steps < old_budget:
        raise CollectError(
            f"cannot extend {old_dir}: [train] max_steps = {config.train.max_steps} is smaller "
            f"than its budget {old_budget}; extension only raises the budget."
        )
    old_train = TrainConfig(**old_settings["train"])
    check_same_lr(old_train, config.train, old_dir)
    check_same_stops(old_train, config.train, old_dir)
    return ExtensionSource(old_dir, str(old["fingerprint"]), old_budget)


def check_same_lr(old: TrainConfig, new: TrainConfig, old_dir: str | Path) -> None:
    """Refuse to extend ``old`` by ``new`` unless each step ``old`` ran has the same lr.

    Continuing an old cell from its saved state equals a direct run only if the direct run
    would have taken the old run's steps: the same lr at every step below the old budget.
    ``plateau_decay`` is refused outright (its lr depends on when the plateaus came).

    Raises
    ------
    CollectError
        Naming the first step where the two schedules' lr differ.
    """
    if "plateau_decay" in (old.schedule, new.schedule):
        raise CollectError(
            f"cannot extend {old_dir} under schedule 'plateau_decay': its lr depends on when the "
            "plateaus came, so a continued run is not the run a larger budget gives. Run the "
            "sweep from scratch instead."
        )
    step = next((s for s in range(old.max_steps) if old.lr_at(s) != new.lr_at(s)), None)
    if step is not None:
        raise CollectError(
            f"cannot extend {old_dir}: its cells ran step {step} at lr {old.lr_at(step):g} "
            f"(schedule {old.schedule!r}, max_steps {old.max_steps}), but this sweep's schedule "
            f"({new.schedule!r}, max_steps {new.max_steps}) gives that step lr "
            f"{new.lr_at(step):g}, so a continued run is not the run this sweep describes. "
            "Extension works from a constant-lr sweep to a larger constant budget, or to a "
            "'cooldown' schedule whose constant phase (max_steps - cooldown_steps) covers the "
            f"old budget of {old.max_steps}; otherwise run the sweep from scratch."
        )


def check_same_stops(old: TrainConfig, new: TrainConfig, old_dir: str | Path) -> None:
    """Refuse to extend ``old`` by ``new`` when the convergence stop could fire in its steps.

    An old cell ran to its budget without the new sweep's convergence stop; continuing it
    equals a direct run only if that stop could not have fired before the old budget, i.e.
    ``new.converge_from`` is off or at least the old ``max_steps`` (and the old sweep had the
    same stop, or none).

    Raises
    ------
    CollectError
        Saying which ``converge_from`` would make the extension valid.
    """
    same = (old.converge_from, old.converge_tol, old.converge_window) == (
        new.converge_from,
        new.converge_tol,
        new.converge_window,
    )
    fires_after_old_budget = not new.converge_from or new.converge_from >= old.max_steps
    if same or (not old.converge_from and fires_after_old_budget):
        return
    raise CollectError(
        f"cannot extend {old_dir}: its cells ran under converge_from {old.converge_from} "
        f"(tol {old.converge_tol}, window {old.converge_window}) and a budget of "
        f"{old.max_steps}, this sweep's convergence stop is converge_from {new.converge_from} "
        f"(tol {new.converge_tol}, window {new.converge_window}), which could have stopped "
        "them elsewhere, so a continued run is not the run this sweep describes. Keep the old "
        f"stop, or add one from converge_from >= {old.max_steps} to a sweep without one; "
        "otherwise run the sweep from scratch."
    )


def extension_plan(source: ExtensionSource, keys: Iterable[CellKey]) -> dict[CellKey, str]:
    """Say how each cell is obtained from ``source``: ``copy``, ``resume`` or ``scratch``.

    ``copy``: the old cell stopped before its budget (memorized, plateau) and its objective does
    not depend on the budget, so a larger budget stops it the same way. ``resume``: it stopped
    at the old budget and left a state file. ``scratch``: anything else (missing, not ``ok``,
    MemFT-SW on PhoneBook, no state file).
    """
    plan = {}
    for key in keys:
        plan[key] = "scratch"
        if budget_dependent(key.method, key.task):
            continue
        old = read_cell(source.out_dir, key, source.fingerprint)
        if old is None or str(old["status"].values) != "ok":
            continue
        reason = old.attrs.get("stop_reason")
        if reason in EARLY_STOPS:
            plan[key] = "copy"
        elif reason == "budget" and _state_dir(source.out_dir, key, old.attrs) is not None:
            plan[key] = "resume"
    return plan


def _state_dir(out_dir: Path, key: CellKey, attrs: dict) -> Path | None:
    """Where the old cell's saved state is: its own directory, or the one it was copied from.

    A cell shared from another sweep (``--share-cells-with``, attribute ``copied_from``) left
    its state file where it trained; the cell is the same computation, so is the state.
    """
    folders = [out_dir]
    if attrs.get("copied_from"):
        folders.append(out_dir / str(attrs["copied_from"]))
    return next((folder for folder in folders if state_path(folder, key).exists()), None)


def _resume_state(source: ExtensionSource, config: SweepConfig, key: CellKey) -> dict | None:
    """Read the old cell's saved state if it fits this sweep; None (run from scratch) if not."""
    old = read_cell(source.out_dir, key, source.fingerprint)
    folder = _state_dir(source.out_dir, key, old.attrs if old is not None else {})
    payload = read_state(folder, key) if folder is not None else None
    meta = payload["meta"] if payload else {}
    if (
        payload is None
        or meta.get("fingerprint_without_budget") != config.fingerprint_without_budget()
        or int(payload["state"].get("step", -1)) != source.max_steps
    ):
        warnings.warn(
            f"{state_path(folder or source.out_dir, key)} is unreadable or belongs to other "
            "settings; "
            "running this cell from scratch",
            stacklevel=2,
        )
        return None
    return payload
