"""Fixtures for every test: nothing a test runs writes outside its temporary folders."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_model_cache(tmp_path_factory):
    """Point collect's converted-model cache (collect.gguf_cache) at a session folder.

    A test that loads a GGUF model converts it there, not in the user's ~/.cache; subprocesses
    inherit the variable.
    """
    from collect.gguf_cache import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("model-cache"))
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def run_benchmark():
    """Run ``benchmarks/<script>`` with arguments, single-threaded; return the finished process."""
    import subprocess
    import sys
    from pathlib import Path

    def run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / script
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(
            [sys.executable, str(path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    return run
