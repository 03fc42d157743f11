"""``distillrec pipeline``: the seed's whole plan in one command, each stage cached in the output folder.

``distillrec pipeline --dataset ml-100k`` trains the ensemble's members (``--zoo all``: the whole zoo), builds the
teacher, computes its Fisher, distils and prunes the student, prints the comparison and writes
``OUT/report.html`` / ``OUT/report.md``. Rerunning skips unchanged stages; ``--force STAGE`` redoes one and what
depends on it. Settings: ``--config pipeline.yaml`` and ``--set distill.pruning_ratio=0.7`` (see
:mod:`distillrec.pipeline.config`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from distillrec.cli.common import add_flag, apply_threads, load_config_file, parse_overrides
from distillrec.pipeline.config import STAGES, resolve_config
from distillrec.pipeline.run import load_results, run_pipeline
from distillrec.report.tables import summary_rows, text_table
from distillrec.store import runs_root


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pipeline", help="zoo, ensemble, Fisher, distillation and a report in one go")
    add_flag(parser, "dataset", default=None, help="synthetic (default), ml-100k, ... (the config's data.name)")
    add_flag(parser, "zoo", default=None,
             help="members (default: the ensemble's algorithms), all (every zoo model) or a comma list to add")
    add_flag(parser, "seed", type=int, default=None, help="seed of every stage (default 0)")
    add_flag(parser, "device", default=None, choices=["cpu", "cuda", "auto"], help="where tensors live (default cpu)")
    add_flag(parser, "config", default=None, help="YAML file of pipeline settings (dotted or nested keys)")
    add_flag(parser, "set", action="append", metavar="KEY=VALUE",
             help="override one setting, e.g. distill.pruning_ratio=0.7 or zoo.max_epochs=5 (repeatable)")
    add_flag(parser, "force", action="append", choices=[*STAGES, "all"], default=None,
             help="redo this stage and every stage after it that depends on it (repeatable)")
    add_flag(parser, "out", default=None, help="output folder (default RUNS_DIR/pipeline_DATASET_PROTOCOL_seedS)")
    add_flag(parser, "threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    add_flag(parser, "no_progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run)


def overrides_from_args(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Command-line settings as dotted keys: the named flags first, then every ``--set``."""
    flags = {"data.name": args.dataset, "zoo.models": args.zoo, "seed": args.seed, "device": args.device}
    return [*((k, v) for k, v in flags.items() if v is not None), *parse_overrides(args.set).items()]


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    config = resolve_config(load_config_file(args.config), overrides_from_args(args))  # errors before any work
    default = f"pipeline_{config.data.name}_{config.protocol}_seed{config.seed}"
    out = Path(args.out) if args.out else runs_root() / default
    force = STAGES if "all" in (args.force or []) else (args.force or [])
    start = time.perf_counter()
    run_pipeline(config, out, force, progress=not args.no_progress)
    headers, rows = summary_rows(load_results(out))
    print()
    print(f"{config.data.name}, {config.protocol}, seed {config.seed}, {config.limits} limits; test split:")
    print(text_table(headers, rows))
    print(f"pipeline finished in {time.perf_counter() - start:.1f} s; report: {out / 'report.html'} "
          f"(and {out / 'report.md'})")
    return 0
