"""Render a report's blocks: the :class:`Report` object, Markdown and HTML, the output format."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lawfit import _validate as V
from lawfit.errors import LawfitError


@dataclass(frozen=True)
class Report:
    """A rendered-on-demand analysis report.

    Attributes
    ----------
    blocks : tuple
        ``(kind, payload)`` pairs: ``("h1"|"h2"|"h3", str)``, ``("p", str)``,
        ``("note", str)``, ``("pre", str)``, ``("table", pandas.DataFrame)`` or
        ``("details", (title, text))`` (a collapsed block of preformatted text).
    results : dict
        The result objects by setting label and analysis (for programmatic use).
    """

    blocks: tuple
    results: dict

    def to_markdown(self) -> str:
        """Render as GitHub-flavoured Markdown.

        Returns
        -------
        str
            The report.
        """
        out = []
        for kind, x in self.blocks:
            if kind in ("h1", "h2", "h3"):
                out.append("#" * int(kind[1]) + " " + x)
            elif kind == "p":
                out.append(x)
            elif kind == "note":
                out.append(f"> **Note.** {x}")
            elif kind == "pre":
                out.append("```\n" + x + "\n```")
            elif kind == "table":
                out.append(_md_table(x))
            elif kind == "details":
                title, text = x
                out.append(
                    f"<details><summary>{html.escape(title)}</summary>\n\n```\n{text}"
                    "\n```\n\n</details>"
                )
            out.append("")
        return "\n".join(out)

    def to_html(self) -> str:
        """Render as a standalone HTML page.

        Returns
        -------
        str
            The report.
        """
        body = []
        for kind, x in self.blocks:
            if kind in ("h1", "h2", "h3"):
                body.append(f"<{kind}>{html.escape(x)}</{kind}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(x)}</p>")
            elif kind == "note":
                body.append(f'<p class="note"><b>Note.</b> {html.escape(x)}</p>')
            elif kind == "pre":
                body.append(f"<pre>{html.escape(x)}</pre>")
            elif kind == "table":
                body.append(
                    x.to_html(index=False, na_rep="", float_format=_fmt, border=0, classes="tbl")
                )
            elif kind == "details":
                title, text = x
                body.append(
                    f"<details><summary>{html.escape(title)}</summary>"
                    f"<pre>{html.escape(text)}</pre></details>"
                )
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            ".tbl{border-collapse:collapse;font-size:90%}"
            ".tbl td,.tbl th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
            ".note{color:#7a4b00}pre{background:#f6f6f6;padding:8px}"
        )
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>lawfit report</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>"
        )

    def save(self, path, format: str | None = None) -> None:  # noqa: A002
        """Write the report; format from the suffix (:func:`report_format`) unless given.

        Parameters
        ----------
        path : str or path-like
            Output file.
        format : {"md", "html"}, optional
            Output format.
        """
        fmt = report_format(path, format)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_html() if fmt == "html" else self.to_markdown())


#: the suffixes a report's format is read from
REPORT_SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


def report_format(path, format: str | None = None) -> str:  # noqa: A002
    """Return the format a report written to ``path`` takes: ``format``, else its suffix's.

    Parameters
    ----------
    path : str or path-like
        The output file.
    format : {"md", "html"}, optional
        The format asked for; then the suffix does not matter.

    Returns
    -------
    str
        ``"md"`` or ``"html"``.

    Raises
    ------
    LawfitError
        An unknown ``format``, or none with a suffix that names neither format.
    """
    if format is not None:
        return V.one_of(format, "format", ("md", "html"))
    suffix = Path(path).suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise LawfitError(
            f"{path}: the format is taken from the suffix (.md or .html), and "
            f"{suffix or 'no suffix'} is neither; name the file .md or .html, or give the "
            "format (format='md', lawfit report --format md)."
        )
    return REPORT_SUFFIXES[suffix]


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "inf" if v == np.inf else ("-inf" if v == -np.inf else "")
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "_(empty)_"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
