"""``distillrec datasets``: what is known, what is present locally, and how big it is."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillrec.cli.common import add_flag
from distillrec.data.loading import list_datasets


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="list known datasets and where they are cached")
    add_flag(parser, "data_dir", default=None, help="folder holding ml-100k/, ml-1m/, ...")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = list_datasets(Path(args.data_dir) if args.data_dir else None)
    print(f"{'dataset':<16} {'kind':<10} {'status':<12} {'size':>10}  path")
    for row in rows:
        size = row.get("size")
        size_text = f"{size / 1e6:.1f} MB" if size else "-"
        status = "present" if row.get("present") else "not cached"
        print(f"{row['name']:<16} {row.get('kind', ''):<10} {status:<12} {size_text:>10}  {row.get('path') or ''}")
    return 0
