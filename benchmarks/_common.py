"""Shared benchmark plumbing: each script owns one section of BENCHMARKS.md and rewrites it in place."""

from __future__ import annotations

import re
import time
from pathlib import Path

from distillrec.evaluation.cost import machine_info
from distillrec.io import write_text

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
DATA_ROOT = ROOT.parent / "shared" / "data"
HEADER = "# Benchmarks\n\nEvery section is written by the script it names; rerun the script to refresh it.\n"


def machine_line() -> str:
    info = machine_info()
    return (f"Machine: {info['cpu_model']} ({info['available_cores']} cores available), torch "
            f"{info['torch_version']} with {info['torch_threads']} threads, Python {info['python_version']}; "
            f"run {time.strftime('%Y-%m-%d %H:%M %Z')}.")


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section delimited by ``<!-- BEGIN name -->`` / ``<!-- END name -->``."""
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else HEADER
    block = f"<!-- BEGIN {name} -->\n{body.rstrip()}\n<!-- END {name} -->"
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    write_text(BENCHMARKS, text)


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
