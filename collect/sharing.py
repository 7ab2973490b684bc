"""Share cells between sweep directories collected under the same settings.

Two sweeps often hold some of the same cells: a law sweep and a carrier sweep both train a
rank-1 LoRA adapter at ℓ = 512 on the same target, under the same ``[train]`` and ``[data]``
settings (one fingerprint). ``collect run A.toml --out A --share-cells-with B`` trains such a
cell once:

- a cell finished in ``B`` (status ``ok``) is copied into ``A`` instead of trained, with the
  attribute ``copied_from``;
- a cell a live worker of ``B`` is running is left to it (``A``'s worker moves on; a later
  run of ``A`` copies it);
- a cell ``A`` trains is claimed in ``B`` too, so ``B``'s workers leave it alone, and a
  checkpoint ``B`` left of it (a killed run) is resumed instead of starting over.

Only directories with this sweep's fingerprint and precision share cells
(:func:`shared_dirs` checks before anything runs). ``B``'s own worker picks ``A``'s finished
cells up the same way when it is run with ``--share-cells-with A``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collect.config import CellKey, SweepConfig, settings_differences
from collect.errors import CollectError
from collect.store import (
    cell_path,
    claim_cell,
    copy_cell,
    open_verified,
    path_from,
    read_state,
    release_cell,
    state_path,
)


@dataclass(frozen=True)
class SharedDirs:
    """Sweep directories whose cells this sweep shares (same fingerprint and precision).

    ``precision`` is the one they record (None while none of them has computed a cell).
    """

    dirs: tuple[Path, ...] = ()
    fingerprint: str = ""
    precision: str | None = None

    def __bool__(self) -> bool:
        return bool(self.dirs)


def _sweep_meta(path: Path) -> dict:
    meta = path / "sweep.json"
    if not meta.exists():
        raise CollectError(
            f"--share-cells-with {path}: no sweep.json there; give a directory that "
            "`collect run` wrote."
        )
    return json.loads(meta.read_text())


def shared_dirs(config: SweepConfig, dirs: Iterable[str | Path], out_dir: str | Path) -> SharedDirs:
    """Check that the sweeps in ``dirs`` may share cells with ``config``'s sweep in ``out_dir``.

    Raises
    ------
    CollectError
        If a directory holds no sweep, is ``out_dir`` itself, was collected under other
        settings (the message lists them), or in another floating-point precision.
    """
    out_dir, checked, shared_precision = Path(out_dir), [], None
    mine = _sweep_meta(out_dir).get("precision") if (out_dir / "sweep.json").exists() else None
    for path in map(Path, dirs):
        meta = _sweep_meta(path)
        if path.resolve() == out_dir.resolve():
            raise CollectError(
                f"--share-cells-with {path} is the output directory itself; give another "
                "sweep's directory."
            )
        if meta.get("fingerprint") != config.fingerprint():
            theirs = {name: meta.get(name) for name in config.settings()}
            diffs = settings_differences(theirs, config.settings())
            raise CollectError(
                f"--share-cells-with {path}: its cells were collected under other settings, "
                "so they are not cells of this sweep:\n  "
                + "\n  ".join(diffs or ["(the sweep fingerprints differ)"])
                + "\nShare only directories collected with the same [train] and [data]."
            )
        theirs = meta.get("precision")
        if mine is not None and theirs is not None and mine != theirs:
            raise CollectError(
                f"--share-cells-with {path}: its cells are computed in {theirs}, this "
                f"directory's in {mine}; cells of two precisions do not mix in one sweep."
            )
        mine, shared_precision = mine or theirs, shared_precision or theirs
        checked.append(path)
    return SharedDirs(tuple(checked), config.fingerprint(), shared_precision)


def finished_elsewhere(shared: SharedDirs, key: CellKey) -> Path | None:
    """Return a shared directory holding ``key`` finished with status ``ok``, or None."""
    for path in shared.dirs:
        file = cell_path(path, key)
        if file.exists() and (ds := open_verified(file)) is not None:
            if str(ds["status"].values) == "ok":
                return path
    return None


def not_finished_elsewhere(
    config: SweepConfig, keys: Iterable[CellKey], out_dir: str | Path, dirs: Iterable[str | Path]
) -> tuple[list[CellKey], int]:
    """Split pending cells into those to train and a count of those a shared directory finished.

    Parameters
    ----------
    config : SweepConfig
        The sweep the cells belong to.
    keys : iterable of CellKey
        Its pending cells (``collect.sweep.pending_cells``).
    out_dir : str or Path
        The sweep's own directory.
    dirs : iterable of str or Path
        Directories given to ``--share-cells-with`` (checked as ``collect run`` checks them).

    Returns
    -------
    left : list of CellKey
        The cells no shared directory holds finished: they still need training.
    copied : int
        How many it holds (``collect run --share-cells-with`` copies them; they cost nothing).
    """
    keys, dirs = list(keys), list(dirs)
    if not dirs:
        return keys, 0
    shared = shared_dirs(config, dirs, out_dir)
    left = [k for k in keys if finished_elsewhere(shared, k) is None]
    return left, len(keys) - len(left)


def copy_finished(shared: SharedDirs, source: Path, out_dir: Path, key: CellKey) -> Path:
    """Copy ``key`` from ``source``, a shared directory that finished it.

    The copy records ``copied_from``: ``source`` relative to ``out_dir``.
    """
    attrs = {"copied_from": path_from(out_dir, source)}
    return copy_cell(source, out_dir, key, shared.fingerprint, shared.fingerprint, attrs)


def claim_shared(shared: SharedDirs, key: CellKey) -> bool:
    """Claim ``key`` in every shared directory; False (nothing held) if a live worker has it."""
    held = []
    for path in shared.dirs:
        if not claim_cell(path, key):
            for other in held:
                release_cell(other, key)
            return False
        held.append(path)
    return True


def release_shared(shared: SharedDirs, key: CellKey) -> None:
    """Drop this process's claims on ``key`` in the shared directories."""
    for path in shared.dirs:
        release_cell(path, key)


def adopt_checkpoint(shared: SharedDirs, out_dir: Path, key: CellKey) -> Path | None:
    """Copy a shared directory's checkpoint of ``key`` here when this directory has none.

    A checkpoint is adopted only if it was saved under this sweep's fingerprint; the
    original stays where it is. Returns the directory it came from, or None.
    """
    here = state_path(out_dir, key, "partial")
    if here.exists():
        return None
    for path in shared.dirs:
        payload = read_state(path, key, "partial")
        if payload is not None and payload["meta"].get("fingerprint") == shared.fingerprint:
            tmp = here.with_name(here.name + ".adopting")
            shutil.copyfile(state_path(path, key, "partial"), tmp)
            os.replace(tmp, here)
            return path
    return None
