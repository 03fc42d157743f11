"""Model-zoo benchmark on ml-100k, seed 0: quality under both protocols, cost, and training speed against
DeepCTR-Torch on the same architecture. Writes the ``zoo`` section of BENCHMARKS.md.

Run: ``python benchmarks/zoo.py [--models all] [--data-dir ../shared/data] [--fresh]``. Runs are kept in the
runs store ``runs/bench`` (keyed by the fully resolved settings), so the table can be built model by model;
``--fresh`` trains everything again in a temporary store.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

import _deepctr
from _common import DATA_ROOT, machine_line, markdown_table, write_section
from distillrec.data.splits import make_split
from distillrec.registry import build_config
from distillrec.runs import DataSpec, train_run
from distillrec.store import get_or_train
from distillrec.zoo import best_for, parse_models, zoo_spec

RANK_KEYS = ("recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10")
SPEED_MODELS = ("deepfm", "xdeepfm", "autoint")
SPEED_EPOCHS = 2


def quality_rows(models: list[str], data: DataSpec, dataset, root: Path) -> list[list[object]]:
    """One row per model: P-RANK ranking + rating metrics, P-RATING u1 RMSE/MAE, cost."""
    rank_runs = {m: get_or_train(zoo_spec(m, data, "p-rank", 0), root, dataset=dataset, progress=False)[0].metrics
                 for m in models}
    labels = best_for(list(rank_runs.values()))
    rows = []
    for model, metrics in rank_runs.items():
        test, cost = metrics["test"], metrics["cost"]
        u1 = get_or_train(zoo_spec(model, data, "p-rating", 0, fold=1), root, dataset=dataset,
                          progress=False)[0].metrics["test"]
        rows.append([model, *(test[k] for k in RANK_KEYS), test.get("rmse", "-"), test.get("mae", "-"),
                     u1.get("rmse", "-"), u1.get("mae", "-"), cost["params"], cost["bytes"], cost["train_seconds"],
                     cost["seconds_per_epoch"], cost["epochs"], cost["users_per_second"], cost["latency_p50_ms"],
                     cost["latency_p99_ms"], ", ".join(labels[model]) or "-"])
        print(rows[-1], flush=True)
    return rows


def architecture(model: str) -> dict:
    """Our default architecture of a model, in the terms DeepCTR-Torch's constructors take."""
    cfg = build_config(model)
    hidden = cfg.mlp_hidden if model == "xdeepfm" else getattr(cfg, "hidden", ())
    arch = {"embed_dim": cfg.embed_dim, "hidden": tuple(hidden or ())}
    if model == "xdeepfm":
        arch.update(cin=tuple(cfg.cin_layers), split_half=cfg.cin_split_half)
    if model == "autoint":
        arch.update(layers=cfg.n_layers, heads=cfg.n_heads, d_head=cfg.d_head)
    return arch


def ours_epoch_seconds(model: str, dataset, compile: bool = False, batch_size: int = 256) -> list[float]:
    """Our optimisation seconds of each epoch (validation excluded) for the rating task on u1's train part."""
    spec = zoo_spec(model, DataSpec("ml-100k"), "p-rating", 0, fold=1)
    epochs = SPEED_EPOCHS + (1 if compile else 0)  # a compiled run's first epoch holds the compilation
    spec = replace(spec, train=replace(spec.train, epochs=epochs, batch_size=batch_size, patience=99, compile=compile))
    with tempfile.TemporaryDirectory(prefix="zoo-speed-") as tmp:
        train_run(spec, out=Path(tmp) / "run", progress=False, dataset=dataset, latency_requests=20)
        log = [json.loads(line) for line in (Path(tmp) / "run" / "train_log.jsonl").read_text().splitlines()]
    return [row["train_seconds"] for row in log]


def speed_rows(dataset, rounds: int) -> tuple[list[list[object]], str]:
    """Seconds per epoch, the best epoch of ``rounds`` interleaved rounds (ours, ours compiled, DeepCTR-Torch).

    The best epoch, not the mean: on a shared machine other work only ever adds time, and interleaving the three
    keeps a slow spell of the machine from landing on one side of the comparison only.
    """
    reason = _deepctr.available()
    split = make_split(dataset, "p-rating", 0, 1)
    rows = []
    for model in SPEED_MODELS:
        eager, compiled, theirs, first_compiled = [], [], [], None
        for _ in range(rounds):
            eager += ours_epoch_seconds(model, dataset)
            epochs = ours_epoch_seconds(model, dataset, compile=True)
            first_compiled = epochs[0] if first_compiled is None else first_compiled
            compiled += epochs[1:]
            if not reason:
                theirs += _deepctr.epoch_seconds(model, architecture(model), dataset, split, epochs=SPEED_EPOCHS)
        ours, steady = min(eager), min(compiled)
        best = min(theirs) if theirs else None
        rows.append([model, str(architecture(model)), round(ours, 4), round(steady, 4),
                     round(first_compiled - steady, 1), round(best, 4) if best else "-",
                     f"{best / ours:.1f}x" if best else "-", f"{best / steady:.1f}x" if best else "-"])
        print(rows[-1], flush=True)
    note = f"DeepCTR-Torch unavailable ({reason}); install the `bench` extra." if reason else ""
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA_ROOT))
    parser.add_argument("--models", default="all")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--speed-rounds", type=int, default=3, help="interleaved timing rounds; the best epoch counts")
    parser.add_argument("--fresh", action="store_true", help="retrain everything in a temporary runs store")
    args = parser.parse_args()
    data = DataSpec("ml-100k", data_dir=args.data_dir)
    dataset = data.load()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        root = Path(tmp) if args.fresh else Path("runs/bench")
        rows = quality_rows(parse_models(args.models), data, dataset, root)
    parts = [
        "## Model zoo on ml-100k, seed 0 (`benchmarks/zoo.py`)",
        machine_line(),
        "P-RANK columns: test split of the RecBole ratio split (task `both`: one run gives ranking and rating). "
        "u1 columns: P-RATING u1.test (task `rating`). Cost from the P-RANK run; s/epoch excludes validation.",
        markdown_table(["model", "Recall@10", "NDCG@10", "MRR@10", "Hit@10", "Prec@10", "RMSE", "MAE", "u1 RMSE",
                        "u1 MAE", "params", "bytes", "train s", "s/epoch", "epochs", "users/s", "p50 ms", "p99 ms",
                        "best for"], rows),
        "References on these protocols: RecBole BPR NDCG@10 0.293, NeuMF 0.279, LightGCN 0.305; DeepCTR-Torch "
        "u1 RMSE AutoInt 0.946, xDeepFM 0.949, DeepFM 0.950 (20 epochs).",
    ]
    if not args.skip_speed:
        speed, note = speed_rows(dataset, args.speed_rounds)
        parts += [f"**Training speed** (rating task on u1.base less validation, batch 256, same fields and "
                  f"architecture, same process; seconds of the best epoch over {args.speed_rounds} interleaved rounds "
                  f"of {SPEED_EPOCHS} epochs each, because other load on the machine only ever adds time):",
                  markdown_table(["model", "architecture", "ours s/epoch", "ours compiled s/epoch",
                                  "compilation s (once)", "DeepCTR-Torch s/epoch", "speed-up", "speed-up compiled"],
                                 speed),
                  "*ours compiled*: `--set compile=true` (TrainConfig.compile, `torch.compile` of the training "
                  "steps), seconds per epoch after the first; the first epoch's extra time is the one-time "
                  "compilation. Eager is the default."]
        if note:
            parts.append(note)
    write_section("zoo", "\n\n".join(parts))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
