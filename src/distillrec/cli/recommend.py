"""``distillrec recommend RUN --user ID``: top-K items for one user, as text or JSON."""

from __future__ import annotations

import argparse
import json

from distillrec.cli.common import add_flag
from distillrec.recommend import explain, recommend
from distillrec.runs import load_run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recommend", help="top-K recommendations for one user of a trained run")
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by train/ensemble/distill")
    add_flag(parser, "user", required=True, help="original user id (as in the dataset)")
    add_flag(parser, "k", "-k", type=int, default=10, help="number of items")
    add_flag(parser, "format", default="text", choices=["text", "json"])
    add_flag(parser, "include_seen", action="store_true", help="do not exclude items the user already rated")
    add_flag(parser, "explain", action="store_true", help="per-member contributions (ensemble runs)")
    add_flag(parser, "device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run_dir, device=args.device)
    items, cold = recommend(loaded, str(args.user), args.k, exclude_seen=not args.include_seen)
    contributions = explain(loaded, str(args.user), [i.item for i in items]) if args.explain else []
    if args.format == "json":
        rows = [{**item.__dict__, **({"contributions": c} if c else {})}
                for item, c in zip(items, contributions or [{}] * len(items), strict=True)]
        print(json.dumps({"user": str(args.user), "cold_start": cold, "model": loaded.spec.model, "items": rows},
                         indent=2))
        return 0
    note = " (unknown user: most popular items)" if cold else ""
    print(f"top {len(items)} for user {args.user} from {loaded.spec.model}{note}")
    for n, item in enumerate(items):
        title = f"  {item.title}" if item.title else ""
        print(f"{item.rank:>3}. {item.item:>8}  {item.score:9.4f}{title}")
        if contributions:
            print("       " + "  ".join(f"{k}={v:+.3f}" for k, v in contributions[n].items()))
    return 0
