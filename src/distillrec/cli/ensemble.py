"""``distillrec ensemble``: the seed's teacher, e.g. ``--algorithms svd,xdeepfm,autoint --weights 0.4,0.4,0.2
--tasks ranking,rating,balance`` (``--weights auto`` learns them on validation data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillrec.cli.common import add_dataset_options, add_flag, add_runtime_options, apply_threads, data_spec
from distillrec.cli.report import print_metrics
from distillrec.ensemble.build import build_ensemble
from distillrec.ensemble.weights import DEFAULT_ALGORITHMS, DEFAULT_TASKS, DEFAULT_WEIGHTS, parse_members
from distillrec.store import ensemble_folder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ensemble", help="combine trained models into an ensemble teacher")
    add_flag(parser, "algorithms", default=",".join(DEFAULT_ALGORITHMS), help="member models, comma-separated")
    add_flag(parser, "weights", default=",".join(map(str, DEFAULT_WEIGHTS)),
             help="member weights (renormalised within each task), or 'auto' to learn them on validation data")
    add_flag(parser, "tasks", default=",".join(DEFAULT_TASKS), help="each member's task: ranking, rating or balance")
    add_flag(parser, "fusion", default="auto", choices=["auto", "zscore", "rank"],
             help="common scale of ranking scores (auto: chosen on validation NDCG@10)")
    add_dataset_options(parser)
    add_flag(parser, "protocol", default="p-rank", choices=["p-rank", "p-rating"])
    add_flag(parser, "fold", type=int, default=None)
    add_flag(parser, "seed", type=int, default=0)
    add_flag(parser, "out", default=None, help="run folder (default RUNS_DIR/ensemble_DATASET_PROTOCOL_seedS)")
    add_flag(parser, "runs_dir", default=None, help="runs store for the members (default $DISTILLREC_RUNS or runs/)")
    add_runtime_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    members = parse_members(args.algorithms, args.weights, args.tasks)
    data = data_spec(args)
    root = Path(args.runs_dir) if args.runs_dir else None
    out = Path(args.out) if args.out else ensemble_folder(data, args.protocol, args.seed, args.fold, root)
    result = build_ensemble(members, data, args.protocol, args.seed, args.fold, args.fusion, root, out,
                            progress=not args.no_progress, device=args.device)
    print_metrics(result.metrics)
    config = result.model.config
    print(f"fusion: {config.fusion}")
    for member in result.metrics["members"]:
        test = member["test"]
        rmse = "-" if test["rmse"] is None else f"{test['rmse']:.4f}"
        print(f"  member {member['model']:<10} task={member['task']:<8} weight={member['weight']:.3f}  "
              f"trained for {member['trained_for']:<6}  test ndcg@10={test['ndcg@10']:.4f}  rmse={rmse}")
    if config.rating_weights:
        print("  learned rating weights (NNLS): " + ", ".join(
            f"{m}={w:.3f}" for m, w in zip(config.models, config.rating_weights, strict=True)))
    print(f"ensemble saved to {out}")
    return 0
