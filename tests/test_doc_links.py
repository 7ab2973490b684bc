"""Every relative link in the README and docs/ reaches a file, and its #anchor a heading."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
FENCED = re.compile(r"```.*?```", re.S)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, punctuation dropped).

    Code spans keep their text and underscores stay (GitHub's slugger keeps letters, digits,
    ``_``, ``-`` and spaces); emphasis marks and backticks go.
    """
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Anchors of every heading of ``page`` (outside fenced code blocks)."""
    text = FENCED.sub("", page.read_text(encoding="utf-8"))
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def relative_links(page: Path) -> list[str]:
    """Link targets of ``page`` that point inside the repository."""
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    found = [a or b for a, b in LINK.findall(text)]
    return [t for t in found if not re.match(r"[a-z]+:", t) and not t.startswith("../shared")]


def test_anchor_rule_matches_github():
    assert github_anchor("The carrier sweep: where it stands") == (
        "the-carrier-sweep-where-it-stands"
    )
    assert github_anchor("Calibration: coverage of 95 % intervals for α and β") == (
        "calibration-coverage-of-95--intervals-for-α-and-β"
    )
    # code spans keep their text, underscores stay (they once lost both here)
    heading = "3. Capacity — `lawfit.predict_capacity`, `lawfit.bits_per_parameter`"
    assert github_anchor(heading) == "3-capacity--lawfitpredict_capacity-lawfitbits_per_parameter"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT)}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{page.name} has broken links:\n" + "\n".join(broken)
