"""``distillrec train``: fit one model under a protocol and write its run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillrec.cli.common import (
    add_dataset_options,
    add_flag,
    add_runtime_options,
    apply_threads,
    data_spec,
    load_config_file,
    parse_overrides,
)
from distillrec.cli.report import print_metrics
from distillrec.models.base import TASKS
from distillrec.registry import list_models
from distillrec.runs import RunSpec, train_run
from distillrec.settings import split_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train one model and write its run folder")
    add_flag(parser, "model", default="svd", help=f"one of: {', '.join(list_models())}")
    add_dataset_options(parser)
    add_flag(parser, "protocol", default="p-rank", choices=["p-rank", "p-rating"])
    add_flag(parser, "fold", type=int, default=None, help="P-RATING fold 1..5 (ml-100k)")
    add_flag(parser, "seed", type=int, default=0)
    add_flag(parser, "task", default="both", choices=list(TASKS))
    add_flag(parser, "out", default=None, help="run folder (default runs/MODEL_DATASET_PROTOCOL_seedS)")
    add_flag(parser, "config", default=None, help="YAML file of model and training settings")
    add_flag(parser, "set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)")
    add_runtime_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    settings = {**load_config_file(args.config), **parse_overrides(args.set)}
    model_cfg, train_cfg = split_settings(args.model, settings)
    spec = RunSpec(model=args.model, data=data_spec(args), protocol=args.protocol, fold=args.fold, seed=args.seed,
                   task=args.task, model_config=model_cfg, train=train_cfg, device=args.device)
    out = Path(args.out or f"runs/{args.model}_{args.dataset}_{args.protocol}_seed{args.seed}")
    result = train_run(spec, out=out, progress=not args.no_progress)
    print_metrics(result.metrics)
    print(f"run saved to {out}")
    return 0
