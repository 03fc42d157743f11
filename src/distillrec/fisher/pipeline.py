"""The seed's plan step 2 end to end: resolve the teacher, compute its Fisher, write the report and plots.

``teacher_type="ensemble"`` is the seed's default ensemble (svd, xdeepfm, autoint; weights 0.4, 0.4, 0.2; tasks
ranking, rating, balance) for the dataset, protocol and seed: reused from ``runs/ensemble_DATASET_PROTOCOL_seedS``
(where ``distillrec ensemble`` puts it) or built there. Any other name is one model trained with the zoo's
settings (reused from the runs store, trained if missing); ``teacher`` names a run folder instead.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distillrec.data.splits import make_split
from distillrec.ensemble.build import build_ensemble, zoo_member_specs
from distillrec.ensemble.weighted import Ensemble
from distillrec.ensemble.weights import DEFAULT_ALGORITHMS, DEFAULT_TASKS, DEFAULT_WEIGHTS, parse_members
from distillrec.errors import DistillrecError
from distillrec.fisher.empirical import ESTIMATORS, FisherResult, compute_fisher
from distillrec.fisher.groups import discover
from distillrec.fisher.losses import FOCUS_TASKS, FusionStats
from distillrec.fisher.report import build_report, save_fisher, summary_text, write_report
from distillrec.fisher.targets import resolve_targets
from distillrec.io import read_json, write_json
from distillrec.registry import model_class
from distillrec.runs import DataSpec, Run, load_run, train_data
from distillrec.store import ensemble_folder, get_or_train, run_folder
from distillrec.zoo import zoo_spec


@dataclass(frozen=True)
class FisherConfig:
    """What to compute: the flags of ``distillrec fisher`` (the teacher is resolved separately)."""

    target_layers: str = "all"
    focus_tasks: tuple[str, ...] = ("ranking", "rating")
    estimator: str = "exact"
    batch_size: int = 512
    n_negatives: int = 1
    max_samples: int | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise DistillrecError(f"--estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        for task in self.focus_tasks:
            if task not in FOCUS_TASKS:
                raise DistillrecError(f"--focus_tasks: unknown task {task!r}; choose from {', '.join(FOCUS_TASKS)}")
        if not self.focus_tasks or len(set(self.focus_tasks)) != len(self.focus_tasks):
            raise DistillrecError("--focus_tasks: give each task once, e.g. ranking,rating")
        if self.batch_size < 1 or self.n_negatives < 1:
            raise DistillrecError("--batch_size and --n_negatives must be positive")
        if self.max_samples is not None and self.max_samples < 1:
            raise DistillrecError(f"--max_samples must be positive, got {self.max_samples}")


def parse_tasks(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def resolve_teacher(teacher_type: str, teacher: str | None, data: DataSpec, protocol: str = "p-rank",
                    seed: int = 0, fold: int | None = None, root: Path | None = None, device: str = "cpu",
                    progress: bool = True) -> Run:
    """The teacher run: a folder, the seed's default ensemble, or one zoo model (trained if missing)."""
    if teacher:
        return load_run(Path(teacher), device=device)
    if teacher_type == "ensemble":
        folder = ensemble_folder(data, protocol, seed, fold, root)
        if (folder / "metrics.json").is_file():
            run = load_run(folder, device=device)
            _check_default_ensemble(run, data, fold, folder)
            if _members_current(run, data, protocol, seed, fold, root):
                return run
            warnings.warn(f"{folder}: its members were retrained since it was built; rebuilding it", stacklevel=2)
        members = parse_members(",".join(DEFAULT_ALGORITHMS), ",".join(map(str, DEFAULT_WEIGHTS)),
                                ",".join(DEFAULT_TASKS))
        return build_ensemble(members, data, protocol, seed, fold, root=root, out=folder, progress=progress,
                              device=device)
    model_class(teacher_type)  # one-line error listing the known models
    if getattr(model_class(teacher_type), "composite", False):
        raise DistillrecError(f"--teacher_type {teacher_type}: use 'ensemble' or --teacher RUN_FOLDER")
    return get_or_train(zoo_spec(teacher_type, data, protocol, seed, fold, device), root, progress=progress)[0]


def _check_default_ensemble(run: Run, data: DataSpec, fold: int | None, folder: Path) -> None:
    config = run.model.config
    # the data folder may be spelled differently between commands; what is loaded must be the same
    stored = dataclasses.replace(run.spec.data, data_dir=None)
    same = (tuple(config.models) == DEFAULT_ALGORITHMS and tuple(config.tasks) == DEFAULT_TASKS
            and tuple(config.weights) == DEFAULT_WEIGHTS and stored == dataclasses.replace(data, data_dir=None)
            and run.spec.fold == fold)
    if not same:
        raise DistillrecError(f"{folder} holds another ensemble than the seed's default "
                              f"({','.join(config.models)}); pass it with --teacher {folder} or move it away")


