"""One trainer for every gradient-trained model: epochs, early stopping, best-state restore, logging.

The loop reads top to bottom: shuffle indices with a seeded generator, slice in-memory tensors by
vectorised indexing, step, validate, keep the best state. No per-sample Python on the hot path.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from distillrec.errors import DistillrecError
from distillrec.models.base import Recommender, TrainData
from distillrec.training.tasks import Batch

Validator = Callable[[Recommender], dict[str, float]]
#: metrics where lower is better; everything else is maximised
LOWER_IS_BETTER = ("rmse", "mae", "loss")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by all gradient models (model sizes live in the model configs)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    patience: int = 8
    ranking_loss: str = "bpr"
    n_negatives: int = 1
    rating_weight: float = 0.5
    #: early-stopping metric on the valid split; "auto" = ndcg@10 when a ranking head is trained, else rmse
    monitor: str = "auto"
    #: run the training steps through ``torch.compile`` (static shapes; compiling takes ~7-10 s once and needs a
    #: C++ compiler on CPU). Measured by benchmarks/zoo.py (u1.base, batch 256, 2 threads): AutoInt 1.3 vs 1.4 s
    #: per epoch eager (1.1 vs 1.7 in another run), xDeepFM no gain, DeepFM slower (1.0 vs 0.6 s): a choice per
    #: model, so off by default; float results differ from eager in the last bits.
    compile: bool = False


@dataclass
class TrainResult:
    """What happened during training: per-epoch history and the restored best epoch."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float | None = None
    monitor: str = ""
    seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def seconds_per_epoch(self) -> float:
        """Mean optimisation time of an epoch, validation excluded (what other libraries report)."""
        return sum(row["train_seconds"] for row in self.history) / max(1, self.epochs_run)


class Trainer:
    """Runs a task on a model with early stopping on ``monitor`` computed by ``validate``."""

    def __init__(self, config: TrainConfig, log_path: Path | None = None, progress: bool = True) -> None:
        self.config = config
        self.log_path = log_path
        self.progress = progress

    def fit(self, model: Recommender, task: object, data: TrainData, validate: Validator, monitor: str,
            seed: int = 0) -> TrainResult:
        """Train until ``patience`` epochs pass without improving ``monitor``; restore the best state."""
        cfg = self.config
        optimizer = self._optimizer(model, task)
        # the task sees the compiled module (attribute access falls through to the model); validation and
        # everything after training use the eager model, whose parameters it shares; static shapes (the last,
        # smaller batch gets a graph of its own)
        stepped = torch.compile(model, dynamic=False) if cfg.compile else model
        device = data.users.device
        generator = torch.Generator(device="cpu").manual_seed(seed)
        lower = monitor in LOWER_IS_BETTER
        result = TrainResult(monitor=monitor)
        best_state, stale = None, 0
        start = time.perf_counter()
        bar = tqdm(range(cfg.epochs), desc=f"train {model.model_name}", disable=not self.progress, leave=False)
        for epoch in bar:
            model.train()
            epoch_start = time.perf_counter()
            losses = self._run_epoch(stepped, task, data, optimizer, generator, device)
            valid_start = time.perf_counter()
            model.eval()
            metrics = validate(model)
            if monitor not in metrics:
                raise DistillrecError(f"monitor {monitor!r} not among validation metrics {sorted(metrics)}")
            row = {"epoch": epoch, **losses, **{f"valid_{k}": v for k, v in metrics.items()},
                   "train_seconds": valid_start - epoch_start, "valid_seconds": time.perf_counter() - valid_start}
            result.history.append(row)
            self._log(row)
            value = metrics[monitor]
            improved = result.best_value is None or (value < result.best_value if lower else value > result.best_value)
            if improved:
                result.best_value, result.best_epoch, stale = value, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            bar.set_postfix({k: f"{v:.4f}" for k, v in [*losses.items(), (monitor, value)]})
            if stale >= cfg.patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        result.seconds = time.perf_counter() - start
        return result

    def _run_epoch(self, model: Recommender, task: object, data: TrainData, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, device: torch.device) -> dict[str, float]:
        order = torch.randperm(len(data.users), generator=generator).to(device)
        totals: dict[str, float] = {}
        n_batches = 0
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start:start + self.config.batch_size]
            batch = Batch(data.users[idx], data.items[idx], data.ratings[idx], idx)
            loss, parts = task.loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n_batches += 1
            for key, value in {"loss": float(loss.detach()), **parts}.items():
                totals[key] = totals.get(key, 0.0) + value
        return {key: value / max(1, n_batches) for key, value in totals.items()}

    def _optimizer(self, model: Recommender, task: object) -> torch.optim.Optimizer:
        """Adam(W) over the model's parameters and the task's own (a distillation task's projections)."""
        own = task.parameters() if callable(getattr(task, "parameters", None)) else []
        params = [p for p in [*model.parameters(), *own] if p.requires_grad]
        if self.config.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        if self.config.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        raise DistillrecError(f"optimizer must be adam or adamw, got {self.config.optimizer!r}")

    def _log(self, row: dict[str, float]) -> None:
        if self.log_path is None:
            return
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
