"""Fisher benchmark (issue 5) on ml-100k P-RANK, seed 0: is the exact Fisher cheap, and does it rank what matters?
Writes the ``fisher`` section of BENCHMARKS.md.

For two teachers, AutoInt alone and the seed's default ensemble (svd + xdeepfm + autoint):

1. **Timing.** The seed's two ``distillrec fisher`` commands over the whole training split, against one training
   epoch of the same model(s) through the library's trainer, measured in this process (the ensemble's reference is
   the sum of one epoch of each member). Goals: AutoInt <= 2x, ensemble <= 3x.
2. **Fields.** Each feature field is permuted across entities in the trained teacher (``fisher.validation``; never
   retrained) and the test NDCG@10 drop and RMSE rise are averaged over seeded permutations; Spearman against the
   field Fisher (ranking task vs NDCG drop, rating task vs RMSE rise). Goal: >= 0.7 for both teachers.
3. **Groups.** A seeded, kind-stratified sample of heads, neurons, CIN maps, embedding dimensions, ... is masked one
   at a time; the increase of the focus task's loss on a fixed sample of training triples against the group Fisher.

Field and group Fisher come from an analysis pass with every group family and both tasks (the ensemble's timed
command is that pass; AutoInt's timed command targets attention only and has the ranking task only, so AutoInt gets
a second, untimed pass). Nothing is tuned: the test split is only measured.

Run: ``python benchmarks/fisher.py [--data-dir ../shared/data]``; teachers come from the runs store ``runs/bench``
(trained there when missing). ``--dataset synthetic --synthetic n_users=200,n_items=300,n_interactions=8000
--root /tmp/runs --no-write`` checks the script in minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from _common import DATA_ROOT, machine_line, markdown_table, write_section
from distillrec.data.splits import make_split
from distillrec.ensemble.weighted import Ensemble
from distillrec.ensemble.weights import DEFAULT_ALGORITHMS
from distillrec.fisher.groups import discover
from distillrec.fisher.losses import FusionStats, Objective
from distillrec.fisher.pipeline import FisherConfig, resolve_teacher, run_fisher
from distillrec.fisher.targets import resolve_targets
from distillrec.fisher.validation import (
    field_damage,
    group_masks,
    loss_increase,
    sample_batch,
    sample_losses,
    spearman,
    unit_shapes,
)
from distillrec.models.base import TrainData
from distillrec.runs import DataSpec, Run, train_data, train_run
from distillrec.zoo import zoo_spec

ROOT = Path("runs/bench")
TEACHERS = ("autoint", "ensemble")
#: the seed's two commands, timed
TIMED = {"autoint": FisherConfig(target_layers="attention,interaction,output", focus_tasks=("ranking",)),
         "ensemble": FisherConfig(target_layers="all", focus_tasks=("ranking", "rating"))}
COMMANDS = {"autoint": "--teacher_type autoint --target_layers attention,interaction,output --focus_tasks ranking",
            "ensemble": "--teacher_type ensemble --target_layers all --focus_tasks ranking,rating"}
TIME_GOALS = {"autoint": 2.0, "ensemble": 3.0}
#: where field and group Fisher are read: every family, both tasks
ANALYSIS = FisherConfig(target_layers="all", focus_tasks=("ranking", "rating"))
SPEARMAN_GOAL = 0.7
#: group kinds sampled for the masking check (fields have their own check; whole layers are not "groups" here)
UNIT_KINDS = ("attention_head", "mlp_neuron", "cin_map", "embedding_dim", "cross_unit", "svd_factor", "svd_component")


def epoch_seconds(model: str, data: DataSpec, dataset) -> float:
    """Optimisation seconds of one epoch of ``model`` with the zoo's settings (validation excluded)."""
    spec = zoo_spec(model, data, "p-rank", 0)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
    run = train_run(spec, progress=False, dataset=dataset, latency_requests=20)
    return float(run.metrics["cost"]["seconds_per_epoch"])


def timing_row(name: str, report: dict[str, Any], epochs: dict[str, float]) -> tuple[list[object], dict]:
    members = list(DEFAULT_ALGORITHMS) if name == "ensemble" else [name]
    reference = sum(epochs[m] for m in members)
    seconds = report["timing"]["fisher_seconds"]
    ratio = seconds / reference
    described = " + ".join(f"{m} {epochs[m]:.2f}" for m in members)
    met = "yes" if ratio <= TIME_GOALS[name] else "**no**"
    row = [name, f"`{COMMANDS[name]}`", next(iter(report["tasks"].values()))["n_samples"], round(seconds, 2),
           described, round(reference, 2), round(ratio, 2), f"<= {TIME_GOALS[name]:g}x: {met}"]
    return row, {"fisher_seconds": seconds, "epoch_seconds": {m: epochs[m] for m in members},
                 "reference_seconds": reference, "ratio": ratio, "goal": TIME_GOALS[name]}


