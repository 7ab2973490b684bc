"""Docstring examples of the public modules run."""

import doctest
import importlib

import pytest


# lawfit.fitting.driver defines fit(): doctest only finds the examples of the module that
# defines them, so the lawfit.fitting package alone would run none
@pytest.mark.parametrize(
    "name", ["lawfit.forms", "lawfit.fitting.driver", "lawfit.carriers", "lawfit.shared"]
)
def test_doctests(name):
    mod = importlib.import_module(name)
    failed, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert failed == 0
