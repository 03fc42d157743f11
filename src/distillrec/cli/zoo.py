"""``distillrec zoo``: train or reuse every model and print the seed-style comparison table."""

from __future__ import annotations

import argparse
from pathlib import Path

from distillrec.cli.common import add_dataset_options, add_flag, add_runtime_options, apply_threads, data_spec
from distillrec.io import write_json, write_text
from distillrec.zoo import comparison_rows, markdown, parse_models, run_zoo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("zoo", help="train the model zoo and compare quality and cost")
    add_dataset_options(parser)
    add_flag(parser, "models", default="all", help="'all' or a comma list, e.g. svd,xdeepfm,autoint")
    add_flag(parser, "protocol", default="p-rank", choices=["p-rank", "p-rating"])
    add_flag(parser, "fold", type=int, default=None)
    add_flag(parser, "seed", type=int, default=0)
    add_flag(parser, "out", default=None, help="folder for zoo.md / zoo.json (default runs/zoo_DATASET_PROTOCOL_seedS)")
    add_flag(parser, "runs_dir", default=None, help="runs store (default $DISTILLREC_RUNS or runs/)")
    add_runtime_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    models = parse_models(args.models)
    results = run_zoo(models, data_spec(args), args.protocol, args.seed, args.fold,
                      Path(args.runs_dir) if args.runs_dir else None, progress=not args.no_progress,
                      device=args.device)
    headers, rows = comparison_rows(results)
    table = markdown(headers, rows)
    out = Path(args.out or f"runs/zoo_{args.dataset}_{args.protocol}_seed{args.seed}")
    title = f"Model zoo on {args.dataset} ({args.protocol}, seed {args.seed}; test split)"
    write_text(out / "zoo.md", f"# {title}\n\n{table}\n")
    write_json(out / "zoo.json", {"title": title, "headers": headers, "rows": rows, "runs": results})
    print(title)
    print(table)
    reused = sum(r["reused"] for r in results)
    print(f"{len(results)} models ({reused} reused from the runs store); table in {out / 'zoo.md'}")
    return 0
