"""The README's Python example runs as written on the shipped dataset."""

import re
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "the README lost its worked example"
    data = ROOT / "data" / "law_cpu_converged.nc"
    monkeypatch.chdir(tmp_path)  # were anything written, it would land here
    code = blocks[0].replace('"data/law_cpu_converged.nc"', repr(str(data)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "README.md", "exec"), {"print": lambda *a, **k: None})
    assert list(tmp_path.iterdir()) == []  # the example leaves no file behind
