"""The signatures written in the docs match the code: names and defaults.

A signature in the docs is a backticked call that shows the keyword-only marker, e.g.
``shared_exponents(data, by="model", *, form="power_law", ...)``. Each keyword it shows
must be a parameter of the function, with the default the docs say.
"""

import ast
import importlib
import importlib.util
import inspect
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Where a name in a signature is looked up, in order.
MODULES = (
    "lawfit",
    "lawfit.budget",
    "lawfit.plotting",
    "lawfit.report",
    "collect.tasks",
    "collect",
)
SIGNATURE = re.compile(r"`(?:[\w.]+\.)?(\w+)\(([^`]*?\*,[^`]*?)\)`", re.S)


def _function(name: str):
    """The function ``name`` of the packages, else of a ``paper_figures`` script."""
    for module in MODULES:
        obj = getattr(importlib.import_module(module), name, None)
        if callable(obj):
            return obj
    for path in sorted((ROOT / "paper_figures").glob("*.py")):
        if f"def {name}(" in path.read_text():
            spec = importlib.util.spec_from_file_location(f"_doc_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.parent))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent))
            return getattr(module, name)
    return None


def _top_level_parts(body: str) -> list[str]:
    """Split a signature's text at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    return [*parts, body[start:]]


def _documented_defaults(body: str) -> dict[str, str]:
    """``keyword -> default text`` of a signature's ``name=value`` parts (the rest skipped)."""
    out = {}
    for part in _top_level_parts(" ".join(body.split())):
        name, eq, value = part.strip().partition("=")
        if eq and name.isidentifier():
            out[name] = value.strip()
    return out


def _signatures() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for match in SIGNATURE.finditer(page.read_text()):
            found.append((page.name, match.group(1), match.group(2)))
    return found


SIGNATURES = _signatures()


def test_the_docs_hold_signatures_to_check():
    names = {name for _, name, _ in SIGNATURES}
    assert {"fit", "shared_exponents", "compare"} <= names, names


@pytest.mark.parametrize(("page", "name", "body"), SIGNATURES, ids=lambda v: str(v)[:40])
def test_a_documented_signature_has_the_code_defaults(page, name, body):
    func = _function(name)
    assert func is not None, f"{page}: `{name}(...)` names no function of {MODULES}"
    params = inspect.signature(func).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for keyword, text in _documented_defaults(body).items():
        if keyword not in params and open_ended:
            continue  # taken by **kwargs (e.g. capacity_by_form's length=/rank=)
        assert keyword in params, f"{page}: {name}() has no parameter {keyword!r}"
        default = params[keyword].default
        assert default is not inspect.Parameter.empty, (
            f"{page}: {name}({keyword}=...) is documented with a default; it has none"
        )
        try:
            documented = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue  # a name, an expression or prose ("ln 2", "..."): not a literal
        if isinstance(default, tuple) and isinstance(documented, list):
            documented = tuple(documented)
        assert documented == default, (
            f"{page}: {name}({keyword}={text}) but the code's default is {default!r}"
        )
