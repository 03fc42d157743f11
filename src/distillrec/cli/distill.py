"""``distillrec distill``: a Fisher-pruned student distilled from a teacher.

The seed's command: ``--teacher ensemble --student lightweight_model --pruning_ratio 0.5
--distill_tasks ranking,rating,feature`` (``--distill_weights 0.4,0.4,0.2`` by default); ``--teacher autoint`` is the
seed's single-model option, and ``--teacher RUN_FOLDER`` takes any trained run.
"""

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
from distillrec.cli.report import format_value, print_metrics
from distillrec.distillation.prune_distill import DistillConfig, distill
from distillrec.distillation.task import DEFAULT_DISTILL_WEIGHTS, DISTILL_TASKS, LossConfig
from distillrec.errors import DistillrecError
from distillrec.fisher.pipeline import parse_tasks, resolve_teacher
from distillrec.pruning.importance import IMPORTANCES
from distillrec.store import runs_root

DEFAULTS = DistillConfig()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("distill", help="distil and prune a small student from a teacher")
    add_flag(parser, "teacher", default="ensemble",
             help="'ensemble' (the seed's default ensemble), a model name such as autoint, or a run folder")
    add_flag(parser, "student", default=DEFAULTS.student, help="lightweight_model or any registered model")
    add_flag(parser, "pruning_ratio", type=float, default=DEFAULTS.pruning_ratio,
             help="fraction of the student's prunable parameters to remove (0: dense distillation)")
    add_flag(parser, "distill_tasks", default=",".join(DISTILL_TASKS), help="comma list of ranking, rating, feature")
    add_flag(parser, "distill_weights", default=",".join(map(str, DEFAULT_DISTILL_WEIGHTS)),
             help="weights of ranking, rating and feature distillation (renormalised over --distill_tasks)")
    add_flag(parser, "truth_weight", type=float, default=DEFAULTS.loss.truth_weight,
             help="share of the ground-truth loss inside the ranking and rating terms")
    add_flag(parser, "truth_rating_weight", type=float, default=DEFAULTS.loss.truth_rating_weight,
             help="rating share of the ground-truth loss when --no_distillation is given")
    add_flag(parser, "no_distillation", action="store_true",
             help="train on the ground truth only (the baseline: same student, pruning and schedule)")
    add_flag(parser, "importance", default=DEFAULTS.importance, choices=list(IMPORTANCES),
             help="group importance for pruning: Fisher of the training loss, weight magnitude or random")
    add_flag(parser, "pruning_steps", type=int, default=DEFAULTS.pruning_steps)
    add_flag(parser, "fisher_samples", type=int, default=DEFAULTS.fisher_samples,
             help="training triples per Fisher estimate")
    add_flag(parser, "n_top", type=int, default=DEFAULTS.n_top, help="teacher's top items per user to distil")
    add_flag(parser, "n_negatives", type=int, default=DEFAULTS.loss.n_negatives)
    add_flag(parser, "n_uninteresting", type=int, default=DEFAULTS.loss.n_uninteresting,
             help="sampled items the teacher's top items must rank above")
    add_flag(parser, "epochs", type=int, default=DEFAULTS.epochs, help="most epochs of the dense phase")
    add_flag(parser, "recover_epochs", type=int, default=DEFAULTS.recover_epochs, help="most epochs after each step")
    add_flag(parser, "patience", type=int, default=DEFAULTS.patience)
    add_flag(parser, "lr", type=float, default=DEFAULTS.lr)
    add_flag(parser, "batch_size", type=int, default=DEFAULTS.batch_size)
    add_flag(parser, "warm_start", default=None, help="a trained run of the student's architecture to start from")
    add_flag(parser, "config", default=None, help="YAML file of student model settings")
    add_flag(parser, "set", action="append", metavar="KEY=VALUE", help="override one student setting (repeatable)")
    add_dataset_options(parser)
    add_flag(parser, "protocol", default="p-rank", choices=["p-rank", "p-rating"])
    add_flag(parser, "fold", type=int, default=None)
    add_flag(parser, "seed", type=int, default=0)
    add_flag(parser, "out", default=None, help="student run folder (default RUNS_DIR/student_TEACHER_DATASET_...)")
    add_flag(parser, "runs_dir", default=None, help="runs store for teachers (default $DISTILLREC_RUNS or runs/)")
    add_runtime_options(parser)
    parser.set_defaults(handler=run)


def parse_weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise DistillrecError(f"--distill_weights: expected three numbers such as 0.4,0.4,0.2, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    loss = LossConfig(tasks=parse_tasks(args.distill_tasks), weights=parse_weights(args.distill_weights),
                      truth_weight=args.truth_weight, truth_rating_weight=args.truth_rating_weight,
                      n_negatives=args.n_negatives,
                      n_uninteresting=args.n_uninteresting)
    config = DistillConfig(student=args.student,
                           student_config={**load_config_file(args.config), **parse_overrides(args.set)},
                           loss=loss, distill=not args.no_distillation, n_top=args.n_top,
                           pruning_ratio=args.pruning_ratio, pruning_steps=args.pruning_steps,
                           importance=args.importance, fisher_samples=args.fisher_samples, epochs=args.epochs,
                           recover_epochs=args.recover_epochs, patience=args.patience, lr=args.lr,
                           batch_size=args.batch_size, warm_start=args.warm_start, seed=args.seed)
    config.validate()
    return config


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    config = config_from_args(args)  # bad flags fail before any teacher is trained
    root = Path(args.runs_dir) if args.runs_dir else None
    folder = Path(args.teacher) if Path(args.teacher).is_dir() else None
    teacher = resolve_teacher(args.teacher, str(folder) if folder else None, data_spec(args), args.protocol,
                              args.seed, args.fold, root, args.device, progress=not args.no_progress)
    label = folder.name if folder else args.teacher
    out = Path(args.out) if args.out else (root or runs_root()) / (
        f"student_{label}_{teacher.spec.data.name}_{args.protocol}_seed{args.seed}_p{args.pruning_ratio:g}")
    result = distill(teacher, config, out, progress=not args.no_progress)
    print_metrics(result.metrics)
    summary = result.metrics["distillation"]
    teacher_test = result.metrics["teacher"]["test"]
    print(f"  teacher test ndcg@10={format_value(teacher_test.get('ndcg@10'))} "
          f"rmse={format_value(teacher_test.get('rmse'))}; student keeps "
          f"{format_value(summary['retained_ndcg@10'])} of its NDCG@10; p99 latency "
          f"{format_value(summary['latency_p99_speedup'])}x lower")
    if summary["start_prunable"]:
        print(f"  prunable parameters {summary['start_prunable']:,} -> {summary['final_prunable']:,} "
              f"(max relative |masked - shrunk| {summary['max_masked_difference']:.1e})")
    print(f"student saved to {out}")
    return 0
