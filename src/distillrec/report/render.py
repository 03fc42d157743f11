"""One document, two renderings: Markdown (images as relative paths) and self-contained HTML (images inlined).

A report is a list of :class:`Section` holding blocks: :class:`Table`, :class:`Image`, :class:`Text` (a paragraph)
and :class:`Code` (preformatted). Both renderers walk the same list, so the two files never disagree.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillrec.report.tables import cell


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Image:
    path: Path  # absolute or relative to the working directory; rendered relative to the report
    caption: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Table | Image | Text | Code] = field(default_factory=list)


def _md_cell(value: Any) -> str:
    return cell(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: Sequence[Section], base: Path) -> str:
    """Markdown with image links relative to ``base`` (the folder report.md is written to)."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines.append("| " + " | ".join(map(_md_cell, block.headers)) + " |")
                lines.append("|" + "|".join("---" for _ in block.headers) + "|")
                lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            elif isinstance(block, Image):
                rel = Path(block.path).resolve().relative_to(Path(base).resolve()).as_posix()
                lines.append(f"![{block.caption}]({rel})")
                lines.append(f"*{block.caption}*")
            elif isinstance(block, Code):
                lines += ["```", block.text.rstrip(), "```"]
            else:
                lines.append(block.text)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em;
     margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
pre { background: #f7f7f7; padding: .8em; white-space: pre-wrap; font-size: .8em; border: 1px solid #eee; }
.wide { overflow-x: auto; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(title: str, sections: Sequence[Section]) -> str:
    """A single HTML file: inline CSS, every image a base64 PNG data URI (nothing to fetch)."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{esc(str(h))}</th>" for h in block.headers)
                body = "".join("<tr>" + "".join(f"<td>{esc(cell(v))}</td>" for v in row) + "</tr>"
                               for row in block.rows)
                parts.append(f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                             "</table></div>")
            elif isinstance(block, Image):
                parts.append(f'<figure><img src="{_data_uri(block.path)}" alt="{esc(block.caption)}">'
                             f"<figcaption>{esc(block.caption)}</figcaption></figure>")
            elif isinstance(block, Code):
                parts.append(f"<pre>{esc(block.text)}</pre>")
            else:
                parts.append(f"<p>{esc(block.text)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
