"""Docstring examples of the public modules run."""

import doctest
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _modules_with_examples() -> list[str]:
    """Every lawfit module whose docstrings hold an example (``>>>``).

    doctest only finds the examples of the module that defines them, so a package that
    re-exports ``fit`` from ``lawfit.fitting.driver`` would run none: the modules are
    found by their files, not their packages.
    """
    files = sorted((ROOT / "lawfit").rglob("*.py"))
    return [
        ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for f in files
        if ">>>" in f.read_text()
    ]


MODULES = _modules_with_examples()


def test_the_modules_with_examples_are_found():
    assert {"lawfit.forms", "lawfit.fitting.driver", "lawfit.shared.driver"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    mod = importlib.import_module(name)
    failed, attempted = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert attempted > 0, f"{name} has '>>>' in its file but doctest ran no example"
    assert failed == 0
