"""The seed's plan step 3: distil a student from the teacher while Fisher-guided pruning shrinks it.

1. The teacher's signals are computed once (``teacher.compute_signals``); the student is built on the teacher's own
   split (same dataset, protocol, seed), so teacher and student are evaluated on the same test users.
2. Dense phase: the student trains on the distillation task (early stopping on valid NDCG@10).
3. Pruning steps (``schedule.step_targets``): score every structured group (Fisher of the distillation loss by
   default, recomputed on the current student at each step), remove the least important per parameter
   (``schedule.select``), physically shrink the student (``surgery.shrink``, checked against the masked model),
   then let it recover on the same task.
4. The final student is evaluated like any run and saved with the teacher's metrics beside its own.

Every step appends a row to ``trajectory.jsonl`` (parameters, valid NDCG@10 / RMSE, loss, what was removed).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import distillrec
from distillrec.data.splits import make_split
from distillrec.distillation.task import DistillationTask, LossConfig
from distillrec.distillation.teacher import compute_signals
from distillrec.errors import DistillrecError
from distillrec.evaluation.cost import count_parameters, machine_info, peak_rss_mb
from distillrec.evaluation.protocols import EXCLUDED_PARTS, evaluate, make_validator, serving_cost
from distillrec.models.base import Recommender, TrainData
from distillrec.pruning.groups import prunable_parameters, require_prunable
from distillrec.pruning.importance import IMPORTANCES, group_scores
from distillrec.pruning.schedule import select, step_targets
from distillrec.pruning.surgery import max_masked_difference, shrink
from distillrec.registry import create_model, model_class
from distillrec.runs import Run, RunSpec, data_shape, load_run, save_run, train_data
from distillrec.training.tasks import Batch
from distillrec.training.trainer import TrainConfig, Trainer

#: largest allowed gap between the masked and the physically shrunk student, relative to the outputs' scale
SHRINK_TOLERANCE = 1e-5


@dataclass(frozen=True)
class DistillConfig:
    """Everything ``distillrec distill`` decides besides the teacher (flags map one to one)."""

    student: str = "lightweight_model"
    student_config: dict[str, Any] = field(default_factory=dict)
    loss: LossConfig = field(default_factory=LossConfig)
    distill: bool = True  # False: ground-truth loss only (the "no distillation" baselines)
    n_top: int = 20
    pruning_ratio: float = 0.5
    pruning_steps: int = 5
    importance: str = "fisher"
    fisher_samples: int = 8192
    epochs: int = 60
    recover_epochs: int = 10
    patience: int = 5
    lr: float = 2e-3
    batch_size: int = 1024
    warm_start: str | None = None
    seed: int = 0
    latency_requests: int = 1000

    def validate(self) -> None:
        self.loss.validate()
        model_class(self.student)
        if self.importance not in IMPORTANCES:
            raise DistillrecError(f"--importance must be one of {', '.join(IMPORTANCES)}, got {self.importance!r}")
        if not 0 <= self.pruning_ratio < 1:
            raise DistillrecError(f"--pruning_ratio must be in [0, 1), got {self.pruning_ratio}")
        if self.pruning_ratio > 0:
            require_prunable(model_class(self.student))
        for name in ("pruning_steps", "fisher_samples", "epochs", "batch_size", "n_top"):
            if getattr(self, name) < 1:
                raise DistillrecError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.recover_epochs < 0 or self.patience < 1 or self.lr <= 0:
            raise DistillrecError("--recover_epochs must be >= 0, --patience >= 1 and --lr > 0")


def distill(teacher: Run, config: DistillConfig, out: Path | None = None, progress: bool = True,
            teacher_cost: dict[str, Any] | None = None) -> Run:
    """Distil (and prune) a student from ``teacher``; saves the student's run folder to ``out`` when given.

    ``teacher_cost`` is the teacher's ``serving_cost`` measured earlier in the same process (a benchmark distilling
    many students from one teacher measures it once); by default it is measured after the student's.
    """
    config.validate()
    start = time.perf_counter()
    device = next(teacher.model.buffers(), torch.zeros(())).device
    spec = teacher.spec
    dataset = spec.data.load()
    split = make_split(dataset, spec.protocol, spec.seed, spec.fold)
    data = train_data(dataset, split).to(device)
    torch.manual_seed(config.seed)
    student = _student(config, dataset, data, device)
    signals = compute_signals(teacher.model, data, config.n_top).to(device) if config.distill else None
    generator = torch.Generator().manual_seed(config.seed + 1)
    task = DistillationTask(config.loss, data.matrix, signals, student, generator).to(device)
    validate = make_validator(dataset, split, ("rating", "ranking"), device=device)
    log = _Log(out, progress)
    log.info(f"student {config.student}: {count_parameters(student):,} parameters"
             + (f" ({prunable_parameters(student):,} prunable)" if config.pruning_ratio > 0 else ""))
    dense = _train(student, task, data, validate, config, config.epochs, out, progress, "dense", config.seed)
    log.step(_row(0, student, dense, validate, config, removed={}, max_diff=None))
    if config.pruning_ratio > 0:
        start_prunable = prunable_parameters(student)
        targets = step_targets(start_prunable, config.pruning_ratio, config.pruning_steps)
        for step, target in enumerate(tqdm(targets, desc="prune", disable=not progress, leave=False), 1):
            student, removed, max_diff = _prune_step(student, task, data, config, target, step, device)
            recovered = _train(student, task, data, validate, config, config.recover_epochs, out, progress,
                               f"step{step}", config.seed + step)
            log.step(_row(step, student, recovered, validate, config, removed, max_diff))
    metrics = _final_metrics(student, teacher, config, dataset, split, log.rows, time.perf_counter() - start, device,
                             teacher_cost)
    run = Run(RunSpec(model=config.student, data=spec.data, protocol=spec.protocol, fold=spec.fold, seed=spec.seed,
                      task="both", model_config=student.config_dict(),
                      train=TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                        patience=config.patience, n_negatives=config.loss.n_negatives),
                      device=spec.device),
              student, metrics, teacher.user_ids, teacher.item_ids, teacher.titles,
              split.matrix(dataset, *EXCLUDED_PARTS["test"]), Path(out) if out else None)
    if out is not None:
        save_run(run, Path(out))
        _write_config(Path(out), config, teacher)
        from distillrec.distillation.plots import plot_trajectory  # matplotlib only when saving

        plot_trajectory(log.rows, Path(out) / "trajectory.png", teacher.metrics.get("valid", {}))
    return run


def _student(config: DistillConfig, dataset, data: TrainData, device: torch.device) -> Recommender:
    if config.warm_start:
        warm = load_run(Path(config.warm_start), device=str(device))
        if warm.model.model_name != config.student:
            raise DistillrecError(f"--warm_start {config.warm_start} holds a {warm.model.model_name}, "
                                  f"not a {config.student}")
        return warm.model.train()
    student = create_model(config.student, data_shape(dataset), config.student_config).to(device)
    student.prepare(data, seed=config.seed)
    return student.to(device)


def _train(student, task, data, validate, config: DistillConfig, epochs: int, out: Path | None, progress: bool,
           phase: str, seed: int):
    """Early-stopped training on the distillation task (the trainer restores the best valid NDCG@10 state)."""
    if epochs == 0:
        return None
    log_path = Path(out) / f"train_log_{phase}.jsonl" if out else None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
    train = TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr, patience=config.patience)
    return Trainer(train, log_path, progress).fit(student, task, data, validate, "ndcg@10", seed=seed)


def fisher_batches(data: TrainData, n_samples: int, batch_size: int, seed: int) -> list[Batch]:
    """A seeded subset of training triples, in batches carrying their training-row index."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.users), generator=generator)[:n_samples].to(data.users.device)
    return [Batch(data.users[idx], data.items[idx], data.ratings[idx], idx) for idx in order.split(batch_size)]


