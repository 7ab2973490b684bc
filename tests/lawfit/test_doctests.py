"""Docstring examples of the public modules run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name", ["lawfit.forms", "lawfit.fitting", "lawfit.carriers", "lawfit.shared"]
)
def test_doctests(name):
    mod = importlib.import_module(name)
    failed, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert failed == 0
