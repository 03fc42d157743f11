"""``distillrec split``: write a protocol's train/valid/test parts as CSV so anyone can check them."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillrec.cli.common import add_dataset_options, add_flag, data_spec
from distillrec.data.splits import make_split
from distillrec.io import atomic_write


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("split", help="write train.csv/valid.csv/test.csv of a protocol")
    add_dataset_options(parser)
    add_flag(parser, "protocol", default="p-rank", choices=["p-rank", "p-rating"])
    add_flag(parser, "fold", type=int, default=None)
    add_flag(parser, "seed", type=int, default=0)
    add_flag(parser, "out", required=True, help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    dataset = data_spec(args).load()
    split = make_split(dataset, args.protocol, args.seed, args.fold)
    out = Path(args.out)
    for part in ("train", "valid", "test"):
        frame = split.frame(dataset, part)
        atomic_write(out / f"{part}.csv", lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
        print(f"{part}: {len(frame):,} rows -> {out / f'{part}.csv'}")
    return 0