def _prune_step(student, task: DistillationTask, data: TrainData, config: DistillConfig, target: int, step: int,
                device: torch.device):
    """Score, select, shrink and verify one step.

    Returns ``(smaller student, removed units, largest relative |masked - shrunk|)``.
    """
    batches = fisher_batches(data, config.fisher_samples, config.batch_size, config.seed + 100 + step)
    scores = group_scores(config.importance, student, loss=lambda m, b: task.per_sample(m, b)[0], batches=batches,
                          seed=config.seed + step)
    plan = select(student, scores, target)
    small, kept_latent = shrink(student, plan.removed)
    users = torch.arange(min(student.n_users, 256), device=device)
    max_diff = max_masked_difference(student, plan.removed, small, users, data.items[:len(users)])
    if max_diff > SHRINK_TOLERANCE:
        raise DistillrecError(f"pruning step {step}: the shrunk student differs from the masked one by {max_diff:.2e}")
    task.keep_latent(kept_latent)
    removed = {name: sorted(units) for name, units in plan.removed.items()}
    if plan.fields_dropped:
        removed["fields_dropped"] = plan.fields_dropped
    return small, removed, max_diff


def _row(step: int, student, result, validate, config: DistillConfig, removed, max_diff) -> dict[str, Any]:
    metrics = validate(student.eval())
    row = {"step": step, "params": count_parameters(student),
           "prunable_params": prunable_parameters(student) if config.pruning_ratio > 0 else None,
           "valid_ndcg@10": metrics["ndcg@10"], "valid_rmse": metrics["rmse"],
           "loss": result.history[result.best_epoch]["loss"] if result and result.history else None,
           "epochs": result.epochs_run if result else 0, "removed": removed, "max_masked_difference": max_diff}
    return row


