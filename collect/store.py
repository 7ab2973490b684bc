"""Cell files (one per finished cell, written atomically) and their merge into one dataset.

A sweep directory holds ``sweep.json`` (the config) and ``cells/<slug>.nc``. A cell file is
written to a temporary name and moved into place with :func:`os.replace`, so a killed sweep
leaves either a complete cell file or none: resuming never redoes or loses a finished cell.

A cell stopped by the step budget may also leave ``cells/<slug>.state.pt``: its resumable
training state (adapter tensors and AdamW moments, never the base model), written the same
atomic way, from which ``collect run --extend-from`` continues it under a larger budget.
State files (and the ``.partial.pt`` checkpoints of running cells) are ``torch.save`` payloads
compressed with gzip; :func:`load_state_file` reads them, and the uncompressed ones of older
sweeps too (``collect compress`` rewrites those).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import importlib.util
import io
import json
import os
import platform
import socket
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from collect.carriers import derived_n_bytes
from collect.config import DIMS, CellKey, SweepConfig
from collect.errors import CollectError
from collect.probe import NEVER_EXACT, UNKNOWN_EXACT, CellResult, model_dtype

SCHEMA_VERSION = "1.0"
SCALARS = (
    "loss_before",
    "loss_after",
    "exact_match",
    "token_accuracy",
    "steps",
    "wall_time",
    "n_params",
)
TOKEN_VARS = ("p_before", "p_after", "greedy_correct", "entropy_bits")
CURVES = ("loss_curve", "frac_above_curve")
#: per-cell numbers a cell file may lack (written before they were recorded): NaN in a merge
OPTIONAL_SCALARS = ("first_exact_step",)
FIRST_EXACT_DESCRIPTION = (
    "first training step at which the teacher-forced argmax was correct at every target "
    "position, i.e. greedy decoding first reproduced the target exactly (read on the training "
    "forward pass: its dtype, and LoRA dropout where set); NaN where never reached or not known, "
    "which first_exact tells apart"
)
FIRST_EXACT_TEXT_DESCRIPTION = (
    "what first_exact_step says of a cell: 'reached' (it is the step), 'never' (greedy "
    "decoding never reproduced the target during training), 'unknown' (collected, or resumed "
    "from a checkpoint written, before the step was recorded, so it may have been missed); "
    "'' where no cell finished"
)
#: ``first_exact`` text of a cell's ``first_exact_step`` (:func:`first_exact_label`)
_FIRST_EXACT_LABELS = {NEVER_EXACT: "never", UNKNOWN_EXACT: "unknown"}
#: per-cell text the merged dataset carries (why training stopped, where it ran, whether
#: exact recall was reached), each with the attribute counting its values over the cells
CELL_TEXT = {
    "stop_reason": "cell_stop_reasons",
    "device": "cell_devices",
    "dtype": "cell_dtypes",
    "git_revision": "cell_git_revisions",
    "first_exact": "cell_first_exact",
}
ENTROPY_DESCRIPTION = (
    "entropy of the target token's content given the earlier tokens of its entry "
    "(collect.tasks.target_entropy); NaN where unknown (natural text); the dataset attribute "
    "entropy_basis says how it was derived"
)

N_BYTES_DESCRIPTION = (
    "exact bytes of the adapter's or carrier's trainable (skv: stored) state at storage "
    "precision, the dtype it is trained in: float32 for weight-delta adapters, the model's "
    "dtype for carriers; derived_cells counts cells written before it was recorded, derived "
    "from n_params (collect.carriers.derived_n_bytes); -1 where not collected"
)


def cell_path(out_dir: Path, key: CellKey) -> Path:
    """Where a cell's file lives."""
    return Path(out_dir) / "cells" / f"{key.slug()}.nc"


def path_from(out_dir: Path, other: Path) -> str:
    """``other`` as a path relative to the sweep directory ``out_dir`` (POSIX separators).

    Cells record the directories they came from (``copied_from``, ``warm_started_from``)
    this way, so that the record stays true when the data are moved or cloned elsewhere:
    ``out_dir / path_from(out_dir, other)`` is ``other`` again.
    """
    rel = os.path.relpath(Path(other).resolve(), Path(out_dir).resolve())
    return Path(rel).as_posix()