def _members_current(run: Run, data: DataSpec, protocol: str, seed: int, fold: int | None,
                     root: Path | None) -> bool:
    """Whether the ensemble was built from the member runs the current settings give (same run-folder names)."""
    config = run.model.config
    expected = [run_folder(s, root).name for s in zoo_member_specs(config.models, config.tasks, data, protocol, seed,
                                                                     fold)]
    return [Path(f).name for f in config.member_runs] == expected


def _epoch_seconds(run: Run) -> dict[str, float]:
    """Seconds per training epoch recorded by the teacher's run (or its members' runs)."""
    cost = run.metrics.get("cost", {})
    if cost.get("seconds_per_epoch"):
        return {run.spec.model: float(cost["seconds_per_epoch"])}
    seconds = {}
    for member in run.metrics.get("members", []):
        folder = Path(member.get("run") or "")
        if (folder / "metrics.json").is_file():
            value = read_json(folder / "metrics.json").get("cost", {}).get("seconds_per_epoch")
            if value:
                seconds[member["model"]] = float(value)
    return seconds


def run_fisher(run: Run, config: FisherConfig, out: Path | None = None, progress: bool = True,
               echo: bool = True) -> dict[str, Any]:
    """Compute the teacher's Fisher on its training split and write the outputs to ``out``; returns the report."""
    config.validate()
    out = Path(out) if out is not None else _default_out(run)
    model = run.model.eval()
    dataset = run.spec.data.load()
    split = make_split(dataset, run.spec.protocol, run.spec.seed, run.spec.fold)
    device = next(model.parameters(), torch.zeros(())).device
    data = train_data(dataset, split).to(device)
    structure = discover(model)
    selection = resolve_targets(config.target_layers, model, structure)
    start = time.perf_counter()
    needs_stats = isinstance(model, Ensemble) and set(config.focus_tasks) - {"rating"}
    stats = FusionStats.compute(model) if needs_stats else None
    stats_seconds = time.perf_counter() - start
    results = compute_fisher(model, data, config.focus_tasks, selection, config.estimator, config.batch_size,
                             config.n_negatives, config.seed, config.max_samples, stats, progress)
    seconds = time.perf_counter() - start
    meta = _meta(run, config, dataset.name, selection, seconds, stats_seconds)
    numels = {n: p.numel() for n, p in model.named_parameters()}
    report = build_report(results, selection.families, numels, structure.scopes, meta)
    write_outputs(out, results, report, config)
    if echo:
        print(summary_text(report))
        print(f"fisher written to {out}")
    return report


def _default_out(run: Run) -> Path:
    if run.folder is None:
        raise DistillrecError("the teacher has no run folder: pass --out")
    return Path(run.folder) / "fisher"


def _meta(run: Run, config: FisherConfig, dataset: str, selection, seconds: float,
          stats_seconds: float) -> dict[str, Any]:
    epochs = _epoch_seconds(run)
    model = run.model
    teacher = {"model": model.model_name, "run": str(run.folder) if run.folder else None, "dataset": dataset,
               "protocol": run.spec.protocol, "seed": run.spec.seed, "fold": run.spec.fold}
    if isinstance(model, Ensemble):
        teacher.update({"members": list(model.config.models), "member_tasks": list(model.config.tasks),
                        "weights": list(model.config.weights), "fusion": model.config.fusion,
                        "fusion_note": "per-user z-score statistics held fixed" + (
                            "; rank fusion is not differentiable: gradients through the z-score surrogate"
                            if model.config.fusion == "rank" else "")})
    timing = {"fisher_seconds": round(seconds, 3), "fusion_stats_seconds": round(stats_seconds, 3),
              "train_seconds_per_epoch": epochs, "threads": torch.get_num_threads()}
    if epochs:
        timing["fisher_over_one_epoch_of_each"] = round(seconds / sum(epochs.values()), 3)
    return {"teacher": teacher, "target_layers": config.target_layers, "selected_parameters": len(selection.params),
            "unmatched_targets": selection.unmatched, "focus_tasks": list(config.focus_tasks),
            "n_negatives": config.n_negatives, "batch_size": config.batch_size, "timing": timing}


def write_outputs(folder: Path, results: dict[str, FisherResult], report: dict[str, Any],
                  config: FisherConfig) -> list[Path]:
    """``fisher.safetensors``, ``fisher_report.json``, ``fisher_config.json`` and the PNG plots."""
    from distillrec.fisher.plots import write_plots  # matplotlib loads only when plots are written

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_fisher(folder / "fisher.safetensors", results)
    write_json(folder / "fisher_config.json", dataclasses.asdict(config))
    return [folder / "fisher.safetensors", write_report(folder, report), *write_plots(report, folder)]
