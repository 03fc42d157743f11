"""``distillrec train``: fit one model under a protocol and write its run folder."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

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
from distillrec.errors import DistillrecError
from distillrec.models.base import TASKS
from distillrec.registry import list_models, model_class
from distillrec.runs import RunSpec, train_run
from distillrec.training.trainer import TrainConfig


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


def split_settings(model: str, settings: dict[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
    """Route each setting to the model config or the training config; ``train.`` prefixes are allowed."""
    model_fields = {f.name for f in dataclasses.fields(model_class(model).config_class)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_cfg: dict[str, Any] = {}
    train_cfg: dict[str, Any] = dict(getattr(model_class(model), "train_defaults", {}))
    for key, value in settings.items():
        name = key.removeprefix("train.").removeprefix("model.")
        if key.startswith("train.") or (name in train_fields and name not in model_fields):
            if name not in train_fields:
                raise DistillrecError(f"unknown training setting {name!r}; known: {', '.join(sorted(train_fields))}")
            train_cfg[name] = value
        elif name in model_fields:
            model_cfg[name] = value
        else:
            raise DistillrecError(f"unknown setting {key!r} for {model}; model settings: "
                                  f"{', '.join(sorted(model_fields))}; "
                                  f"training settings: {', '.join(sorted(train_fields))}")
    return model_cfg, TrainConfig(**train_cfg)


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
