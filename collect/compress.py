"""Rewrite a sweep's files compressed, each value checked: ``collect compress PATH...``.

Cell files written before ``collect`` compressed them (and datasets written on a machine
without netCDF4) hold their loss curves and per-token arrays uncompressed, and state files
(``.state.pt``, ``.partial.pt``) were plain ``torch.save`` archives. This rewrites both the
way ``collect`` writes them now (:func:`collect.store.compressed_encoding`,
:func:`collect.store.state_writer`), keeping every value: a file is replaced only after the
rewritten copy has been read back and found to hold the same content, and only when it is
smaller. Every replacement is atomic, so an interrupted run leaves each file either as it was
or compressed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import xarray as xr
from tqdm.auto import tqdm

from collect.errors import CollectError
from collect.store import (
    GZIP_MAGIC,
    _netcdf_writer,
    data_checksum,
    load_state_file,
    netcdf_engine,
    read_netcdf,
    state_writer,
)

#: the suffixes of the files ``collect compress`` rewrites: NetCDF cells and datasets, states
SUFFIXES = (".nc", ".pt")


@dataclasses.dataclass(frozen=True)
class Compressed:
    """What :func:`compress_file` did to one file.

    Attributes
    ----------
    path : Path
        The file.
    before, after : int
        Its size in bytes before, and the rewritten copy's size (``after == before`` where
        the file was kept as it was).
    replaced : bool
        Whether the file now holds the compressed copy.
    """

    path: Path
    before: int
    after: int
    replaced: bool


def compressible_files(paths: Iterable[str | Path]) -> list[Path]:
    """List the ``.nc`` and ``.pt`` files named by ``paths`` (folders searched recursively).

    Raises
    ------
    CollectError
        A path that does not exist, a file of another kind, or a folder holding none:
        before any file is touched.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
            if not inside:
                raise CollectError(
                    f"{path} holds no .nc or .pt file; give a sweep folder or its files."
                )
            found.extend(inside)
        elif path.is_file() and path.suffix in SUFFIXES:
            found.append(path)
        elif path.exists():
            raise CollectError(
                f"{path} is neither a NetCDF file (.nc) nor a state file (.pt); give those "
                "or folders holding them."
            )
        else:
            raise CollectError(f"{path} does not exist; give .nc/.pt files or folders.")
    return list(dict.fromkeys(found))  # a file named twice (itself and its folder) once


def _unreadable(path: Path, exc: Exception) -> CollectError:
    return CollectError(
        f"{path} could not be read ({type(exc).__name__}: {exc}); nothing was written to it. "
        "Move it away or give the other paths only."
    )


def _load_netcdf(path: Path) -> xr.Dataset:
    """Read a NetCDF file whole, or say which file could not be read."""
    ds, exc = read_netcdf(path)
    if ds is None:
        raise _unreadable(path, exc)
    return ds


def _load_state(path: Path) -> dict:
    """Read a state file, or say which file could not be read."""
    try:
        return load_state_file(path)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and gzip errors
        raise _unreadable(path, exc) from None


def _same_dataset(a: xr.Dataset, b: xr.Dataset) -> bool:
    """Tell whether two datasets hold the same variables (names, dimensions), values and attrs."""
    dims = {name: var.dims for name, var in a.variables.items()}
    return (
        dims == {name: var.dims for name, var in b.variables.items()}
        and data_checksum(a) == data_checksum(b)
        and a.attrs.keys() == b.attrs.keys()
        and all(str(a.attrs[k]) == str(b.attrs[k]) for k in a.attrs)
    )


def _same_payload(a: Any, b: Any) -> bool:
    """Tell whether two loaded states are equal: same structure, tensors equal bit for bit."""
    import torch

    if isinstance(a, dict):
        same_keys = isinstance(b, dict) and a.keys() == b.keys()
        return same_keys and all(_same_payload(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_payload, a, b))
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and (a.dtype, a.shape) == (b.dtype, b.shape)
            and torch.equal(_bits(a), _bits(b))
        )
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN


def _bits(tensor: Any) -> Any:
    """Return a tensor's bytes as a uint8 tensor (NaNs compare equal; any dtype and shape)."""
    import torch

    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _rewrite(path: Path) -> tuple[Callable[[Path], object], Callable[[Path], bool]] | None:
    """Return ``(write(copy), same(copy))`` for one file, or None where it is compressed."""
    if path.suffix == ".pt":
        with open(path, "rb") as stream:
            compressed = stream.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        if compressed:
            return None
        payload = _load_state(path)
        return state_writer(payload), lambda copy: _same_payload(payload, _load_state(copy))
    ds = _load_netcdf(path)
    return _netcdf_writer(ds), lambda copy: _same_dataset(ds, _load_netcdf(copy))


def compress_file(path: str | Path) -> Compressed:
    """Rewrite one NetCDF or state file compressed, if that makes it smaller and changes nothing.

    A file that changed while it was being compressed (a worker rewrote it) is kept as the
    worker left it.

    Raises
    ------
    CollectError
        The file cannot be read, or its rewritten copy does not read back the same (the
        file is then left as it was).
    """
    path = Path(path)
    before = os.stat(path)
    kept = Compressed(path, before.st_size, before.st_size, False)
    rewrite = _rewrite(path)
    if rewrite is None:
        return kept
    write, same = rewrite
    copy = path.with_name(f".{path.name}.{os.getpid()}.compressed")
    try:
        write(copy)
        if not same(copy):
            raise CollectError(
                f"{path}: its compressed copy does not read back the same; the file was left "
                "as it was (please report this)."
            )
        after = copy.stat().st_size
        now = os.stat(path)
        unchanged = (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        if after >= before.st_size or not unchanged:  # not smaller, or rewritten meanwhile
            return kept
        os.replace(copy, path)  # atomic: the copy lies beside the file
        return Compressed(path, before.st_size, after, True)
    finally:
        copy.unlink(missing_ok=True)


def compress_paths(paths: Iterable[str | Path], *, progress: bool = True) -> list[Compressed]:
    """Compress every ``.nc`` and ``.pt`` file named by ``paths`` (folders searched recursively).

    Raises
    ------
    CollectError
        Without the netCDF4 package (NetCDF-3 has no compression) where NetCDF files are
        named, or for a bad path, before any file is touched; for a file that cannot be read,
        when it is reached.
    """
    files = compressible_files(paths)
    if any(p.suffix == ".nc" for p in files) and netcdf_engine() != "netcdf4":
        raise CollectError(
            "compressing NetCDF files needs the netCDF4 package (NetCDF-3, the only format "
            "written without it, has no compression); install it: `pip install netCDF4`."
        )
    bar = tqdm(files, desc="compressing", unit="file", disable=not progress)
    return [compress_file(path) for path in bar]