def write_cell(
    out_dir: Path,
    key: CellKey,
    result: CellResult,
    fingerprint: str,
    attrs: dict | None = None,
) -> Path:
    """Write one cell atomically (temporary file, then :func:`os.replace`).

    ``attrs`` adds file attributes (e.g. ``extended_from``, the budget a cell was continued
    from); they never reach the merged dataset.
    """
    n_tok = len(result.token_entry)
    data = {name: ((), float(getattr(result, name))) for name in SCALARS}
    data["loss_reduction"] = ((), float(result.loss_reduction))
    data["status"] = ((), result.status)
    data["first_exact_step"] = (
        (),
        float(result.first_exact_step) if result.first_exact_step >= 0 else np.nan,
    )
    if result.n_bytes >= 0:  # a path that did not measure it leaves it to merge (derived)
        data["n_bytes"] = ((), float(result.n_bytes))
    for name in TOKEN_VARS:
        values = np.asarray(getattr(result, name), dtype=float)
        data[name] = (("token",), values if len(values) == n_tok else np.full(n_tok, np.nan))
    data["entry"] = (("token",), np.asarray(result.token_entry, dtype=np.int64))
    for name in CURVES:
        data[name] = (("step",), np.asarray(getattr(result, name), dtype=float))
    ds = xr.Dataset(data, coords={"step": np.asarray(result.curve_steps, dtype=np.int64)})
    ds.attrs = {
        "key": json.dumps(dataclasses.asdict(key)),
        "fingerprint": fingerprint,
        "stop_reason": result.stop_reason,
        "first_exact": first_exact_label(result.first_exact_step),
        "error": result.error,
        "prefix_cached": int(result.prefix_cached),
        "prompt_packed": int(result.prompt_packed),
        **(attrs or {}),
    }
    ds.attrs[CHECKSUM_ATTR] = data_checksum(ds)
    return _write_atomic(cell_path(out_dir, key), _netcdf_writer(ds))


def netcdf_engine() -> str:
    """Return the xarray engine that writes this project's NetCDF files here.

    ``"netcdf4"`` (NetCDF-4, compressed) where the netCDF4 package is installed; otherwise
    ``"scipy"`` (NetCDF-3, uncompressed), which needs only scipy: machines with a fixed set of
    packages and no NetCDF-4 library (a GPU node, say) can still write cells and datasets.
    Both read back into the same values (integers as int32 in NetCDF-3).
    """
    if importlib.util.find_spec("netCDF4") is not None:
        return "netcdf4"
    if importlib.util.find_spec("scipy") is not None:
        return "scipy"
    raise CollectError(
        "writing NetCDF needs the netCDF4 package or scipy, and neither is installed; "
        "install one (`pip install netCDF4`)."
    )


#: numeric variables with more elements than this are stored zlib-compressed; smaller ones
#: stay contiguous, where the chunk index HDF5 needs for compression costs more than it saves
COMPRESS_ABOVE = 512


def compressed_encoding(ds: xr.Dataset) -> dict[str, dict]:
    """Return the NetCDF-4 encoding that compresses ``ds``'s large numeric variables.

    zlib at level 4 on every numeric variable larger than :data:`COMPRESS_ABOVE` elements:
    loss curves and per-token arrays. Lossless: the values read back are the values written.
    """
    return {
        name: {"zlib": True, "complevel": 4}
        for name, var in ds.variables.items()
        if var.dtype.kind in "fiu" and var.size > COMPRESS_ABOVE
    }


def _netcdf_writer(ds: xr.Dataset) -> Callable[[Path], object]:
    """Return ``write(path)`` that saves ``ds`` with :func:`netcdf_engine`.

    NetCDF-4 files are compressed (:func:`compressed_encoding`); NetCDF-3 has no compression.
    """
    engine = netcdf_engine()
    encoding = compressed_encoding(ds) if engine == "netcdf4" else None
    return lambda path: ds.to_netcdf(path, engine=engine, encoding=encoding)