class _Log:
    """Trajectory rows, echoed as one line per step and appended to ``trajectory.jsonl``."""

    def __init__(self, out: Path | None, progress: bool) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = Path(out) / "trajectory.jsonl" if out else None
        self.progress = progress
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)

    def info(self, text: str) -> None:
        if self.progress:
            tqdm.write(text)

    def step(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
        self.info(f"step {row['step']}: {row['params']:,} params, valid NDCG@10 {row['valid_ndcg@10']:.4f}, "
                  f"valid RMSE {row['valid_rmse']:.4f}")


def _final_metrics(student, teacher: Run, config: DistillConfig, dataset, split, rows, seconds: float,
                   device: torch.device, teacher_cost: dict[str, Any] | None) -> dict[str, Any]:
    cost = {"params": count_parameters(student) + sum(b.numel() for b in student.buffers()), "bytes": None,
            "train_seconds": round(seconds, 3), "epochs": sum(r["epochs"] for r in rows),
            **serving_cost(student, dataset.n_users, requests=config.latency_requests, device=device),
            "peak_rss_mb": round(peak_rss_mb(), 1), "threads": torch.get_num_threads()}
    teacher_now = teacher_cost
    if teacher_now is None:
        teacher_now = serving_cost(teacher.model, dataset.n_users, requests=config.latency_requests, device=device)
    teacher_metrics = {k: teacher.metrics.get(k) for k in ("model", "valid", "test", "cost")}
    teacher_metrics["cost_same_run"] = teacher_now
    test = evaluate(student, dataset, split, "test", device=device)
    return {"model": config.student, "dataset": dataset.name, "protocol": teacher.spec.protocol, "fold": split.fold,
            "seed": teacher.spec.seed, "task": "both", "heads": ["rating", "ranking"],
            "valid": evaluate(student, dataset, split, "valid", device=device), "test": test, "cost": cost,
            "teacher": teacher_metrics, "teacher_run": str(teacher.folder) if teacher.folder else None,
            "distillation": {"distill": config.distill, "importance": config.importance,
                             "pruning_ratio": config.pruning_ratio, "steps": len(rows) - 1,
                             "start_params": rows[0]["params"], "start_prunable": rows[0]["prunable_params"],
                             "final_prunable": rows[-1]["prunable_params"],
                             "max_masked_difference": max((r["max_masked_difference"] or 0.0) for r in rows),
                             "retained_ndcg@10": _ratio(test.get("ndcg@10"), teacher.metrics["test"].get("ndcg@10")),
                             "latency_p99_speedup": _ratio(teacher_now["latency_p99_ms"], cost["latency_p99_ms"]),
                             "trajectory": [{k: r[k] for k in ("step", "params", "prunable_params", "valid_ndcg@10",
                                                               "valid_rmse", "epochs")} for r in rows]},
            "machine": machine_info(), "version": distillrec.__version__}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _write_config(out: Path, config: DistillConfig, teacher: Run) -> None:
    from distillrec.io import write_json

    write_json(out / "distill_config.json", {**dataclasses.asdict(config),
                                             "teacher_run": str(teacher.folder) if teacher.folder else None})
