"""Pruning-aware distillation benchmark on ml-100k P-RANK, seed 0. Writes the ``distill`` section of BENCHMARKS.md.

One table at one final student size: the teacher, each original model, the student trained from scratch, dense
distillation into a small student of the final size, Fisher pruning without distillation, magnitude and random
pruning with distillation, and ours (Fisher pruning with distillation); a second table for ours at several pruning
ratios; a third for the single-model teacher (AutoInt). Latency and throughput of every row are measured in this
process, one after another, so their ratios are comparable.

Run: ``python benchmarks/distill.py [--data-dir ../shared/data] [--only NAME,...]``. Teachers and members come from
the runs store ``runs/bench`` (shared with the zoo and ensemble benchmarks); student runs are kept in
``runs/bench/distill/<row>`` and reused when their settings match.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from _common import DATA_ROOT, machine_line, markdown_table, write_section
from distillrec.distillation.prune_distill import DistillConfig, distill
from distillrec.evaluation.protocols import serving_cost
from distillrec.fisher.pipeline import resolve_teacher
from distillrec.models.lightweight import LightweightConfig
from distillrec.pruning.groups import prunable_parameters
from distillrec.registry import create_model
from distillrec.runs import DataSpec, Run, load_run
from distillrec.store import get_or_train
from distillrec.zoo import zoo_spec

ROOT = Path("runs/bench")
RATIO = 0.5
RATIOS = (0.3, 0.5, 0.7, 0.9)
#: the goals name 0.5 and 0.7; 0.9 shows the criteria where pruning starts to cost quality
COMPARED_RATIOS = (0.5, 0.7, 0.9)
SEEDS = (0, 1, 2)
#: (label, stored-run key, DistillConfig changes, seeds): the close comparisons get three seeds (PROTOCOL.md)
METHODS = (("ours: Fisher pruning + distillation", "ours", {}, SEEDS),
           ("magnitude pruning + distillation", "magnitude_kd", {"importance": "magnitude"}, SEEDS),
           ("random pruning + distillation", "random_kd", {"importance": "random"}, SEEDS),
           ("Fisher pruning without distillation", "fisher_no_kd", {"distill": False}, (0,)))
MEMBERS = ("svd", "xdeepfm", "autoint")


#: teacher folder -> its serving cost, measured once per process (each distill() would re-measure it, ~25 s)
_TEACHER_COSTS: dict[str, dict] = {}


def student_run(name: str, teacher: Run, config: DistillConfig) -> Run:
    """The stored student of ``name`` when its settings and its teacher match, else a fresh distillation.

    The teacher's folder is the same path after its members were retrained, so the teacher is recognised by its
    metrics (recorded in the student's metrics.json), not by its path.
    """
    folder = ROOT / "distill" / name
    wanted = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    saved, metrics = folder / "distill_config.json", folder / "metrics.json"
    if metrics.is_file() and saved.is_file():
        stored = json.loads(saved.read_text())
        same_teacher = json.loads(metrics.read_text()).get("teacher", {}).get("valid") == teacher.metrics["valid"]
        if same_teacher and {k: v for k, v in stored.items() if k != "teacher_run"} == wanted:
            return load_run(folder)
    print(f"distilling {name} ...", flush=True)
    key = str(teacher.folder)
    if key not in _TEACHER_COSTS:
        _TEACHER_COSTS[key] = measured(teacher)
    return distill(teacher, config, folder, progress=False, teacher_cost=_TEACHER_COSTS[key])


def dense_size_config(teacher: Run, target_prunable: int) -> dict:
    """A uniformly narrower lightweight student (all widths scaled together) with about ``target_prunable``."""
    base = LightweightConfig()
    shape = teacher.model.shape
    best = None
    for embed in range(4, base.embed_dim + 1):
        scale = embed / base.embed_dim
        overrides = {"embed_dim": embed, "out_dim": max(1, round(base.out_dim * scale)),
                     "user_hidden": tuple(max(1, round(h * scale)) for h in base.user_hidden),
                     "item_hidden": tuple(max(1, round(h * scale)) for h in base.item_hidden)}
        count = prunable_parameters(create_model("lightweight_model", shape, overrides))
        if best is None or abs(count - target_prunable) < abs(best[0] - target_prunable):
            best = (count, overrides)
    return best[1]


def row(label: str, metrics: dict, teacher_ndcg: float, cost: dict) -> list[object]:
    test = metrics["test"]
    retained = f"{100 * test['ndcg@10'] / teacher_ndcg:.1f}%"
    return [label, test["ndcg@10"], test["recall@10"], test.get("rmse", "-"), retained,
            metrics["cost"]["params"], metrics["cost"].get("bytes") or "-", cost["latency_p50_ms"],
            cost["latency_p99_ms"], cost["users_per_second"]]


def measured(run: Run) -> dict:
    """Serving cost measured now, in this process (the stored figures come from different moments)."""
    return serving_cost(run.model.eval(), run.model.n_users, requests=1000)


def _stored_name(key: str, ratio: float, seed: int) -> str:
    """Run names, matching the single-seed rows so their runs are reused."""
    if seed == 0 and ratio == RATIO:
        return key
    if seed == 0 and key == "ours":
        return f"ours_r{ratio}"
    return f"{key}_r{ratio}_s{seed}"


def seed_rows(teacher: Run, ours: DistillConfig) -> list[list[object]]:
    """Mean and standard deviation over seeds of the pruning methods at the ratios the goals name."""
    rows = []
    for ratio in COMPARED_RATIOS:
        for label, key, changes, seeds in METHODS:
            runs = [student_run(_stored_name(key, ratio, seed), teacher,
                                dataclasses.replace(ours, pruning_ratio=ratio, seed=seed, **changes)) for seed in seeds]
            ndcg = torch.tensor([r.metrics["test"]["ndcg@10"] for r in runs], dtype=torch.float64)
            rmse = torch.tensor([r.metrics["test"]["rmse"] for r in runs], dtype=torch.float64)
            spread = (lambda t: f" ± {float(t.std()):.4f}") if len(runs) > 1 else (lambda t: "")
            rows.append([ratio, label, len(runs), f"{float(ndcg.mean()):.4f}{spread(ndcg)}",
                         f"{float(rmse.mean()):.4f}{spread(rmse)}", ", ".join(f"{v:.4f}" for v in ndcg.tolist())])
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA_ROOT))
    args = parser.parse_args()
    data = DataSpec("ml-100k", data_dir=args.data_dir)
    teacher = resolve_teacher("ensemble", None, data, "p-rank", 0, None, ROOT, progress=False)
    teacher_ndcg = teacher.metrics["test"]["ndcg@10"]
    ours = DistillConfig(pruning_ratio=RATIO)
    ours_run = student_run("ours", teacher, ours)
    final = ours_run.metrics["distillation"]["final_prunable"]
    small = dense_size_config(teacher, final)
    variants = [
        ("student from scratch (no distillation, dense, final size)",
         dataclasses.replace(ours, distill=False, pruning_ratio=0.0, student_config=small), "scratch"),
        ("distillation without pruning (dense, final size)",
         dataclasses.replace(ours, pruning_ratio=0.0, student_config=small), "dense_kd"),
        ("Fisher pruning without distillation", dataclasses.replace(ours, distill=False), "fisher_no_kd"),
        ("magnitude pruning + distillation", dataclasses.replace(ours, importance="magnitude"), "magnitude_kd"),
        ("random pruning + distillation", dataclasses.replace(ours, importance="random"), "random_kd"),
    ]
    headers = ["model", "NDCG@10", "Recall@10", "RMSE", "% teacher NDCG@10", "params", "bytes", "p50 ms", "p99 ms",
               "users/s"]
    # train (or reuse) everything first, then time every model one after another on a quiet process
    table = [("teacher: ensemble svd+xdeepfm+autoint (0.4/0.4/0.2)", teacher, teacher_ndcg)]
    table += [(member, get_or_train(zoo_spec(member, data, "p-rank", 0), ROOT, progress=False)[0], teacher_ndcg)
              for member in MEMBERS]
    table += [(label, student_run(name, teacher, config), teacher_ndcg) for label, config, name in variants]
    table.append((f"**ours: Fisher pruning + distillation (ratio {RATIO})**", ours_run, teacher_ndcg))
    ratio_rows = []
    for ratio in RATIOS:
        run = ours_run if ratio == RATIO else student_run(f"ours_r{ratio}", teacher,
                                                          dataclasses.replace(ours, pruning_ratio=ratio))
        summary = run.metrics["distillation"]
        ratio_rows.append([ratio, run.metrics["test"]["ndcg@10"], run.metrics["test"]["rmse"],
                           f"{100 * summary['retained_ndcg@10']:.1f}%", summary["start_prunable"],
                           summary["final_prunable"], run.metrics["cost"]["params"]])
    method_rows = seed_rows(teacher, ours)
    autoint = resolve_teacher("autoint", None, data, "p-rank", 0, None, ROOT, progress=False)
    single = [("teacher: autoint", autoint, autoint.metrics["test"]["ndcg@10"]),
              ("ours, AutoInt teacher (ratio 0.5)", student_run("ours_autoint_teacher", autoint, ours),
               autoint.metrics["test"]["ndcg@10"])]
    rows = [row(label, run.metrics, reference, measured(run)) for label, run, reference in table]
    single_rows = [row(label, run.metrics, reference, measured(run)) for label, run, reference in single]
    summary = ours_run.metrics["distillation"]
    body = "\n\n".join([
        "## Pruning-aware distillation on ml-100k P-RANK, seed 0 (`benchmarks/distill.py`)",
        machine_line(),
        f"Every student row has about {final:,} prunable parameters (the final size of ours at ratio {RATIO}: "
        f"{summary['start_prunable']:,} -> {summary['final_prunable']:,}); dense rows scale all widths of the "
        f"starting student uniformly to that size ({small}). Latency: one user, top-10 over all items, batch 1, "
        "1,000 requests; users/s: batches of 1,024; all measured in this run after every model is trained, one model "
        "after another. "
        "Largest |masked - shrunk| difference in ours, relative to the outputs' scale: "
        f"{summary['max_masked_difference']:.1e}.",
        markdown_table(headers, rows),
        "**Ours at several pruning ratios** (same teacher and settings):",
        markdown_table(["ratio", "NDCG@10", "RMSE", "% teacher NDCG@10", "start prunable", "final prunable",
                        "params"], ratio_rows),
        "**Pruning methods at ratios 0.5, 0.7 and 0.9** (test NDCG@10 and RMSE, mean ± standard deviation over the "
        "distillation seeds 0, 1, 2 with the same teacher; the gap to Fisher pruning without distillation is "
        "large enough for one seed):",
        markdown_table(["ratio", "method", "seeds", "NDCG@10", "RMSE", "NDCG@10 per seed"], method_rows),
        "**Single-model teacher (the seed's option 2)**:",
        markdown_table(headers, single_rows),
    ])
    write_section("distill", body)
    print(body)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
