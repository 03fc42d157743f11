"""``distillrec evaluate RUN``: re-evaluate a saved run on its own split; optionally dump top-20 lists."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from distillrec.cli.common import add_flag
from distillrec.cli.report import print_metrics
from distillrec.data.splits import make_split
from distillrec.evaluation.protocols import EXCLUDED_PARTS, evaluate
from distillrec.evaluation.ranking import full_ranking
from distillrec.io import atomic_write
from distillrec.runs import load_run

TOPK_OUT_K = 20


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a trained run on its split")
    parser.add_argument("run_dir", metavar="RUN")
    add_flag(parser, "topk_out", default=None, help="write user,rank,item (original ids, K=20) for test users")
    add_flag(parser, "device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run_dir, device=args.device)
    spec = loaded.spec
    dataset = spec.data.load()
    split = make_split(dataset, spec.protocol, spec.seed, spec.fold)
    rating = "rating" in loaded.metrics.get("heads", [])
    device = next(iter(loaded.model.buffers()), torch.zeros(())).device
    metrics = {**loaded.metrics, "valid": evaluate(loaded.model, dataset, split, "valid", rating=rating, device=device),
               "test": evaluate(loaded.model, dataset, split, "test", rating=rating, device=device)}
    print_metrics(metrics)
    if args.topk_out:
        truth = split.matrix(dataset, "test")
        users = torch.nonzero(truth.counts() > 0).squeeze(1)
        exclude = split.matrix(dataset, *EXCLUDED_PARTS["test"])
        top = full_ranking(loaded.model.score, users.to(device), exclude.to(device), TOPK_OUT_K).cpu()
        frame = pd.DataFrame({
            "user": [loaded.user_ids[u] for u in users.repeat_interleave(top.shape[1]).tolist()],
            "rank": torch.arange(1, top.shape[1] + 1).repeat(len(users)).numpy(),
            "item": [loaded.item_ids[i] for i in top.reshape(-1).tolist()],
        })
        atomic_write(Path(args.topk_out), lambda tmp: frame.to_csv(tmp, index=False))
        print(f"top-{TOPK_OUT_K} lists of {len(users)} users written to {args.topk_out}")
    return 0
