"""Run folders: train a model under a protocol, save it, load it back without unpickling anything.

A run folder holds ``config.json`` (everything needed to rebuild the model and its data), ``model.safetensors``,
``ids.json`` (original ids and titles), ``seen.safetensors`` (the items excluded when recommending),
``metrics.json`` and ``train_log.jsonl``. Each file is written atomically; ``metrics.json`` is written last,
so its presence marks a finished run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import distillrec
from distillrec.data.dataset import Dataset
from distillrec.data.features import encode_side_features
from distillrec.data.interactions import InteractionMatrix
from distillrec.data.loading import load_dataset
from distillrec.data.splits import Split, make_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.cost import machine_info, peak_rss_mb
from distillrec.evaluation.protocols import EXCLUDED_PARTS, evaluate, make_validator, serving_cost
from distillrec.io import load_tensors, read_json, save_tensors, write_json
from distillrec.models.base import TASKS, DataShape, Recommender, TrainData
from distillrec.registry import build_config, create_model, model_class
from distillrec.training.tasks import build_task
from distillrec.training.trainer import TrainConfig, Trainer, TrainResult


@dataclass(frozen=True)
class DataSpec:
    """How to load a dataset; stored in the run so ``evaluate`` can rebuild the same split."""

    name: str = "synthetic"
    data_dir: str | None = None
    path: str | None = None
    columns: dict[str, str] | None = None
    rating_scale: tuple[float, float] | None = None
    sep: str | None = None
    synthetic: dict[str, Any] | None = None

    def load(self) -> Dataset:
        return load_dataset(self.name, data_dir=Path(self.data_dir) if self.data_dir else None,
                            path=Path(self.path) if self.path else None, columns=self.columns,
                            rating_scale=self.rating_scale, sep=self.sep, synthetic=self.synthetic)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a trained model: model + settings, data, protocol, seed, task."""

    model: str
    data: DataSpec = field(default_factory=DataSpec)
    protocol: str = "p-rank"
    fold: int | None = None
    seed: int = 0
    task: str = "both"
    model_config: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunSpec:
        data = dict(raw.get("data") or {})
        if data.get("rating_scale") is not None:
            data["rating_scale"] = tuple(data["rating_scale"])
        return cls(model=raw["model"], data=DataSpec(**data), protocol=raw["protocol"], fold=raw.get("fold"),
                   seed=raw["seed"], task=raw["task"], model_config=dict(raw.get("model_config") or {}),
                   train=TrainConfig(**raw.get("train", {})), device=raw.get("device", "cpu"))


@dataclass
class Run:
    """A trained (or loaded) model with what is needed to evaluate and serve it."""

    spec: RunSpec
    model: Recommender
    metrics: dict[str, Any]
    user_ids: list[str]
    item_ids: list[str]
    titles: list[str] | None
    seen: InteractionMatrix
    folder: Path | None = None


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; an explicit ``cuda`` without a GPU is a one-line error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DistillrecError("--device cuda requested but no CUDA device is available")
    return torch.device(device)


def train_data(dataset: Dataset, split: Split) -> TrainData:
    """The train part as tensors, with side features encoded for the models."""
    rows = split.train
    return TrainData(users=torch.from_numpy(dataset.users[rows]), items=torch.from_numpy(dataset.items[rows]),
                     ratings=torch.from_numpy(dataset.ratings[rows]).float(), matrix=split.matrix(dataset, "train"),
                     n_users=dataset.n_users, n_items=dataset.n_items,
                     user_features=encode_side_features(dataset.user_features)[1],
                     item_features=encode_side_features(dataset.item_features)[1])


def data_shape(dataset: Dataset) -> DataShape:
    """Sizes and (encoded) feature fields of a dataset: what a model is built from."""
    return DataShape(dataset.n_users, dataset.n_items, tuple(dataset.rating_scale),
                     encode_side_features(dataset.user_features)[0], encode_side_features(dataset.item_features)[0])


def train_run(spec: RunSpec, out: Path | None = None, progress: bool = True,
              dataset: Dataset | None = None, latency_requests: int = 1000) -> Run:
    """Load data, split, fit, evaluate on valid and test, measure cost; save to ``out`` when given.

    ``latency_requests`` single-user requests time the p50/p99 latency (PROTOCOL.md asks for >= 1,000).
    """
    if spec.task not in TASKS:
        raise DistillrecError(f"--task must be one of {', '.join(TASKS)}, got {spec.task!r}")
    build_config(spec.model, spec.model_config)  # fail fast on unknown settings
    device = resolve_device(spec.device)
    dataset = dataset or spec.data.load()
    split = make_split(dataset, spec.protocol, spec.seed, spec.fold)
    torch.manual_seed(spec.seed)
    model = create_model(spec.model, data_shape(dataset), spec.model_config)
    model.rank_by = "rating" if spec.task == "rating" else "logit"
    data = train_data(dataset, split)
    heads = ("rating", "ranking") if spec.task == "both" else (spec.task,)
    log_path = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        log_path = Path(out) / "train_log.jsonl"
        log_path.unlink(missing_ok=True)
    start = time.perf_counter()
    model.prepare(data, seed=spec.seed)
    model.to(device)
    result = _fit_gradient_heads(model, spec, dataset, split, data.to(device), heads, log_path, progress, device)
    train_seconds = time.perf_counter() - start
    metrics = _final_metrics(model, spec, dataset, split, heads, result, train_seconds, device, latency_requests)
    seen = split.matrix(dataset, *EXCLUDED_PARTS["test"])
    run = Run(spec, model, metrics, [str(u) for u in dataset.user_ids], [str(i) for i in dataset.item_ids],
              None if dataset.item_titles is None else [str(t) for t in dataset.item_titles], seen)
    if out is not None:
        save_run(run, Path(out))
    return run


