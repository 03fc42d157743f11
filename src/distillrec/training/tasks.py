"""Training tasks: turn a model's per-pair outputs into a loss (models never compute their own losses).

* ``rating``: mean squared error on observed ratings.
* ``ranking``: BPR (Rendle et al., 2009) or binary cross-entropy on observed pairs against sampled
  negatives; negatives are drawn uniformly and re-drawn while they hit a training positive.
* ``both``: ``rating_weight * rating + (1 - rating_weight) * ranking``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distillrec.data.interactions import InteractionMatrix
from distillrec.errors import DistillrecError
from distillrec.models.base import Recommender

MAX_RESAMPLE_ROUNDS = 20


@dataclass
class Batch:
    """A mini-batch of observed (user, item, rating) triples, each ``[B]``; ``index``: their rows in the train split
    (tasks that precompute per-triple targets, such as distillation, look them up by it)."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor
    index: torch.Tensor | None = None


def sample_negatives(users: torch.Tensor, positives: InteractionMatrix, n_negatives: int,
                     generator: torch.Generator) -> torch.Tensor:
    """Uniform negatives ``[B, n_negatives]`` that avoid each user's training positives.

    Vectorised rejection sampling: only the rejected draws are redrawn, for a bounded number of rounds
    (a user who has rated almost everything may keep a positive after that; such users are vanishingly rare).
    """
    flat_users = users.repeat_interleave(n_negatives)
    device = users.device
    draws = torch.randint(positives.n_items, flat_users.shape, generator=generator, device=generator.device)
    draws = draws.to(device)
    pending = torch.arange(len(draws), device=device)  # only fresh draws are checked again
    for _ in range(MAX_RESAMPLE_ROUNDS):
        pending = pending[positives.contains(flat_users[pending], draws[pending])]
        if len(pending) == 0:
            break
        redraw = torch.randint(positives.n_items, (len(pending),), generator=generator, device=generator.device)
        draws[pending] = redraw.to(device)
    return draws.view(len(users), n_negatives)


class RatingTask:
    """Squared error of the rating head plus the model's own regulariser."""

    heads = ("rating",)

    def loss(self, model: Recommender, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        rating = model(batch.users, batch.items).rating
        mse = F.mse_loss(rating, batch.ratings)
        total = mse + model.regularization(batch.users, batch.items)
        return total, {"mse": float(mse.detach())}


class RankingTask:
    """BPR or BCE of the ranking logit, observed pairs against sampled negatives."""

    heads = ("ranking",)

    def __init__(self, positives: InteractionMatrix, loss: str = "bpr", n_negatives: int = 1,
                 generator: torch.Generator | None = None) -> None:
        if loss not in ("bpr", "bce"):
            raise DistillrecError(f"ranking_loss must be bpr or bce, got {loss!r}")
        self.positives = positives
        self.kind = loss
        self.n_negatives = n_negatives
        self.generator = generator or torch.Generator().manual_seed(0)

    def loss(self, model: Recommender, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        negatives = sample_negatives(batch.users, self.positives, self.n_negatives, self.generator)  # [B, N]
        neg_users = batch.users.repeat_interleave(self.n_negatives)
        pos_logit = model(batch.users, batch.items).logit  # [B]
        neg_logit = model(neg_users, negatives.reshape(-1)).logit.view(-1, self.n_negatives)  # [B, N]
        if self.kind == "bpr":
            ranking = -F.logsigmoid(pos_logit.unsqueeze(1) - neg_logit).mean()
        else:
            ranking = (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
                       + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))
        total = ranking + model.regularization(batch.users, batch.items)
        return total, {"ranking": float(ranking.detach())}


class JointTask:
    """Weighted sum of the rating and ranking tasks for two-headed models."""

    heads = ("rating", "ranking")

    def __init__(self, rating: RatingTask, ranking: RankingTask, rating_weight: float = 0.5) -> None:
        self.rating = rating
        self.ranking = ranking
        self.rating_weight = rating_weight

    def loss(self, model: Recommender, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        rating_loss, rating_parts = self.rating.loss(model, batch)
        ranking_loss, ranking_parts = self.ranking.loss(model, batch)
        total = self.rating_weight * rating_loss + (1 - self.rating_weight) * ranking_loss
        return total, {**rating_parts, **ranking_parts}


def build_task(heads: tuple[str, ...], positives: InteractionMatrix, ranking_loss: str = "bpr",
               n_negatives: int = 1, rating_weight: float = 0.5,
               generator: torch.Generator | None = None) -> RatingTask | RankingTask | JointTask:
    """The task that trains exactly the given heads."""
    if heads == ("rating",):
        return RatingTask()
    ranking = RankingTask(positives, ranking_loss, n_negatives, generator)
    if heads == ("ranking",):
        return ranking
    return JointTask(RatingTask(), ranking, rating_weight)
