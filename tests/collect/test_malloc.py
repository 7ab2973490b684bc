"""``collect.malloc``: freed memory stays in the heap (glibc), or glibc's defaults on request.

Each check runs in a fresh process: the thresholds are process-wide and set once.
"""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's",
)

#: is a 64 MiB tensor a block of its own mapping (glibc's mallinfo2: mapped blocks, added)?
PROBE = """
import ctypes, torch
from collect.malloc import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
kept = keep_freed_memory()
before = libc.mallinfo2().hblks
held = torch.ones(16 * 2**20)  # 64 MiB
print(kept, libc.mallinfo2().hblks - before)
"""


def _probe(**env: str) -> tuple[str, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    kept, mapped = out.stdout.split()
    return kept, int(mapped)


@glibc
def test_large_tensors_come_from_the_heap_once_kept():
    assert _probe(COLLECT_MALLOC="keep") == ("True", 0)


@glibc
def test_system_leaves_glibcs_defaults_which_map_large_tensors():
    kept, mapped = _probe(COLLECT_MALLOC="system")
    assert kept == "False" and mapped >= 1


def test_a_bad_setting_is_refused_before_any_cell_trains(tmp_path, tiny_sweep):
    import json

    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(tiny_sweep()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLLECT_MALLOC": "jemalloc"}
    cmd = [sys.executable, "-m", "collect", "run", str(sweep), "--out", str(tmp_path / "o")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "COLLECT_MALLOC takes 'keep'" in out.stderr and "got 'jemalloc'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list((tmp_path / "o").glob("cells/*.nc"))


def test_the_help_names_every_environment_variable_collect_reads():
    import re

    from collect import gguf_cache, malloc, models
    from collect.cli import EPILOG

    read = {malloc.ENV, gguf_cache.CACHE_ENV, models.SMOLLM2_GGUF_ENV}
    source = "\n".join(p.read_text() for p in (ROOT / "collect").rglob("*.py"))
    literal = set(re.findall(r"environ(?:\.get)?\(\s*\"(COLLECT_\w+)\"", source))
    listed = set(re.findall(r"^  (COLLECT_\w+)", EPILOG.split("environment:")[1], re.M))
    assert read | literal == listed
