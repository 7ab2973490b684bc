"""Rewrite NetCDF files compressed, each value checked: ``collect compress PATH...``.

Cell files written before ``collect`` compressed them (and datasets written on a machine
without netCDF4) hold their loss curves and per-token arrays uncompressed. This rewrites them
with :func:`collect.store.compressed_encoding`, keeping every value and attribute: a file is
replaced only after the rewritten copy has been read back and found to hold the same values
(:func:`collect.store.data_checksum`), the same attributes and the same variables, and only
when it is smaller. Every replacement is atomic, so an interrupted run leaves each file either
as it was or compressed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

import xarray as xr
from tqdm.auto import tqdm

from collect.errors import CollectError
from collect.store import _netcdf_writer, data_checksum, netcdf_engine


@dataclasses.dataclass(frozen=True)
class Compressed:
    """What :func:`compress_file` did to one file.

    Attributes
    ----------
    path : Path
        The file.
    before, after : int
        Its size in bytes before, and the rewritten copy's size (``after == before`` where
        the copy was not smaller and the file was kept as it was).
    replaced : bool
        Whether the file now holds the compressed copy.
    """

    path: Path
    before: int
    after: int
    replaced: bool


def netcdf_files(paths: Iterable[str | Path]) -> list[Path]:
    """List the ``.nc`` files named by ``paths``: files as given, folders searched recursively.

    Raises
    ------
    CollectError
        A path that does not exist, a file that is not ``.nc``, or a folder with no ``.nc``
        file: before any file is touched.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.nc") if p.is_file())
            if not inside:
                raise CollectError(f"{path} holds no .nc file; give a sweep folder or .nc files.")
            found.extend(inside)
        elif path.is_file() and path.suffix == ".nc":
            found.append(path)
        elif path.exists():
            raise CollectError(f"{path} is not a NetCDF file (.nc); give .nc files or folders.")
        else:
            raise CollectError(f"{path} does not exist; give .nc files or folders holding them.")
    return list(dict.fromkeys(found))  # a file named twice (itself and its folder) once


def _load(path: Path) -> xr.Dataset:
    """Read a NetCDF file whole, or say which file could not be read."""
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except Exception as exc:  # noqa: BLE001 - OSError (HDF error), ValueError, ...
        raise CollectError(
            f"{path} could not be read as NetCDF ({type(exc).__name__}: {exc}); nothing was "
            "written to it. Move it away or give the other paths only."
        ) from None


def _same_content(a: xr.Dataset, b: xr.Dataset) -> bool:
    """Tell whether two datasets hold the same variables (names, dimensions), values and attrs."""
    dims = {name: var.dims for name, var in a.variables.items()}
    return (
        dims == {name: var.dims for name, var in b.variables.items()}
        and data_checksum(a) == data_checksum(b)
        and a.attrs.keys() == b.attrs.keys()
        and all(str(a.attrs[k]) == str(b.attrs[k]) for k in a.attrs)
    )


def compress_file(path: str | Path) -> Compressed:
    """Rewrite one NetCDF file compressed, if that makes it smaller and changes no value.

    Raises
    ------
    CollectError
        The file cannot be read, or its rewritten copy does not read back the same (the
        file is then left as it was).
    """
    path = Path(path)
    before = os.stat(path)
    ds = _load(path)
    copy = path.with_name(f".{path.name}.{os.getpid()}.compressed")
    try:
        _netcdf_writer(ds)(copy)
        if not _same_content(ds, _load(copy)):
            raise CollectError(
                f"{path}: its compressed copy does not read back the same values; the file "
                "was left as it was (please report this)."
            )
        after = copy.stat().st_size
        now = os.stat(path)
        unchanged = (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        if after >= before.st_size or not unchanged:  # not smaller, or rewritten meanwhile
            return Compressed(path, before.st_size, before.st_size, False)
        os.replace(copy, path)  # atomic: the copy lies beside the file
        return Compressed(path, before.st_size, after, True)
    finally:
        copy.unlink(missing_ok=True)


def compress_paths(paths: Iterable[str | Path], *, progress: bool = True) -> list[Compressed]:
    """Compress every ``.nc`` file named by ``paths`` (folders searched recursively).

    Raises
    ------
    CollectError
        Without the netCDF4 package (NetCDF-3 has no compression), or for a bad path, before
        any file is touched; for a file that cannot be read, when it is reached.
    """
    if netcdf_engine() != "netcdf4":
        raise CollectError(
            "compressing NetCDF files needs the netCDF4 package (NetCDF-3, the only format "
            "written without it, has no compression); install it: `pip install netCDF4`."
        )
    files = netcdf_files(paths)
    bar = tqdm(files, desc="compressing", unit="file", disable=not progress)
    return [compress_file(path) for path in bar]