def _write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then move it into place.

    Every file of a sweep directory (cells, states, the merged dataset) is written this way,
    so a killed process leaves either the complete file or none.
    """
    path = Path(path)
    if path.is_dir():
        raise CollectError(f"{path} is a folder; expected a file name to write, e.g. {path}.nc.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def copy_cell(
    src_dir: Path, out_dir: Path, key: CellKey, src_fingerprint: str, fingerprint: str, attrs: dict
) -> Path:
    """Copy a finished cell into another sweep directory under that sweep's fingerprint.

    The values are kept as they are; the ``fingerprint`` attribute becomes ``fingerprint`` and
    ``attrs`` are added (budget extension records ``extended_from`` this way).
    """
    ds = read_cell(src_dir, key, src_fingerprint)
    if ds is None:
        raise CollectError(f"{cell_path(src_dir, key)} does not exist; nothing to copy.")
    ds.attrs.update({"fingerprint": fingerprint, **attrs})
    ds.attrs[CHECKSUM_ATTR] = data_checksum(ds)
    return _write_atomic(cell_path(out_dir, key), _netcdf_writer(ds))


def state_path(out_dir: Path, key: CellKey, kind: str = "state") -> Path:
    """Where a cell's resumable training state lives.

    ``kind="state"``: the state of a finished cell that stopped at the budget (budget
    extension resumes it); ``kind="partial"``: the last checkpoint of a cell still running
    (or killed), which the next run of the cell resumes.
    """
    if kind not in ("state", "partial"):
        raise ValueError(f"kind must be 'state' or 'partial', got {kind!r}")
    return Path(out_dir) / "cells" / f"{key.slug()}.{kind}.pt"


def write_state(out_dir: Path, key: CellKey, state: dict, meta: dict, kind: str = "state") -> Path:
    """Write a cell's training state (:func:`collect.probe.training_state`) atomically.

    ``meta`` identifies what the state belongs to (the cell's key is added here); budget
    extension and checkpoint resumption check it before resuming.
    """
    payload = {"meta": {**meta, "key": json.dumps(dataclasses.asdict(key))}, "state": state}
    return _write_atomic(state_path(out_dir, key, kind), state_writer(payload))


#: the first bytes of a gzip stream (RFC 1952), which no ``torch.save`` file starts with
GZIP_MAGIC = b"\x1f\x8b"


def state_writer(payload: dict) -> Callable[[Path], object]:
    """Return ``write(path)`` that saves ``payload`` with ``torch.save``, gzip-compressed.

    The adapter's few tensors sit in ``torch.save``'s archive uncompressed; compressed, a
    state file takes about half the bytes.
    """
    import torch

    def write(path: Path) -> None:
        with gzip.open(path, "wb", compresslevel=6) as stream:
            torch.save(payload, stream)

    return write


def load_state_file(path: str | Path) -> dict:
    """Load a state file on the CPU: gzip-compressed, or a plain ``torch.save`` file.

    Only tensors, containers and numbers are loaded (``weights_only``); raises what
    ``torch.load`` raises for a damaged file.
    """
    import torch

    raw = Path(path).read_bytes()
    if raw.startswith(GZIP_MAGIC):
        raw = gzip.decompress(raw)
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def read_state(out_dir: Path, key: CellKey, kind: str = "state") -> dict | None:
    """Read a cell's state file as ``{"meta": ..., "state": ...}``; None if absent or unreadable."""
    path = state_path(out_dir, key, kind)
    if not path.exists():
        return None
    try:
        payload = load_state_file(path)
    except Exception:  # noqa: BLE001 - a damaged state only means the cell runs from scratch
        return None
    if not same_key(payload.get("meta", {}).get("key"), key):
        return None
    return payload


def checkpoint_step(out_dir: Path, key: CellKey) -> int:
    """Return the step a cell's checkpoint (``partial`` state) resumes from; 0 without one."""
    saved = read_state(Path(out_dir), key, "partial")
    return int(saved["state"]["step"]) if saved else 0


def same_key(recorded: str | None, key: CellKey) -> bool:
    """Tell whether a key recorded as JSON (in a state or cell file) is ``key``.

    Files written before ``data_seed`` was a coordinate record no ``data_seed``: they belong to
    the first target sequence (``data_seed = 0``), as their sweeps' ``[data] data_seed`` was.
    """
    try:
        fields = json.loads(recorded) if recorded else None
    except ValueError:
        return False
    if not isinstance(fields, dict):
        return False
    return {"data_seed": 0, **fields} == dataclasses.asdict(key)


def claim_path(out_dir: Path, key: CellKey) -> Path:
    """Where a worker's claim on a cell lives while it runs the cell."""
    return cell_path(out_dir, key).with_suffix(".claim")


def _claim_is_stale(path: Path, grace: float = 60.0) -> bool:
    """Tell whether a claim is stale: its process on this host is gone (other hosts' count)."""
    try:
        text = path.read_text().split()
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False  # vanished meanwhile: not ours to judge
    if len(text) != 2:
        return age > grace  # a claim being written right now is not stale
    host, pid = text
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def claim_cell(out_dir: Path, key: CellKey) -> bool:
    """Atomically claim a cell for this process; False if a live worker holds it.

    Several ``collect run`` processes on one sweep directory share the work this way: each
    takes the next cell nobody holds. A claim left by a killed process on this host is taken
    over. (Two workers reclaiming the same stale claim at the same instant may both run that
    cell; both write the same deterministic result, atomically.)

    The claim appears complete or not at all: its ``"host pid"`` is written to a private
    file first, then hard-linked to the claim's name (which fails if the name exists). A
    worker killed mid-claim therefore never leaves an empty claim that other workers would
    have to honour until it ages out.
    """
    path = claim_path(out_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.draft")
    draft.write_text(f"{socket.gethostname()} {os.getpid()}")
    try:
        for _ in range(2):
            try:
                os.link(draft, path)
            except FileExistsError:
                if _claim_is_stale(path):
                    path.unlink(missing_ok=True)
                    continue
                return False
            return True
        return False
    finally:
        draft.unlink(missing_ok=True)


def running_claim(out_dir: Path, key: CellKey) -> str | None:
    """Return ``"host pid"`` of the live worker running a cell, or None if nobody runs it."""
    path = claim_path(out_dir, key)
    if not path.exists() or _claim_is_stale(path):
        return None
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def release_cell(out_dir: Path, key: CellKey) -> None:
    """Drop this process's claim on a cell."""
    claim_path(out_dir, key).unlink(missing_ok=True)


def first_exact_label(first_exact_step: int) -> str:
    """Return the ``first_exact`` text of a :class:`CellResult`'s ``first_exact_step``.

    "reached" for a step (0 or later), "never" for :data:`NEVER_EXACT`, "unknown" for
    :data:`UNKNOWN_EXACT`; a cell file stores both of the last two as NaN.
    """
    return "reached" if first_exact_step >= 0 else _FIRST_EXACT_LABELS[first_exact_step]


def derived_first_exact(ds: xr.Dataset) -> xr.DataArray:
    """``first_exact`` of cells written before it was recorded, from ``first_exact_step``.

    Works on one cell file or a merged dataset: "reached" where the step is a number,
    "unknown" where it is NaN or absent (never reached, or missed), "" where no cell finished.
    """
    if "first_exact_step" in ds:
        reached = np.isfinite(ds["first_exact_step"])
    else:
        reached = xr.zeros_like(ds["status"], dtype=bool)
    label = xr.where(reached, "reached", "unknown")
    return xr.where(ds["status"] == "ok", label, "").astype(object)


#: per-cell text that cells written before it was recorded get derived from their other
#: variables (each deriver works on one cell file and on a merged dataset); other text reads ""
DERIVED_TEXT = {"first_exact": derived_first_exact}
#: what the merged file's counts call a cell written before the text was recorded
_UNRECORDED = {"device": "unrecorded", "dtype": "unrecorded", "git_revision": "unrecorded"}


def cell_text(ds: xr.Dataset, name: str) -> str:
    """One cell file's value of the per-cell text ``name`` (a :data:`CELL_TEXT` key).

    Cells written before a text was recorded read "", or the value :data:`DERIVED_TEXT`
    derives for them.
    """
    if name in DERIVED_TEXT and name not in ds.attrs:
        return str(DERIVED_TEXT[name](ds).item())
    return str(ds.attrs.get(name, ""))


def _cell_text_counts(cells: Iterable[xr.Dataset]) -> dict[str, str]:
    """Count each :data:`CELL_TEXT` text's values over ``cells``, keyed by its attribute."""
    cells = list(cells)
    return {
        attr: json.dumps(
            dict(Counter(cell_text(c, name) or _UNRECORDED.get(name, "") for c in cells))
        )
        for name, attr in CELL_TEXT.items()
    }


def read_cell(
    out_dir: Path, key: CellKey, fingerprint: str, *, strict: bool = False
) -> xr.Dataset | None:
    """Read a finished cell (None if absent); a cell from other settings is an error.

    A damaged cell (unreadable, truncated, or failing its checksum) is set aside with a
    :class:`DamagedCellWarning` and read as absent, so the sweep runs it again; with
    ``strict`` it is a :class:`CollectError` instead (and the file is left in place).
    """
    path = cell_path(out_dir, key)
    if not path.exists():
        return None
    ds = open_verified(path, strict=strict)
    if ds is None:
        return None
    if ds.attrs.get("fingerprint") != fingerprint:
        raise CollectError(
            f"{path} was collected with different training/data settings "
            f"(fingerprint {ds.attrs.get('fingerprint')} != {fingerprint}); use a new output "
            "directory, or restore the settings it was collected with."
        )
    return ds


#: Attribute of a cell file holding the checksum of its data (:func:`data_checksum`).
CHECKSUM_ATTR = "data_sha256"


class DamagedCellWarning(UserWarning):
    """A cell file could not be read whole; it was set aside (renamed) to be run again."""


def data_checksum(ds: xr.Dataset) -> str:
    """SHA-256 of a dataset's values (every variable and coordinate; not its attributes).

    Strings are hashed as UTF-8 text, integers and booleans as int64 and other numbers as
    float64, so the value survives a NetCDF round trip (NetCDF-4 may turn ``<U2`` into
    ``object``; NetCDF-3, written where netCDF4 is absent, stores int64 as int32 and bool as
    int8) and changes with any flipped bit in the data.
    """
    digest = hashlib.sha256()
    for name in sorted(ds.variables):
        values = np.asarray(ds[name].values)
        digest.update(f"{name}|{values.shape}|".encode())
        if values.dtype.kind in "OUS":
            digest.update("\x1f".join(str(v) for v in values.ravel()).encode())
        else:
            wide = np.int64 if values.dtype.kind in "biu" else np.float64
            digest.update(np.ascontiguousarray(values, dtype=wide).tobytes())
    return digest.hexdigest()


def read_netcdf(path: Path) -> tuple[xr.Dataset | None, Exception | None]:
    """Read a NetCDF file whole into memory: ``(dataset, None)``, or ``(None, the error)``.

    Any failure to open or read is returned, not raised (HDF errors arrive as ``OSError``,
    a truncated file as ``ValueError`` or ``KeyError``), so each caller words it for its user.
    """
    try:
        with xr.open_dataset(path) as ds:
            return ds.load(), None
    except Exception as exc:  # noqa: BLE001 - OSError (HDF error), ValueError, KeyError, ...
        return None, exc


def _damage(path: Path) -> tuple[xr.Dataset | None, str | None]:
    """Read a cell file whole: ``(dataset, None)``, or ``(None, what is wrong)``."""
    ds, exc = read_netcdf(path)
    if ds is None:
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    stored = ds.attrs.get(CHECKSUM_ATTR)
    if stored is not None and stored != data_checksum(ds):
        return None, "its data do not match the checksum written with it"
    return ds, None


def set_aside(path: Path, why: str) -> Path:
    """Rename a damaged file beside itself (never delete it) and warn, naming both paths."""
    path = Path(path)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    new = path.with_name(f"{path.name}.damaged-{stamp}-{os.getpid()}")
    os.replace(path, new)
    warnings.warn(
        f"cell file {path} is damaged ({why}); set aside as {new.name}; the cell will be run "
        "again.",
        DamagedCellWarning,
        stacklevel=3,
    )
    return new


def open_verified(path: Path, *, strict: bool = False) -> xr.Dataset | None:
    """Open a cell file and check that it is whole; set it aside (or raise) if not.

    Cells written before checksums existed have none; they are read as they are.
    """
    ds, why = _damage(path)
    if why is None:
        return ds
    if strict:
        raise CollectError(
            f"cell file {path} is damaged: {why}. Move it away (or run `collect run` with the "
            "same config, which sets it aside and runs the cell again)."
        )
    set_aside(path, why)
    return None


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (readers never see half a file)."""
    return _write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


def now_utc() -> str:
    """Return the current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def cell_provenance(model, device) -> dict[str, str]:
    """Where and how a worker computes its cells: device (with the GPU's name), dtype, code.

    Written into every cell file, because the cells of one sweep may come from several
    machines, sessions and code revisions; :func:`merge` summarizes them.
    """
    import torch

    dtype = model_dtype(model)
    name = str(device)
    if getattr(device, "type", None) == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {
        "device": name,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "git_revision": git_revision(),
    }


def provenance() -> dict[str, str]:
    """Package versions and the git revision of the collecting code."""
    versions = {"python": platform.python_version()}
    for pkg in ("lawfit", "torch", "transformers", "peft", "gguf", "numpy", "xarray"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "absent"
    return {"versions": json.dumps(versions), "git_revision": git_revision()}


def git_revision() -> str:
    """Return the commit of the collecting code, ``+dirty`` if ``collect/`` has local changes."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "collect"],
            cwd=here.parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _axis(values) -> list:
    out = list(dict.fromkeys(values))
    return sorted(out) if all(isinstance(v, int | float) for v in out) else out


def merge(config: SweepConfig, out_dir: Path, *, strict: bool = False) -> xr.Dataset:
    """Merge every finished cell into one dataset in the contract's shape (DESIGN.md §3).

    Cells of the grid that have no file yet carry ``status == "not_run"`` and NaN values; the
    attribute ``complete`` says whether every cell is finished. A damaged cell file is set
    aside with a warning and counts as not run (``strict``: a :class:`CollectError`).
    """
    keys = config.cells()
    coords = {d: _axis(getattr(k, d) for k in keys) for d in DIMS}
    shape = tuple(len(coords[d]) for d in DIMS)
    index = {d: {v: i for i, v in enumerate(coords[d])} for d in DIMS}
    cells = {k: read_cell(out_dir, k, config.fingerprint(), strict=strict) for k in keys}
    done = {k: ds for k, ds in cells.items() if ds is not None}
    n_tok = max(coords["length"])
    steps = np.arange(0, config.train.max_steps + 1, config.train.log_every)
    # per-cell scalars; n_params is kept once per (model, modules, rank) below instead
    cell_vars = (*(name for name in SCALARS if name != "n_params"), "loss_reduction")
    out = {name: np.full(shape, np.nan) for name in (*cell_vars, *OPTIONAL_SCALARS)}
    status = np.full(shape, "not_run", dtype=object)
    # where each finished cell comes from (cells written before these were recorded: "")
    text = {name: np.full(shape, "", dtype=object) for name in CELL_TEXT}
    tokens = {name: np.full((*shape, n_tok), np.nan) for name in TOKEN_VARS}
    curves = {name: np.full((*shape, len(steps)), np.nan) for name in CURVES}
    ent_dims = ("model", "task", "length", "data_seed")
    entry = np.full((*(len(coords[d]) for d in ent_dims), n_tok), -1, dtype=np.int64)
    n_params = np.full(
        (len(coords["model"]), len(coords["modules"]), len(coords["rank"])), -1, dtype=np.int64
    )
    n_bytes, n_bytes_derived = np.full_like(n_params, -1), 0
    for key, ds in done.items():
        at = tuple(index[d][getattr(key, d)] for d in DIMS)
        for name in cell_vars:
            out[name][at] = float(ds[name])
        for name in (v for v in OPTIONAL_SCALARS if v in ds):  # older cells lack them: NaN
            out[name][at] = float(ds[name])
        status[at] = str(ds["status"].values)
        for name in CELL_TEXT:
            text[name][at] = cell_text(ds, name)
        n = ds.sizes["token"]
        for name in (v for v in TOKEN_VARS if v in ds):  # cells older than entropy_bits lack it
            tokens[name][at][:n] = ds[name].values
        pos = np.searchsorted(steps, ds["step"].values)
        for name in CURVES:
            curves[name][at][pos] = ds[name].values
        entry[tuple(index[d][getattr(key, d)] for d in ent_dims)][:n] = ds["entry"].values
        adapter_at = (
            index["model"][key.model],
            index["modules"][key.modules],
            index["rank"][key.rank],
        )
        n_params[adapter_at] = int(ds["n_params"])
        n_bytes[adapter_at], derived = _cell_n_bytes(key, ds)
        n_bytes_derived += derived
    data = {name: (DIMS, values) for name, values in out.items()}
    data["status"] = (DIMS, status.astype(str))
    data.update({name: (DIMS, values.astype(str)) for name, values in text.items()})
    data.update({name: ((*DIMS, "token"), v) for name, v in tokens.items()})
    data.update({name: ((*DIMS, "step"), v) for name, v in curves.items()})
    data["entry"] = ((*ent_dims, "token"), entry)
    data["n_params"] = (("model", "modules", "rank"), n_params)
    data["n_bytes"] = (("model", "modules", "rank"), n_bytes)
    ds = xr.Dataset(data, coords={**coords, "token": np.arange(n_tok), "step": steps})
    # the contract's name (DESIGN.md §3); `method` would collide with Dataset.sel(method=)
    ds = ds.rename({"method": "objective"})
    _describe_units(ds, n_bytes_derived)
    ds.attrs = _merge_attrs(config, len(keys), done)
    return ds


def _describe_units(ds: xr.Dataset, n_bytes_derived: int) -> None:
    """Give a merged dataset's variables their units and descriptions (in place)."""
    units = {
        "loss_before": "nats/token",
        "loss_after": "nats/token",
        "loss_reduction": "nats/token",
        "wall_time": "s",
    }
    for name, unit in units.items():
        ds[name].attrs["units"] = unit
    ds["entropy_bits"].attrs.update(units="bits", description=ENTROPY_DESCRIPTION)
    ds["first_exact_step"].attrs.update(units="steps", description=FIRST_EXACT_DESCRIPTION)
    ds["first_exact"].attrs["description"] = FIRST_EXACT_TEXT_DESCRIPTION
    ds["n_bytes"].attrs.update(
        units="bytes", description=N_BYTES_DESCRIPTION, derived_cells=n_bytes_derived
    )


def _merge_attrs(config: SweepConfig, n_cells: int, done: dict[CellKey, xr.Dataset]) -> dict:
    """Return the merged dataset's attributes: the sweep, its provenance, the cells' own."""
    return {
        "schema_version": SCHEMA_VERSION,
        "config": json.dumps(config.to_dict()),
        "fingerprint": config.fingerprint(),
        "protocol": json.dumps(config.settings()["train"]),
        **provenance(),
        "created": now_utc(),
        "synthetic": "false",
        "n_cells": n_cells,
        "n_cells_done": len(done),
        "complete": "true" if len(done) == n_cells else "false",
        "prefix_cached_cells": int(
            sum(int(c.attrs.get("prefix_cached", 0)) for c in done.values())
        ),
        "prompt_packed_cells": int(
            sum(int(c.attrs.get("prompt_packed", 0)) for c in done.values())
        ),
        "entropy_basis": json.dumps(_entropy_bases(done)),
        # per-cell provenance (cells collected before it was recorded count as "unrecorded")
        **_cell_text_counts(done.values()),
    }


def _cell_n_bytes(key: CellKey, ds: xr.Dataset) -> tuple[int, bool]:
    """Return a cell's ``n_bytes`` and whether it was derived (older cell files lack it).

    -1 where it can be neither read nor derived (:func:`collect.carriers.derived_n_bytes`).
    """
    if "n_bytes" in ds:
        return int(ds["n_bytes"]), False
    derived = derived_n_bytes(key.modules, int(ds["n_params"]), str(ds.attrs.get("dtype", "")))
    return (-1 if derived is None else derived), True


def _entropy_bases(cells: dict[CellKey, xr.Dataset]) -> dict[str, str]:
    """How each (task, random_ratio) of the merged cells got its ``entropy_bits``."""
    bases: dict[str, str] = {}
    for key, ds in cells.items():
        label = f"{key.model} {key.task} random_ratio={key.random_ratio:g}"
        bases.setdefault(label, str(ds.attrs.get("entropy_basis", "not recorded (older cell)")))
    return bases


def save_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write the merged dataset atomically: NetCDF-4, or NetCDF-3 without netCDF4 installed.

    NetCDF-4 is compressed: its token arrays are mostly NaN padding and shrink about tenfold.
    """
    return _write_atomic(Path(path), _netcdf_writer(ds))
