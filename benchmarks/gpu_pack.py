"""Move files to and from a machine that takes a limited number and size of files per call.

The GPU machine of this project (benchmarks/GPU_RUN.md) receives at most 64 MiB per call and
returns at most 8 files of at most 16 MiB. This script splits a large file into parts with
their sha256 (``split``), reassembles and verifies them (``join``), packs a folder into a few
compressed parts (``pack``) and unpacks them (``unpack``), and says what one call would carry
(``payload``: the files git tracks or would track, plus the carried paths). It needs only the
standard library and git.

    python benchmarks/gpu_pack.py split MODEL.gguf --parts 2 -o .gpu_carry/model  # p0/, p1/
    python benchmarks/gpu_pack.py split MODEL.gguf --parts auto --also .whl -o .gpu_carry/model
    python benchmarks/gpu_pack.py join /tmp/p0 .gpu_carry/model/p1 -o /tmp/MODEL.gguf
    python benchmarks/gpu_pack.py pack runs/gpu -o $OUT --max-files 6 --max-mib 16
    python benchmarks/gpu_pack.py unpack PACK_DIR -o runs/gpu
    python benchmarks/gpu_pack.py payload --carry .gpu_carry/model/p1 .whl   # before a call
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

MIB = 1 << 20
SUMS = "SHA256SUMS"
#: name of the compressed archive ``pack`` writes (split into ``.partNN`` files)
ARCHIVE = "results.tar.gz"
#: Room (MiB) ``split --parts auto`` leaves in each call for what the tree gains before the lease.
MARGIN_MIB = 1.0


class PackError(ValueError):
    """A part is missing or damaged, or the files do not fit the limits."""


def sha256(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def _write_sums(folder: Path, sums: dict[str, str]) -> Path:
    """Add ``name -> sha256`` lines to ``folder/SHA256SUMS`` (the format ``sha256sum -c`` reads)."""
    path = folder / SUMS
    old = _read_sums(path) if path.exists() else {}
    old.update(sums)
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(old.items())))
    return path


def _read_sums(path: Path) -> dict[str, str]:
    """Read a ``SHA256SUMS`` file into ``{name: sha256}``."""
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest
    return sums


def part_name(name: str, index: int) -> str:
    """Return the file name of part ``index`` of ``name`` (``name.part00``, ...)."""
    return f"{name}.part{index:02d}"


def split_file(path: str | Path, out_dir: str | Path, *, parts: int) -> list[Path]:
    """Split a file into ``parts`` nearly equal parts, recording every sha256.

    Parameters
    ----------
    path : path
        The file to split.
    out_dir : path
        Part ``i`` goes to its own folder ``out_dir/p<i>/NAME.part<ii>``, so that each part
        can travel in a call of its own; every folder also gets ``SHA256SUMS`` with the sums of
        all parts and of the whole file (by its name). The parts and sums of an earlier split
        of the same file there are removed first (it may have had more parts).
    parts : int
        Number of parts (>= 1).

    Returns
    -------
    list of Path
        The parts, in order.
    """
    path, out_dir = Path(path), Path(out_dir)
    if parts < 1:
        raise PackError(f"parts must be >= 1, got {parts}.")
    if not path.is_file():
        raise PackError(f"{path} is not a file; give the file to split.")
    for earlier in out_dir.glob(f"p*/{path.name}.part*"):  # an earlier split of this file
        earlier.unlink()
        sums_file = earlier.parent / SUMS
        if sums_file.exists():  # keep only the sums of other files
            kept = {k: v for k, v in _read_sums(sums_file).items() if not k.startswith(path.name)}
            sums_file.unlink()
            if kept:
                _write_sums(earlier.parent, kept)
        if not any(earlier.parent.iterdir()):
            earlier.parent.rmdir()
    size = path.stat().st_size
    chunk = max(1, math.ceil(size / parts))
    written = []
    with open(path, "rb") as src:
        for index in range(parts):
            folder = out_dir / f"p{index}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / part_name(path.name, index)
            _copy_bytes(src, target, chunk)
            written.append(target)
    sums = {p.name: sha256(p) for p in written}
    sums[path.name] = sha256(path)
    for part in written:
        _write_sums(part.parent, sums)
    return written


def parts_needed(
    file_bytes: int,
    tree_bytes: int,
    extra_bytes: int = 0,
    *,
    limit_mib: float = 64.0,
    margin_mib: float = MARGIN_MIB,
) -> int:
    """Fewest parts of a file such that each call, carrying one part, stays under the limit.

    Every call carries the working tree; the last also carries ``extra_bytes`` (the wheels),
    so the count is taken against the fuller call.

    Parameters
    ----------
    file_bytes : int
        Size of the file to split.
    tree_bytes : int
        What travels with every call (:func:`payload`'s ``tree``).
    extra_bytes : int
        What travels with the last part only.
    limit_mib : float
        The call's limit.
    margin_mib : float
        Room kept free in each call for files the tree gains between the split and the calls.

    Returns
    -------
    int
        The number of parts for :func:`split_file`.

    Raises
    ------
    PackError
        The tree and the extras leave no room for any part.
    """
    room = math.floor((limit_mib - margin_mib) * MIB) - tree_bytes - extra_bytes
    if room <= 0:
        raise PackError(
            f"a call carries {(tree_bytes + extra_bytes) / MIB:.1f} MiB before any part (tree "
            f"{tree_bytes / MIB:.1f} MiB), which leaves nothing of the {limit_mib:g} MiB limit "
            f"(less a {margin_mib:g} MiB margin) for the file: make the tree smaller."
        )
    return max(1, math.ceil(file_bytes / room))


def _copy_bytes(src: io.BufferedReader, target: Path, count: int) -> None:
    """Copy the next ``count`` bytes of ``src`` into a new file ``target``."""
    with open(target, "wb") as dst:
        while count > 0 and (block := src.read(min(MIB, count))):
            dst.write(block)
            count -= len(block)


def join_parts(folders: Iterable[str | Path], name: str, out_path: str | Path) -> Path:
    """Reassemble ``name`` from its parts, found in any of ``folders``, and verify it.

    Every part's sha256 and the whole file's are checked against the ``SHA256SUMS`` of the
    folders. Raises :class:`PackError` naming what is missing or damaged.
    """
    folders = [Path(f) for f in folders]
    sums: dict[str, str] = {}
    for folder in folders:
        if (folder / SUMS).exists():
            sums.update(_read_sums(folder / SUMS))
    if name not in sums:
        raise PackError(
            f"no sha256 of {name} in any {SUMS} of {[str(f) for f in folders]}; give the "
            f"folders that `split` wrote (each holds a copy of {SUMS})."
        )
    wanted = sorted(n for n in sums if n.startswith(f"{name}.part"))
    found = {}
    for part in wanted:
        where = [f / part for f in folders if (f / part).is_file()]
        if not where:
            raise PackError(
                f"part {part} is in none of {[str(f) for f in folders]}; every part must be "
                "on this machine (a machine given back between calls loses what the first "
                "call brought: send the parts again)."
            )
        if sha256(where[0]) != sums[part]:
            raise PackError(f"{where[0]} is damaged (sha256 differs from {SUMS}); send it again.")
        found[part] = where[0]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as dst:
        for part in wanted:
            with open(found[part], "rb") as src:
                while block := src.read(MIB):
                    dst.write(block)
    if sha256(out_path) != sums[name]:
        raise PackError(f"{out_path} does not match the sha256 of {name}; the parts do not fit.")
    return out_path


def pack_dir(
    src: str | Path,
    out_dir: str | Path,
    *,
    max_files: int,
    max_mib: float,
    drop_order: Iterable[str] = (),
) -> dict:
    """Pack a folder into ``results.tar.gz`` parts of at most ``max_mib`` MiB, plus sums.

    Parameters
    ----------
    src : path
        The folder to pack (paths inside the archive are relative to it).
    out_dir : path
        Where the parts and ``SHA256SUMS`` go.
    max_files : int
        How many files the pack may use in all (the parts and ``SHA256SUMS``).
    max_mib : float
        Largest size of one part, in MiB.
    drop_order : iterable of str
        Glob patterns (relative to ``src``) of files to leave out, one pattern at a time in
        this order, while the archive does not fit; what is left out is reported.

    Returns
    -------
    dict
        ``parts`` (paths), ``archive_bytes``, ``left_out`` (relative paths not packed).

    Raises
    ------
    PackError
        If the archive does not fit even after every pattern of ``drop_order`` is left out.
    """
    src, out_dir = Path(src), Path(out_dir)
    limit = int(max_mib * MIB)
    n_parts = max_files - 1  # one file is SHA256SUMS
    if n_parts < 1 or limit < 1:
        raise PackError(f"need max_files >= 2 and max_mib > 0, got {max_files}, {max_mib}.")
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    left_out: list[str] = []
    patterns = list(drop_order)
    while True:
        data = _archive(src, files)
        if len(data) <= n_parts * limit:
            break
        if not patterns:
            raise PackError(
                f"{src} packs into {len(data) / MIB:.1f} MiB, more than {n_parts} parts of "
                f"{max_mib:g} MiB even without {left_out or 'anything'}; pack less."
            )
        pattern = patterns.pop(0)
        dropped = {f for f in files if f.match(pattern)}
        left_out += [str(f) for f in sorted(dropped)]
        files = [f for f in files if f not in dropped]
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, start in enumerate(range(0, max(len(data), 1), limit)):
        part = out_dir / part_name(ARCHIVE, index)
        part.write_bytes(data[start : start + limit])
        parts.append(part)
    _write_sums(out_dir, {p.name: sha256(p) for p in parts})
    return {"parts": parts, "archive_bytes": len(data), "left_out": left_out}


def _archive(src: Path, files: list[Path]) -> bytes:
    """Return a gzip-compressed tar of ``files`` (relative to ``src``).

    gzip rather than xz: it compresses NaN-padded token arrays about as well and far faster
    (measured here on 75 MiB of synthetic padded arrays: 6.2 MiB in 0.7 s, against 5.9 MiB
    in 8.8 s for xz preset 6).
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for rel in files:
            tar.add(src / rel, arcname=str(rel))
    return buffer.getvalue()


def unpack(pack_dirs: Iterable[str | Path], dest: str | Path) -> list[str]:
    """Verify and unpack what :func:`pack_dir` wrote (parts may sit in several folders).

    Returns the relative paths unpacked into ``dest``.
    """
    pack_dirs = [Path(d) for d in pack_dirs]
    sums: dict[str, str] = {}
    for folder in pack_dirs:
        if (folder / SUMS).exists():
            sums.update(_read_sums(folder / SUMS))
    wanted = sorted(n for n in sums if n.startswith(f"{ARCHIVE}.part"))
    if not wanted:
        raise PackError(f"no {ARCHIVE} parts listed in a {SUMS} of {[str(d) for d in pack_dirs]}.")
    data = bytearray()
    for part in wanted:
        where = [d / part for d in pack_dirs if (d / part).is_file()]
        if not where:
            raise PackError(f"part {part} is missing from {[str(d) for d in pack_dirs]}.")
        if sha256(where[0]) != sums[part]:
            raise PackError(f"{where[0]} is damaged (sha256 differs from {SUMS}).")
        data += where[0].read_bytes()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:gz") as tar:
        names = tar.getnames()
        tar.extractall(dest, filter="data")
    return names


def _tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def payload(repo: str | Path, carry: Iterable[str | Path] = (), *, limit_mib: float = 64.0):
    """Bytes one device call would carry: the working tree as git sees it, plus ``carry``.

    The device copies the tracked files and the untracked ones git does not ignore
    (``git ls-files --cached --others --exclude-standard``), and each carried path.

    Parameters
    ----------
    repo : str or Path
        The repository root.
    carry : iterable of str or Path
        Ignored paths, relative to ``repo``, that the call names in ``carry``.
    limit_mib : float
        The call's limit.

    Returns
    -------
    dict
        ``tree`` and ``carry`` (path → bytes) and ``total`` in bytes.

    Raises
    ------
    PackError
        A carried path is missing, or the total is over ``limit_mib``.
    """
    repo = Path(repo)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    files = [repo / name.decode() for name in listed if name]
    tree = sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())
    carried = {}
    for path in map(Path, carry):
        if not (repo / path).exists():
            raise PackError(f"carry path {path} does not exist under {repo}; build it first.")
        carried[str(path)] = _tree_bytes(repo / path)
    total = tree + sum(carried.values())
    if total > limit_mib * MIB:
        raise PackError(
            f"the call would carry {total / MIB:.1f} MiB (tree {tree / MIB:.1f} MiB, carried "
            f"{sum(carried.values()) / MIB:.1f} MiB), over its {limit_mib:g} MiB: split the "
            "model into more parts (split --parts 3) or leave untracked files out."
        )
    return {"tree": tree, "carry": carried, "total": total}