def field_scores(report: dict[str, Any], task: str) -> dict[str, tuple[float, float]]:
    """Field -> (Fisher score, share) of the teacher-wide field family."""
    return {r["group"]: (r["score"], r["share"]) for r in report["tasks"][task]["fields"]}


def field_drift(timed: dict[str, Any], analysis: dict[str, Any]) -> float:
    """Largest relative difference between two reports' field Fisher over the tasks both computed."""
    worst = 0.0
    for task in set(timed["tasks"]) & set(analysis["tasks"]):
        a, b = field_scores(timed, task), field_scores(analysis, task)
        worst = max([worst, *(abs(a[f][0] - b[f][0]) / max(abs(b[f][0]), 1e-300) for f in a)])
    return worst


def field_check(run: Run, report: dict[str, Any], dataset, split, repeats: int) -> tuple[list[list[object]], dict]:
    """Permutation damage of every field next to its Fisher, and the two Spearman correlations."""
    ranking, rating = field_scores(report, "ranking"), field_scores(report, "rating")
    labels = [r["group"] for r in report["tasks"]["ranking"]["fields"]]
    labels.sort(key=lambda f: (not f.startswith("user"), f not in ("user_id", "item_id"), f))
    damage = field_damage(run.model, dataset, split, labels, repeats=repeats, seed=0)
    fields = damage["fields"]
    rows = [[f, _pct(ranking[f][1]), _pm(fields[f]["ndcg_drop"], fields[f]["ndcg_drop_std"]), _pct(rating[f][1]),
             _pm(fields[f]["rmse_rise"], fields[f]["rmse_rise_std"])] for f in labels]
    rho = {"ranking~ndcg_drop": spearman([ranking[f][0] for f in labels], [fields[f]["ndcg_drop"] for f in labels]),
           "rating~rmse_rise": spearman([rating[f][0] for f in labels], [fields[f]["rmse_rise"] for f in labels])}
    return rows, {"base": damage["base"], "fields": fields, "fisher": {"ranking": ranking, "rating": rating},
                  "spearman": rho}


