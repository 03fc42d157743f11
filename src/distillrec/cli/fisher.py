"""``distillrec fisher``: the teacher's Fisher information per layer, head, field and embedding dimension.

The seed's commands: ``--teacher_type ensemble --target_layers all --focus_tasks ranking,rating`` and
``--teacher_type autoint --target_layers attention,interaction,output --focus_tasks ranking``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distillrec.cli.common import add_dataset_options, add_flag, add_runtime_options, apply_threads, data_spec
from distillrec.errors import DistillrecError
from distillrec.fisher.empirical import ESTIMATORS
from distillrec.fisher.losses import FOCUS_TASKS
from distillrec.fisher.pipeline import FisherConfig, parse_tasks, resolve_teacher, run_fisher
from distillrec.fisher.targets import SEMANTIC_GROUPS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fisher", help="Fisher information of a teacher per layer, head and field")
    add_flag(parser, "teacher_type", default="ensemble",
             help="'ensemble' (the seed's default ensemble, reused or built) or a model name such as autoint")
    add_flag(parser, "teacher", default=None, help="a trained run folder to analyse instead of --teacher_type")
    add_flag(parser, "target_layers", default="all",
             help=f"comma list of {', '.join(SEMANTIC_GROUPS)} or name globs such as 'layers.*'")
    add_flag(parser, "focus_tasks", default="ranking,rating", help=f"comma list of {', '.join(FOCUS_TASKS)}")
    add_flag(parser, "estimator", default="exact", choices=list(ESTIMATORS),
             help="exact per-sample Fisher, or the cheap squared-batch-gradient approximation")
    add_flag(parser, "batch_size", type=int, default=512, help="samples per vectorised batch")
    add_flag(parser, "n_negatives", type=int, default=1, help="sampled negatives per positive (ranking losses)")
    add_flag(parser, "max_samples", type=int, default=None, help="use a seeded random subset of the training split")
    add_dataset_options(parser)
    add_flag(parser, "protocol", default="p-rank", choices=["p-rank", "p-rating"])
    add_flag(parser, "fold", type=int, default=None)
    add_flag(parser, "seed", type=int, default=0)
    add_flag(parser, "out", default=None, help="output folder (default: TEACHER_RUN/fisher)")
    add_flag(parser, "runs_dir", default=None, help="runs store for teachers (default $DISTILLREC_RUNS or runs/)")
    add_runtime_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    config = FisherConfig(target_layers=args.target_layers, focus_tasks=parse_tasks(args.focus_tasks),
                          estimator=args.estimator, batch_size=args.batch_size, n_negatives=args.n_negatives,
                          max_samples=args.max_samples, seed=args.seed)
    config.validate()  # bad flags fail before any training
    if args.teacher and not (Path(args.teacher) / "metrics.json").is_file():
        raise DistillrecError(f"--teacher {args.teacher}: not a finished run folder (no metrics.json)")
    teacher = resolve_teacher(args.teacher_type, args.teacher, data_spec(args), args.protocol, args.seed, args.fold,
                              Path(args.runs_dir) if args.runs_dir else None, args.device,
                              progress=not args.no_progress)
    run_fisher(teacher, config, Path(args.out) if args.out else None, progress=not args.no_progress)
    return 0