def _split_command(args: argparse.Namespace) -> None:
    """``split``: a fixed number of parts, or the fewest that fit (``--parts auto``)."""
    if args.parts == "auto":
        if not args.file.is_file():
            raise PackError(f"{args.file} is not a file; give the file to split.")
        info = payload(args.repo, args.also, limit_mib=float("inf"))
        extra = sum(info["carry"].values())
        parts = parts_needed(
            args.file.stat().st_size, info["tree"], extra, limit_mib=args.limit_mib
        )
    elif args.parts.isdigit():
        parts = int(args.parts)
    else:
        raise PackError(f"--parts takes a whole number or 'auto', got {args.parts!r}.")
    for part in split_file(args.file, args.out, parts=parts):
        print(f"{part} {part.stat().st_size / MIB:.1f} MiB")
    if args.parts == "auto":
        carried = " ".join([f"p{parts - 1}", *map(str, args.also)])
        stash = f"stash p0-p{parts - 2} in calls 1-{parts - 1}, then " if parts > 1 else ""
        print(f"{parts} parts (tree {info['tree'] / MIB:.1f} MiB): {stash}carry {carried}")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``split``, ``join``, ``pack``, ``unpack``, ``payload``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="split a file into parts with their sha256")
    p.add_argument("file", type=Path)
    p.add_argument(
        "--parts",
        required=True,
        help="number of parts, or 'auto': the fewest with which each call fits (see payload)",
    )
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
    p.add_argument("--also", nargs="*", default=[], help="paths the last call carries too (.whl)")
    p.add_argument("--limit-mib", type=float, default=64.0)
    p = sub.add_parser("join", help="reassemble a split file and check its sha256")
    p.add_argument("folders", type=Path, nargs="+", help="folders holding the parts and sums")
    p.add_argument("-o", "--out", type=Path, required=True, help="the reassembled file")
    p.add_argument("--name", help="the file's name in SHA256SUMS (default: the -o file's name)")
    p = sub.add_parser("pack", help="pack a folder into a few compressed parts")
    p.add_argument("folder", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--max-files", type=int, default=8)
    p.add_argument("--max-mib", type=float, default=16.0)
    p = sub.add_parser("unpack", help="check and unpack what `pack` wrote")
    p.add_argument("folders", type=Path, nargs="+")
    p.add_argument("-o", "--out", type=Path, required=True)
    p = sub.add_parser("payload", help="bytes one device call would carry; fails over the limit")
    p.add_argument("--carry", nargs="*", default=[], help="the call's carried paths")
    p.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
    p.add_argument("--limit-mib", type=float, default=64.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "split":
            _split_command(args)
        elif args.command == "join":
            path = join_parts(args.folders, args.name or args.out.name, args.out)
            print(f"{path}: sha256 verified")
        elif args.command == "pack":
            info = pack_dir(args.folder, args.out, max_files=args.max_files, max_mib=args.max_mib)
            print(f"{len(info['parts'])} parts, {info['archive_bytes'] / MIB:.1f} MiB")
        elif args.command == "unpack":
            names = unpack(args.folders, args.out)
            print(f"unpacked {len(names)} files into {args.out}")
        else:
            info = payload(args.repo, args.carry, limit_mib=args.limit_mib)
            for path, size in info["carry"].items():
                print(f"carry {path}: {size / MIB:.1f} MiB")
            print(
                f"tree {info['tree'] / MIB:.1f} MiB; total {info['total'] / MIB:.1f} MiB "
                f"of {args.limit_mib:g}"
            )
    except PackError as err:
        print(f"gpu_pack: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