def sample_groups(report: dict[str, Any], families: dict, n_groups: int, seed: int) -> list[tuple[str, int]]:
    """Up to ``n_groups`` (family, group index), round-robin over kinds so that small kinds (heads) are included.

    Families that no focus task reaches (SVD's MF factors when SVD only ranks) have zero Fisher and zero damage by
    construction; they are left out rather than padding the correlation with ties.
    """
    generator = torch.Generator().manual_seed(seed)
    reached = {name for body in report["tasks"].values() for name, group in body["groups"].items()
               if any(r["score"] > 0 for r in group["ranking"])}
    by_kind: dict[str, list[tuple[str, int]]] = {}
    for name in sorted(reached):
        family = families.get(name)
        if family is not None and family.kind in UNIT_KINDS:
            by_kind.setdefault(family.kind, []).extend((name, i) for i in range(len(family.labels)))
    pools = [[items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
             for _, items in sorted(by_kind.items(), key=lambda kv: UNIT_KINDS.index(kv[0]))]
    chosen: list[tuple[str, int]] = []
    while len(chosen) < n_groups and any(pools):
        for pool in pools:
            if pool and len(chosen) < n_groups:
                chosen.append(pool.pop())
    return chosen


def group_check(run: Run, report: dict[str, Any], data: TrainData, n_groups: int,
                n_samples: int) -> tuple[list[list[object]], dict]:
    """Mask each sampled group alone; Spearman of the loss increase against the group Fisher, per task."""
    model = run.model.eval()
    structure = discover(model)
    families = resolve_targets(ANALYSIS.target_layers, model, structure).families
    probes = list(structure.probes.values())
    stats = FusionStats.compute(model) if isinstance(model, Ensemble) else None  # held fixed, as in the Fisher
    objectives = {t: Objective(t, 1, stats) for t in ANALYSIS.focus_tasks}
    batch = sample_batch(data, n_samples, n_negatives=1, seed=0)
    units = unit_shapes(model, probes, list(objectives.values()), batch)
    base = {t: sample_losses(model, o, batch) for t, o in objectives.items()}
    measured = []
    for name, index in sample_groups(report, families, n_groups, seed=0):
        family, masks = families[name], group_masks(families[name], index, units)
        entry = {"family": name, "kind": family.kind, "group": family.labels[index]}
        for task, objective in objectives.items():
            scores = {r["group"]: r["score"] for r in report["tasks"][task]["groups"].get(name, {}).get("ranking", [])}
            entry[task] = {"fisher": scores.get(family.labels[index], 0.0),
                           "loss_increase": loss_increase(model, objective, batch, probes, masks, base[task])}
        measured.append(entry)
    rows, rho = _group_rows(measured, list(objectives))
    return rows, {"n_samples": len(batch), "groups": measured, "spearman": rho}


def _group_rows(measured: list[dict], tasks: list[str]) -> tuple[list[list[object]], dict]:
    rows, rho = [], {}
    for task in tasks:
        reached = [g for g in measured if g[task]["fisher"] > 0]
        kinds = sorted({g["kind"] for g in measured}, key=UNIT_KINDS.index)
        per_kind = {k: _rho([g for g in measured if g["kind"] == k], task) for k in kinds}
        rho[task] = {"all": _rho(measured, task), "reached": _rho(reached, task), "per_kind": per_kind}
        counts = ", ".join(f"{k} {sum(g['kind'] == k for g in measured)}" for k in kinds)
        by_kind = ", ".join(f"{k} {_num(v)}" for k, v in per_kind.items())
        lowered = sum(g[task]["loss_increase"] < 0 for g in reached)  # g^2 cannot see the gradient's sign
        rows.append([task, len(measured), counts, _num(rho[task]["all"]), len(reached), _num(rho[task]["reached"]),
                     lowered, by_kind])
    return rows, rho


def _rho(groups: list[dict], task: str) -> float | None:
    return spearman([g[task]["fisher"] for g in groups], [g[task]["loss_increase"] for g in groups])


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%" if share >= 0.001 else f"{100 * share:.2g}%"


def _pm(mean: float, std: float) -> str:
    return f"{mean:+.4f} ± {std:.4f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _goal(value: float | None) -> str:
    if value is None:
        return "undefined"
    return f"{value:.2f} ({'meets' if value >= SPEARMAN_GOAL else '**below**'} the goal >= {SPEARMAN_GOAL})"


def measure_teacher(name: str, data: DataSpec, dataset, epochs: dict[str, float], args: argparse.Namespace,
                    tmp: Path) -> dict[str, Any]:
    """Timing, field and group checks of one teacher."""
    run = resolve_teacher(name, None, data, "p-rank", 0, None, Path(args.root), progress=False)
    print(f"[{name}] timed Fisher ...", flush=True)
    timed = run_fisher(run, TIMED[name], out=tmp / name, progress=False, echo=False)
    analysis, drift = timed, 0.0
    if TIMED[name] != ANALYSIS:
        print(f"[{name}] analysis Fisher (all groups, both tasks; untimed) ...", flush=True)
        analysis = run_fisher(run, ANALYSIS, out=tmp / f"{name}-analysis", progress=False, echo=False)
        drift = field_drift(timed, analysis)  # the same field Fisher whatever the targets (summation order only)
        print(f"[{name}] field Fisher, timed vs analysis pass: max relative difference {drift:.2e}", flush=True)
    time_row, timing = timing_row(name, timed, epochs)
    print(f"[{name}] timing {timing}", flush=True)
    split = make_split(dataset, run.spec.protocol, run.spec.seed, run.spec.fold)
    print(f"[{name}] field permutations ...", flush=True)
    field_rows, fields = field_check(run, analysis, dataset, split, args.repeats)
    print(f"[{name}] fields {fields['spearman']}", flush=True)
    print(f"[{name}] group masking ...", flush=True)
    group_rows, groups = group_check(run, analysis, train_data(dataset, split), args.groups, args.group_samples)
    print(f"[{name}] groups {groups['spearman']}", flush=True)
    return {"time_row": time_row, "timing": timing, "field_rows": field_rows, "fields": fields,
            "group_rows": [[name, *r] for r in group_rows], "groups": groups, "field_fisher_drift": drift,
            "fisher_samples": next(iter(analysis["tasks"].values()))["n_samples"]}


def render(results: dict[str, dict[str, Any]], data: DataSpec, args: argparse.Namespace) -> str:
    dataset_name = data.name if data.name != "synthetic" else f"synthetic ({args.synthetic or 'defaults'})"
    parts = [f"## Fisher information: cost and validity on {dataset_name} P-RANK, seed 0 (`benchmarks/fisher.py`)",
             machine_line() + f" `torch.get_num_threads()` = {torch.get_num_threads()} (left as is); load average "
             f"{args.load[0]:.2f} at the start and {os.getloadavg()[0]:.2f} at the end (timings need an idle machine: "
             "other processes on the cores slow multi-threaded small-batch training far more than the Fisher).",
             "**Timing.** Exact estimator (per-sample gradients) over every training triple, one sampled negative; "
             "Fisher seconds include the ensemble's fusion statistics, not writing the outputs. One epoch = "
             "optimisation seconds of one epoch through the library's trainer with the zoo's settings, measured in "
             "this run (SVD: its biased-MF epoch; the closed-form PureSVD fit is not an epoch).",
             markdown_table(["teacher", "command", "triples", "Fisher s", "one epoch s", "reference s", "ratio",
                             "goal"], [r["time_row"] for r in results.values()])]
    for name, result in results.items():
        rho = result["fields"]["spearman"]
        base = result["fields"]["base"]
        parts += [f"**Fields, {name}** (test NDCG@10 {base['ndcg@10']:.4f}, RMSE {base['rmse']:.4f} unpermuted; "
                  f"damage = mean ± sd over {args.repeats} seeded permutations of the field across entities, "
                  "the same permutations for both teachers):",
                  markdown_table(["field", "ranking Fisher share", "NDCG@10 drop", "rating Fisher share",
                                  "RMSE rise"], result["field_rows"]),
                  f"Spearman, ranking Fisher vs NDCG@10 drop: {_goal(rho['ranking~ndcg_drop'])}; rating Fisher vs "
                  f"RMSE rise: {_goal(rho['rating~rmse_rise'])}."]
    n_samples = next(iter(results.values()))["groups"]["n_samples"]
    parts += [f"**Groups** (each sampled group masked alone, i.e. its units of the probed activation set to 0: the "
              f"mask the group Fisher differentiates; loss increase = mean focus-task loss on {n_samples:,} fixed "
              "training triples with one fixed negative each, ensemble fusion statistics held fixed as in the "
              "Fisher; *reached* = groups with Fisher > 0 for that task):",
              markdown_table(["teacher", "task", "groups", "by kind", "Spearman (all)", "reached", "Spearman "
                              "(reached)", "reached, masking lowers the loss", "Spearman per kind"],
                             [r for res in results.values() for r in res["group_rows"]])]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA_ROOT))
    parser.add_argument("--dataset", default="ml-100k", choices=("ml-100k", "synthetic"))
    parser.add_argument("--synthetic", default=None, help="generator settings, e.g. n_users=200,n_items=300")
    parser.add_argument("--root", default=str(ROOT), help="runs store holding (or receiving) the teachers")
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--repeats", type=int, default=3, help="seeded permutations per field")
    parser.add_argument("--groups", type=int, default=40, help="groups masked per teacher")
    parser.add_argument("--group-samples", type=int, default=2000, help="training triples for the loss increase")
    parser.add_argument("--json", default=None, help="also write every measured number to this file")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    args.load = os.getloadavg()
    synthetic = ({k: int(v) for k, v in (p.split("=") for p in args.synthetic.split(","))}
                 if args.synthetic else None)
    data = (DataSpec("ml-100k", data_dir=args.data_dir) if args.dataset == "ml-100k"
            else DataSpec("synthetic", synthetic=synthetic))
    dataset = data.load()
    teachers = [t.strip() for t in args.teachers.split(",") if t.strip()]
    needed = sorted({m for t in teachers for m in (DEFAULT_ALGORITHMS if t == "ensemble" else (t,))})
    print(f"one epoch of {', '.join(needed)} ...", flush=True)
    epochs = {m: epoch_seconds(m, data, dataset) for m in needed}
    print(f"epochs {epochs}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fisher-bench-") as tmp:
        results = {t: measure_teacher(t, data, dataset, epochs, args, Path(tmp)) for t in teachers}
    body = render(results, data, args)
    if args.json:
        Path(args.json).write_text(json.dumps({t: {k: v for k, v in r.items() if not k.endswith("rows")}
                                               for t, r in results.items()}, indent=1, default=str))
    if not args.no_write:
        write_section("fisher", body)
    print(body)


if __name__ == "__main__":
    main()
