"""``distillrec export RUN --format onnx|torchscript --out DIR``: a standalone artifact, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillrec.cli.common import add_flag


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a trained run to ONNX or TorchScript (checked to 1e-5)")
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by train/ensemble/distill")
    add_flag(parser, "format", required=True, choices=["onnx", "torchscript"])
    add_flag(parser, "out", required=True, help="folder for the artifact, ids.json and manifest.json")
    add_flag(parser, "check_users", type=int, default=32, help="users whose scores the check compares")
    add_flag(parser, "check_pairs", type=int, default=256, help="(user, item) pairs whose ratings it compares")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from distillrec.runs import load_run
    from distillrec.serving.export import export_run  # imports the exporters only when exporting

    report = export_run(load_run(args.run_dir), args.format, Path(args.out), check_users=args.check_users,
                        check_pairs=args.check_pairs)
    print(report.summary())
    return 0
