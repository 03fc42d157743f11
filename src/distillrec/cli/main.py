"""The ``distillrec`` command: a thin dispatcher over one module per subcommand.

User errors (``DistillrecError``) print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from distillrec import __version__
from distillrec.cli import (
    datasets,
    distill,
    ensemble,
    evaluate,
    export,
    fisher,
    pipeline,
    recommend,
    serve,
    split,
    train,
    zoo,
)
from distillrec.errors import DistillrecError

SUBCOMMANDS = (train, zoo, ensemble, fisher, distill, pipeline, evaluate, recommend, export, serve, datasets,
               split)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distillrec", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"distillrec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    warnings.formatwarning = lambda message, category, *_: f"distillrec: warning: {message}\n"
    try:
        return int(args.handler(args) or 0)
    except DistillrecError as exc:
        print(f"distillrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("distillrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
