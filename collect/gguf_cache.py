"""Convert a GGUF checkpoint once into a plain Hugging Face folder, and load that instead.

transformers reads a GGUF file by parsing its metadata in Python, field by field (the
tokenizer's 49,152 tokens and merges of SmolLM2), and dequantizing every tensor. Measured on
this project's CPU machine for SmolLM2-135M-Instruct: 9.9 s for the tokenizer alone, 12.7 s
for the config and tokenizer (``collect plan``, the preflight), 22.6 s for the model, paid
again by every process that loads it: each worker, the GPU job's paper-loop timing and its
sweep. The first full load of a GGUF file saves what it produced (the dequantized weights as
float32 safetensors, the config, the tokenizer) in a folder keyed by the file's sha256 and the
transformers version; later loads read that folder in about a second.

The saved weights are the dequantized values themselves, so a model loaded from the folder
equals the one loaded from the GGUF file bit for bit, in float32 and when cast to bfloat16,
and so do its tokenizer and chat template (``tests/collect/test_gguf_cache.py``).

Where: ``$COLLECT_MODEL_CACHE`` if set, else ``$XDG_CACHE_HOME/lawfit-collect/models``, else
``~/.cache/lawfit-collect/models`` (about 520 MB for SmolLM2-135M). ``COLLECT_MODEL_CACHE=off``
loads every GGUF file directly and writes nothing. Deleting the folder is always safe.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collect.errors import CollectError

#: environment variable: the cache folder, or ``off`` (also ``0``, ``no``, ``none``) for none
CACHE_ENV = "COLLECT_MODEL_CACHE"
#: written last into a finished conversion; names the GGUF file it came from
MANIFEST = "gguf_source.json"
_OFF = {"off", "0", "no", "none", "false"}


def cache_root() -> Path | None:
    """Return the folder conversions live in, or None when ``COLLECT_MODEL_CACHE`` is off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lawfit-collect" / "models"


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file (hex), computed once per (path, size, modification time)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def conversion_dir(gguf: Path, root: Path) -> Path:
    """Where the conversion of ``gguf`` goes: its name, sha256 and the transformers version."""
    import transformers

    sha = file_sha256(gguf)
    return root / f"{Path(gguf).stem}-{sha[:16]}-transformers-{transformers.__version__}"


def find_conversion(gguf: Path) -> Path | None:
    """Return the finished conversion of ``gguf`` in the cache, or None (none, or caching off).

    A folder counts only once its manifest names this file's sha256: a conversion that was
    interrupted never reaches its final name (it is written elsewhere and renamed).
    """
    root = cache_root()
    if root is None:
        return None
    folder = conversion_dir(gguf, root)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return folder if manifest.get("sha256") == file_sha256(gguf) else None


def convert(gguf: Path) -> Path | None:
    """Load ``gguf`` once in float32 and save it as a plain folder in the cache.

    Parameters
    ----------
    gguf : Path
        The GGUF file.

    Returns
    -------
    Path or None
        The finished folder; None when caching is off or the folder cannot be written (a
        warning says why, and the caller loads the GGUF file directly).

    Raises
    ------
    CollectError
        transformers cannot read the file.
    """
    root = cache_root()
    if root is None:
        return None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    dest = conversion_dir(gguf, root)
    print(
        f"collect: converting {gguf.name} once into {dest} (later loads take about a second; "
        f"{CACHE_ENV}=off turns this off)",
        file=sys.stderr,
    )
    source, kwargs = str(gguf.parent), {"gguf_file": gguf.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    except OSError as err:
        raise CollectError(f"could not read the GGUF file {gguf}: {err}") from err
    try:
        return save_conversion(model, tokenizer, dest, source_file=gguf)
    except OSError as err:
        warnings.warn(
            f"could not write the converted model to {dest} ({err}); loading {gguf.name} "
            f"directly instead (set {CACHE_ENV} to a writable folder, or to off)",
            stacklevel=2,
        )
        return None


def save_conversion(model: Any, tokenizer: Any, dest: Path, *, source_file: Path) -> Path:
    """Save a float32 model loaded from a GGUF file as a plain Hugging Face folder at ``dest``.

    The model's GGUF quantization record is dropped from the saved config (its weights are
    already dequantized; transformers refuses to save a model that carries it). The folder is
    written under a temporary name beside ``dest`` and renamed when complete, so a reader
    never sees half of it; when another process finished first, its folder is kept.

    Parameters
    ----------
    model : transformers PreTrainedModel
        In float32, as loaded from ``source_file``.
    tokenizer : transformers tokenizer
        Loaded from the same file.
    dest : Path
        The folder to create.
    source_file : Path
        The GGUF file (its name and sha256 go into the manifest).

    Returns
    -------
    Path
        ``dest``.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise CollectError(
            "save_conversion needs the model in float32 (the exact dequantized values); "
            "load the GGUF file with dtype=torch.float32"
        )
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True, assign=True)
    plain.tie_weights()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    work.chmod(0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
    try:
        plain.save_pretrained(work)
        tokenizer.save_pretrained(work)
        manifest = {
            "gguf": Path(source_file).name,
            "sha256": file_sha256(source_file),
            "bytes": Path(source_file).stat().st_size,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            work.rename(dest)
        except OSError:
            if not (dest / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
