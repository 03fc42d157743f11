"""Popularity baseline: the reference every personalised model must beat.

Ranking scores are training interaction counts; rating predictions are damped item means
``(sum_i + damping * mu) / (n_i + damping)``, the classic shrunk baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillrec.models.base import DataShape, Recommender, TrainData
from distillrec.registry import register_model


@dataclass(frozen=True)
class PopConfig:
    """Shrinkage of item means towards the global mean, in pseudo-ratings."""

    damping: float = 5.0


@register_model("pop")
class Popularity(Recommender):
    config_class = PopConfig
    gradient_heads = ()

    def __init__(self, shape: DataShape, config: PopConfig) -> None:
        super().__init__(shape, config)
        self.register_buffer("item_popularity", torch.zeros(shape.n_items))
        self.register_buffer("item_mean", torch.full((shape.n_items,), sum(shape.rating_scale) / 2))

    def prepare(self, data: TrainData, seed: int = 0) -> None:
        counts = torch.bincount(data.items, minlength=data.n_items).float()
        sums = torch.bincount(data.items, weights=data.ratings.double(), minlength=data.n_items).float()
        mu = data.ratings.float().mean()
        self.item_popularity.copy_(torch.bincount(data.matrix.indices, minlength=data.n_items).float())
        self.item_mean.copy_((sums + self.config.damping * mu) / (counts + self.config.damping))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.item_popularity.expand(len(users), -1).clone()

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.clip_rating(self.item_mean[items])
