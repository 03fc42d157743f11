"""SVD for both tasks: PureSVD for ranking, biased matrix factorisation for ratings.

* Ranking: PureSVD (Cremonesi, Koren & Turrin, "Performance of recommender algorithms on top-N
  recommendation tasks", RecSys 2010). A rank-``k`` truncated SVD of the binary training matrix ``X`` whose
  item columns are scaled by ``popularity^-pop_beta`` (damping the pull towards blockbusters); scores are
  ``x_u V V^T``. Users without history fall back to popularity, so every user gets a list.
* Rating: biased MF as in Surprise's SVD (Koren, Bell & Volinsky, "Matrix factorization techniques for
  recommender systems", 2009): ``mu + b_u + b_i + p_u . q_i``, trained on squared error with per-row L2
  (separate weights for factors and biases), here with Adam on mini-batches through the shared trainer.

Defaults were chosen on validation data only (``benchmarks/svd_tuning.py`` records the search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch import nn

from distillrec.models.base import DataShape, ModelOutput, Recommender, TrainData
from distillrec.registry import register_model


@dataclass(frozen=True)
class SVDConfig:
    """PureSVD rank and popularity damping; biased-MF size and L2 weights."""

    rank: int = 20
    pop_beta: float = 0.0
    mf_dim: int = 64
    mf_reg: float = 0.12
    bias_reg: float = 0.0
    init_std: float = 0.05


@register_model("svd")
class SVD(Recommender):
    config_class = SVDConfig
    gradient_heads = ("rating",)  # the ranking head is closed-form
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 0.001, "batch_size": 512}

    def __init__(self, shape: DataShape, config: SVDConfig) -> None:
        super().__init__(shape, config)
        rank = min(config.rank, max(1, min(shape.n_users, shape.n_items) - 1))
        self.register_buffer("user_factors", torch.zeros(shape.n_users, rank))  # x_u V: [U, k]
        self.register_buffer("item_factors", torch.zeros(shape.n_items, rank))  # V: [I, k]
        self.register_buffer("has_history", torch.zeros(shape.n_users, dtype=torch.bool))
        self.register_buffer("item_popularity", torch.zeros(shape.n_items))
        self.register_buffer("global_mean", torch.tensor(sum(shape.rating_scale) / 2))
        self.user_embedding = nn.Embedding(shape.n_users, config.mf_dim)
        self.item_embedding = nn.Embedding(shape.n_items, config.mf_dim)
        self.user_bias = nn.Embedding(shape.n_users, 1)
        self.item_bias = nn.Embedding(shape.n_items, 1)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def prepare(self, data: TrainData, seed: int = 0) -> None:
        """Fit PureSVD on the training positives and set the rating mean."""
        self.global_mean.fill_(float(data.ratings.float().mean()))
        counts = data.matrix.counts()
        self.has_history.copy_(counts > 0)
        rows = torch.repeat_interleave(torch.arange(data.n_users), counts.cpu()).numpy()
        cols = data.matrix.indices.cpu().numpy()
        x = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(data.n_users, data.n_items))
        popularity = np.asarray(x.sum(axis=0)).ravel()
        self.item_popularity.copy_(torch.from_numpy(popularity))
        scaled = x @ sp.diags(1.0 / (popularity + 1.0) ** self.config.pop_beta)
        k = self.item_factors.shape[1]
        v0 = np.random.default_rng(seed).standard_normal(min(scaled.shape))
        _, _, vt = svds(scaled, k=k, v0=v0)
        item_factors = vt.T.astype(np.float32)  # [I, k]
        self.item_factors.copy_(torch.from_numpy(item_factors))
        self.user_factors.copy_(torch.from_numpy(np.asarray(x @ item_factors, dtype=np.float32)))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        return ModelOutput(rating=self._mf_rating(users, items), logit=self._svd_logit(users, items))

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        factors = self.user_embedding(users).pow(2).sum(-1) + self.item_embedding(items).pow(2).sum(-1)
        biases = self.user_bias(users).squeeze(-1).pow(2) + self.item_bias(items).squeeze(-1).pow(2)
        return self.config.mf_reg * factors.mean() + self.config.bias_reg * biases.mean()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        scores = self.user_factors[users] @ self.item_factors.T  # [B, I]
        cold = ~self.has_history[users]
        if cold.any():
            scores[cold] = self.item_popularity.to(scores.dtype)
        return scores

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.clip_rating(self._mf_rating(users, items))

    def entity_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """PureSVD factors next to the biased-MF factors: ``[n_users, k + mf_dim]``, ``[n_items, k + mf_dim]``."""
        return (torch.cat([self.user_factors, self.user_embedding.weight], dim=1),
                torch.cat([self.item_factors, self.item_embedding.weight], dim=1))

    def _mf_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_embedding(users) * self.item_embedding(items)).sum(-1)
        return self.global_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + dot

    def _svd_logit(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_factors[users] * self.item_factors[items]).sum(-1)