def _fit_gradient_heads(model: Recommender, spec: RunSpec, dataset: Dataset, split: Split, data: TrainData,
                        heads: tuple[str, ...], log_path: Path | None, progress: bool,
                        device: torch.device) -> TrainResult:
    trained = tuple(h for h in ("rating", "ranking") if h in heads and h in model.gradient_heads)
    if not trained:
        return TrainResult()
    generator = torch.Generator(device="cpu").manual_seed(spec.seed + 1)
    task = build_task(trained, data.matrix, spec.train.ranking_loss, spec.train.n_negatives,
                      spec.train.rating_weight, generator)
    monitor = spec.train.monitor
    if monitor == "auto":
        monitor = "ndcg@10" if "ranking" in trained else "rmse"
    watched = {*trained, "rating" if monitor in ("rmse", "mae") else "ranking"}
    validate = make_validator(dataset, split, tuple(sorted(watched)), device=device)
    return Trainer(spec.train, log_path, progress).fit(model, task, data, validate, monitor, seed=spec.seed)


def _final_metrics(model: Recommender, spec: RunSpec, dataset: Dataset, split: Split, heads: tuple[str, ...],
                   result: TrainResult, train_seconds: float, device: torch.device,
                   latency_requests: int) -> dict[str, Any]:
    rating = "rating" in heads
    cost = {"params": sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()),
            "bytes": None, "train_seconds": round(train_seconds, 3), "epochs": result.epochs_run,
            "seconds_per_epoch": round(result.seconds_per_epoch, 4), "best_epoch": result.best_epoch,
            **serving_cost(model, dataset.n_users, requests=latency_requests, device=device),
            "peak_rss_mb": round(peak_rss_mb(), 1), "threads": torch.get_num_threads()}
    return {
        "model": spec.model, "dataset": dataset.name, "protocol": spec.protocol, "fold": split.fold,
        "seed": spec.seed, "task": spec.task, "heads": list(heads),
        "valid": evaluate(model, dataset, split, "valid", rating=rating, device=device),
        "test": evaluate(model, dataset, split, "test", rating=rating, device=device),
        "cost": cost, "machine": machine_info(), "version": distillrec.__version__,
    }


def save_run(run: Run, folder: Path) -> None:
    """Write the run folder; ``metrics.json`` last, so a folder with it is complete."""
    folder.mkdir(parents=True, exist_ok=True)
    model = run.model
    write_json(folder / "config.json", {"model": model.model_name, "model_config": model.config_dict(),
                                        "shape": model.shape.to_dict(), "rank_by": model.rank_by,
                                        "spec": run.spec.to_dict(), "version": distillrec.__version__})
    save_tensors(folder / "model.safetensors", model.state_dict())
    save_tensors(folder / "seen.safetensors", {"indptr": run.seen.indptr, "indices": run.seen.indices})
    write_json(folder / "ids.json", {"users": run.user_ids, "items": run.item_ids, "titles": run.titles})
    if "cost" in run.metrics:
        run.metrics["cost"]["bytes"] = (folder / "model.safetensors").stat().st_size
    write_json(folder / "metrics.json", run.metrics)


def load_run(folder: Path, device: str = "cpu") -> Run:
    """Rebuild a run's model from its JSON config and safetensors weights (no pickle)."""
    folder = Path(folder)
    if not (folder / "metrics.json").is_file():
        raise DistillrecError(f"{folder}: not a finished run folder (no metrics.json)")
    config = read_json(folder / "config.json")
    shape = DataShape.from_dict(config["shape"])
    model = model_class(config["model"])(shape, build_config(config["model"], config["model_config"]))
    model.load_state_dict(load_tensors(folder / "model.safetensors"))
    model.rank_by = config.get("rank_by", "logit")
    model.to(resolve_device(device)).eval()
    seen_raw = load_tensors(folder / "seen.safetensors")
    ids = read_json(folder / "ids.json")
    return Run(RunSpec.from_dict(config["spec"]), model, read_json(folder / "metrics.json"), ids["users"],
               ids["items"], ids.get("titles"), InteractionMatrix(seen_raw["indptr"], seen_raw["indices"],
                                                                  shape.n_items), folder)
