"""Per-sample losses of the focus tasks, written for one sample so that ``torch.func.vmap`` batches them.

A sample is one training triple ``(user, item, rating)`` with its sampled negatives ``[J]``; the teacher scores the
``P = 1 + J`` pairs ``(user, item), (user, negative_1), ...`` in one call. The objective returns ``K`` scalars whose
weighted squared gradients sum to the sample's Fisher contribution, laid out per focus task:

* ``ranking``: BPR, ``-mean_j log sigmoid(s(u, i) - s(u, j))`` (the training task's ranking loss per sample);
* ``rating``: squared error ``(r_hat(u, i) - r)^2``;
* ``ensemble``: the distillation loss, matching the teacher's outputs:
  ``1/2 (r_hat - r_T)^2 + 1/(2J) sum_j (margin_j - margin_T,j)^2`` with ``margin_j = s(u, i) - s(u, j)``.
  At the teacher itself its gradient is zero, so its Fisher is its curvature (Gauss-Newton, exact for squared
  error): ``(d r_hat)^2 + 1/J sum_j (d margin_j)^2``. The objective returns ``[r_hat, margin_1..J]`` with
  weights ``[1, 1/J, ..]``: how much distillation loss a change of each parameter or group would cost.

The ensemble's ranking score fuses its members' scores, standardised per user over all items. Those statistics
(``FusionStats``) are computed once, without gradient, and held fixed: per-sample losses then stay independent
of the rest of the catalogue, and the per-user mean cancels in every margin. Rank fusion is not differentiable;
its gradients go through the same z-score surrogate (the report says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distillrec.ensemble.weighted import Ensemble
from distillrec.errors import DistillrecError
from distillrec.models.base import Recommender

FOCUS_TASKS = ("ranking", "rating", "ensemble")
TASK_NOTES = {
    "ranking": "BPR loss of the ranking score, positive against sampled negatives",
    "rating": "squared error of the rating prediction",
    "ensemble": "distillation (output-matching) loss: its curvature at the teacher, "
                "sum over outputs of (d output)^2 for the rating and each pairwise ranking margin",
}
#: users scored at once when computing the ensemble's fusion statistics
STATS_CHUNK = 256


@dataclass
class FusionStats:
    """Per-user mean and standard deviation ``[U]`` of each ranking member's scores over all items."""

    mean: dict[int, torch.Tensor]
    std: dict[int, torch.Tensor]

    @classmethod
    @torch.no_grad()
    def compute(cls, ensemble: Ensemble, chunk: int = STATS_CHUNK) -> FusionStats:
        """Score every user once per ranking member (the statistics ``normalise`` uses, held fixed)."""
        mean, std = {}, {}
        device = next(ensemble.buffers(), torch.zeros(())).device
        for index, _ in ensemble.task_weights("ranking"):
            member = ensemble.members[index]
            means, stds = [], []
            for start in range(0, ensemble.n_users, chunk):
                users = torch.arange(start, min(start + chunk, ensemble.n_users), device=device)
                scores = member.score(users)
                means.append(scores.mean(dim=1))
                stds.append(scores.std(dim=1).clamp(min=1e-8))
            mean[index], std[index] = torch.cat(means), torch.cat(stds)
        return cls(mean, std)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> FusionStats:
        return FusionStats({k: v.to(device, dtype) for k, v in self.mean.items()},
                           {k: v.to(device, dtype) for k, v in self.std.items()})


def _has_forward(model: Recommender) -> bool:
    return type(model).forward is not Recommender.forward


def model_pairs(model: Recommender, users: torch.Tensor,
                items: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(rating [P], ranking score [P])`` of one model's pairs; the score is the output it ranks by."""
    if not _has_forward(model):  # closed-form models without gradients (popularity): values only
        return model.predict_rating(users, items), model.score(users).gather(1, items[:, None])[:, 0]
    out = model(users, items)
    return out.rating, out.rating if model.rank_by == "rating" else out.logit


def ensemble_pairs(ensemble: Ensemble, stats: FusionStats | None, users: torch.Tensor, items: torch.Tensor,
                   rating: bool = True, ranking: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The ensemble's fused rating and z-scored ranking score of pairs, each needed member evaluated once."""
    ranking_w = dict(ensemble.task_weights("ranking")) if ranking else {}
    rating_w = dict(ensemble.task_weights("rating")) if rating else {}
    if ranking_w and stats is None:
        raise ValueError("the ensemble's ranking score needs FusionStats")
    rating_sum, score_sum = None, None
    for index in sorted(set(ranking_w) | set(rating_w)):
        member = ensemble.members[index]
        member_rating, member_score = model_pairs(member, users, items)
        if index in rating_w:
            part = rating_w[index] * member.clip_rating(member_rating)
            rating_sum = part if rating_sum is None else rating_sum + part
        if index in ranking_w:
            scaled = (member_score - stats.mean[index][users]) / stats.std[index][users]
            part = ranking_w[index] * scaled
            score_sum = part if score_sum is None else score_sum + part
    return rating_sum, score_sum


class Objective:
    """``(model, user [], item [], rating [], negatives [J]) -> [K]``: one focus task's per-sample outputs.

    Each task is differentiated on its own, so it only evaluates the pairs and ensemble members it needs (the
    rating task scores one pair; an ensemble's rating-only members are skipped by the ranking task).
    """

    def __init__(self, task: str, n_negatives: int = 1, stats: FusionStats | None = None) -> None:
        if task not in FOCUS_TASKS:
            raise DistillrecError(f"--focus_tasks: unknown task {task!r}; choose from {', '.join(FOCUS_TASKS)}")
        if n_negatives < 1 and task != "rating":
            raise DistillrecError("--n_negatives must be at least 1 for the ranking and ensemble tasks")
        self.task = task
        self.n_negatives = 0 if task == "rating" else n_negatives
        self.stats = stats
        weights = [1.0] + [1.0 / n_negatives] * n_negatives if task == "ensemble" else [1.0]
        self.weights = torch.tensor(weights, dtype=torch.float64)

    @property
    def n_outputs(self) -> int:
        return len(self.weights)

    def pairs(self, model: Recommender, users: torch.Tensor, items: torch.Tensor):
        rating, ranking = self.task != "ranking", self.task != "rating"
        if isinstance(model, Ensemble):
            return ensemble_pairs(model, self.stats, users, items, rating=rating, ranking=ranking)
        return model_pairs(model, users, items)

    def __call__(self, model: Recommender, user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor,
                 negatives: torch.Tensor) -> torch.Tensor:
        users = user.reshape(1).expand(1 + self.n_negatives)
        items = torch.cat([item.reshape(1), negatives[:self.n_negatives]])
        predicted, score = self.pairs(model, users, items)
        if self.task != "ranking" and predicted is None:
            raise DistillrecError(f"focus task {self.task}: the teacher has no rating output")
        if self.task != "rating" and score is None:
            raise DistillrecError(f"focus task {self.task}: the teacher has no ranking output")
        if self.task == "ranking":
            return -F.logsigmoid(score[0] - score[1:]).mean().reshape(1)
        if self.task == "rating":
            return (predicted[0] - rating).pow(2).reshape(1)
        return torch.cat([predicted[:1], score[0] - score[1:]])
