"""The worked examples in docs/lawfit.md run as written."""

import re
import warnings
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "lawfit.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_doc_example_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lawfit.forms import _REGISTRY

    _REGISTRY.pop("chinchilla_like", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(BLOCKS[i], f"docs/lawfit.md block {i}", "exec"), {})
