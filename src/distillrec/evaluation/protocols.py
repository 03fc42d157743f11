"""The evaluation protocols of ``shared/PROTOCOL.md`` applied to a model and a split.

Ranking: every user with at least one item in the evaluated part is scored against all items; the user's
train items (and, at test time, valid items) are excluded before taking the top K. Rating: predictions on
every rating of the part, clipped to the scale; users/items unseen in training are counted, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from distillrec.data.dataset import Dataset
from distillrec.data.splits import Split
from distillrec.evaluation.cost import latency_ms, users_per_second
from distillrec.evaluation.metrics import mae, rmse
from distillrec.evaluation.ranking import evaluate_ranking, success_rate, topk_excluding
from distillrec.models.base import Recommender

KS = (5, 10, 20)
#: which parts are excluded from ranking when evaluating on a part
EXCLUDED_PARTS = {"valid": ("train",), "test": ("train", "valid")}


def device_scorer(model: Recommender, device: str | torch.device):
    """``model.score`` taking CPU user ids (as the ranking functions pass them) on the model's device."""
    return lambda users: model.score(users.to(device))


def evaluate(model: Recommender, dataset: Dataset, split: Split, part: str, ks: Sequence[int] = KS,
             rating: bool = True, batch_size: int = 1024, device: str | torch.device = "cpu") -> dict[str, float]:
    """All metrics of one part (``valid`` or ``test``): ranking@K, coverage, success rate, RMSE/MAE."""
    model.eval()
    truth = split.matrix(dataset, part).to(device)
    exclude = split.matrix(dataset, *EXCLUDED_PARTS[part]).to(device)
    score = device_scorer(model, device)
    report = evaluate_ranking(score, truth, exclude, ks=tuple(ks), batch_size=batch_size,
                              n_users_total=dataset.n_users)
    metrics = dict(report.metrics)
    metrics["evaluated_users"] = float(len(report.users))
    metrics["success_rate"] = success_rate(score, dataset.n_users, exclude, k=max(ks),
                                           batch_size=batch_size)
    if rating:
        metrics.update(rating_metrics(model, dataset, split, part, device=device))
    return metrics


@torch.inference_mode()
def rating_metrics(model: Recommender, dataset: Dataset, split: Split, part: str, batch_size: int = 65536,
                   device: str | torch.device = "cpu") -> dict[str, float]:
    """RMSE/MAE over every rating of ``part`` plus counts of users/items never seen in training."""
    rows = getattr(split, part)
    users = torch.from_numpy(dataset.users[rows]).to(device)
    items = torch.from_numpy(dataset.items[rows]).to(device)
    target = torch.from_numpy(dataset.ratings[rows]).float().to(device)
    pred = torch.cat([model.predict_rating(users[s:s + batch_size], items[s:s + batch_size])
                      for s in range(0, len(rows), batch_size)]) if len(rows) else target
    low, high = dataset.rating_scale
    pred = pred.float().clamp(low, high)
    train_users = np.zeros(dataset.n_users, dtype=bool)
    train_items = np.zeros(dataset.n_items, dtype=bool)
    train_users[dataset.users[split.train]] = True
    train_items[dataset.items[split.train]] = True
    return {
        "rmse": rmse(pred, target),
        "mae": mae(pred, target),
        "rated_pairs": float(len(rows)),
        "cold_user_ratings": float((~train_users[dataset.users[rows]]).sum()),
        "cold_item_ratings": float((~train_items[dataset.items[rows]]).sum()),
    }


def make_validator(dataset: Dataset, split: Split, heads: Sequence[str], batch_size: int = 1024,
                   device: str | torch.device = "cpu"):
    """A cheap per-epoch validation function returning ``ndcg@10`` and/or ``rmse`` on the valid part."""
    truth = split.matrix(dataset, "valid").to(device)
    exclude = split.matrix(dataset, "train").to(device)

    def validate(model: Recommender) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if "ranking" in heads:
            report = evaluate_ranking(device_scorer(model, device), truth, exclude, ks=(10,),
                                      batch_size=batch_size)
            metrics["ndcg@10"] = report.metrics["ndcg@10"]
            metrics["recall@10"] = report.metrics["recall@10"]
        if "rating" in heads:
            metrics.update({k: v for k, v in rating_metrics(model, dataset, split, "valid", device=device).items()
                            if k in ("rmse", "mae")})
        return metrics

    return validate


@torch.inference_mode()
def serving_cost(model: Recommender, n_users: int, requests: int = 1000, device: str | torch.device = "cpu",
                 seed: int = 0) -> dict[str, float]:
    """PROTOCOL.md serving figures: users/s at batch 1,024 and one-user top-10 latency p50/p99."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    users = torch.randint(n_users, (min(n_users, 4096),), generator=generator).to(device)
    throughput = users_per_second(model.score, users, batch_size=1024, k=10)
    request_users = users[:requests] if len(users) >= requests else users.repeat(requests // len(users) + 1)
    empty = torch.empty(0, dtype=torch.int64, device=device)
    state = {"i": 0}

    def one_request() -> torch.Tensor:
        user = request_users[state["i"] % len(request_users)].view(1)
        state["i"] += 1
        return topk_excluding(model.score(user), empty, empty, 10)

    latency = latency_ms(one_request, n=requests)
    return {"users_per_second": round(throughput, 1), "latency_p50_ms": round(latency["p50"], 4),
            "latency_p99_ms": round(latency["p99"], 4)}
