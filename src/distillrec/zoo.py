"""The model zoo: train (or reuse) every model under one protocol and compare them, as the seed did.

The comparison covers ranking quality, rating accuracy and cost, with a "best for" column: the best
NDCG@10 is best for *ranking*, the lowest RMSE for *rating*, the lowest single-request p99 latency for
*real-time*, and the best sum of NDCG@10 / best NDCG@10 and best RMSE / RMSE for *balance*.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from distillrec.errors import DistillrecError
from distillrec.registry import list_models, model_class
from distillrec.runs import DataSpec, RunSpec
from distillrec.settings import split_settings
from distillrec.store import get_or_train

#: the seed's seven algorithms, LightGCN, and the popularity reference
ZOO_MODELS = ("svd", "neumf", "deepfm", "widedeep", "dcnv2", "xdeepfm", "autoint", "lightgcn", "pop")
COLUMNS = (("ndcg@10", "NDCG@10"), ("recall@10", "Recall@10"), ("mrr@10", "MRR@10"), ("hit@10", "Hit@10"),
           ("precision@10", "Prec@10"), ("rmse", "RMSE"), ("mae", "MAE"))
COST_COLUMNS = (("params", "params"), ("bytes", "bytes"), ("train_seconds", "train s"),
                ("seconds_per_epoch", "s/epoch"), ("users_per_second", "users/s"), ("latency_p50_ms", "p50 ms"),
                ("latency_p99_ms", "p99 ms"))


def parse_models(text: str) -> list[str]:
    """``all`` or a comma list of registered names; unknown names are a one-line error."""
    if text.strip() == "all":
        return [m for m in ZOO_MODELS if m in list_models()]
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        model_class(name)  # raises with the list of known models
    if not names:
        raise DistillrecError("--models: give 'all' or a comma-separated list of models")
    return names


def zoo_spec(model: str, data: DataSpec, protocol: str, seed: int, fold: int | None = None,
             device: str = "cpu") -> RunSpec:
    """The run spec the zoo uses: P-RANK trains both heads, P-RATING the rating head; model defaults."""
    task = "rating" if protocol == "p-rating" else "both"
    return RunSpec(model=model, data=data, protocol=protocol, fold=fold, seed=seed, task=task, device=device,
                   train=split_settings(model, {})[1])


def run_zoo(models: Sequence[str], data: DataSpec, protocol: str = "p-rank", seed: int = 0,
            fold: int | None = None, root: Path | None = None, progress: bool = True,
            device: str = "cpu") -> list[dict[str, Any]]:
    """Train or reuse each model's run; returns each run's metrics with ``run`` and ``reused`` added."""
    dataset = data.load()
    results = []
    for model in tqdm(models, desc="zoo", disable=not progress):
        run, reused = get_or_train(zoo_spec(model, data, protocol, seed, fold, device), root, dataset=dataset,
                                   progress=progress)
        results.append({**run.metrics, "run": str(run.folder), "reused": reused})
    return results


def best_for(results: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Model name -> the uses it is best for."""
    labels: dict[str, list[str]] = {r["model"]: [] for r in results}
    if not results:
        return labels

    def pick(key: str, part: str, lower: bool) -> str | None:
        scored = [(r[part].get(key), r["model"]) for r in results if r[part].get(key) is not None]
        if not scored:
            return None
        return (min if lower else max)(scored)[1]

    for label, key, part, lower in (("ranking", "ndcg@10", "test", False), ("rating", "rmse", "test", True),
                                    ("real-time", "latency_p99_ms", "cost", True)):
        winner = pick(key, part, lower)
        if winner:
            labels[winner].append(label)
    rated = [r for r in results if r["test"].get("rmse") is not None]
    if len(rated) > 1:
        top_ndcg = max(r["test"]["ndcg@10"] for r in rated) or 1.0
        low_rmse = min(r["test"]["rmse"] for r in rated)
        balance = {r["model"]: r["test"]["ndcg@10"] / top_ndcg + low_rmse / r["test"]["rmse"] for r in rated}
        labels[max(balance, key=balance.get)].append("balance")
    return labels


def comparison_rows(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the seed-style comparison table (test metrics and cost)."""
    labels = best_for(results)
    headers = ["model", *(title for _, title in COLUMNS), *(title for _, title in COST_COLUMNS), "best for"]
    rows = [[r["model"], *(r["test"].get(key) for key, _ in COLUMNS), *(r["cost"].get(key) for key, _ in COST_COLUMNS),
             ", ".join(labels[r["model"]]) or "-"] for r in results]
    return headers, rows


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
