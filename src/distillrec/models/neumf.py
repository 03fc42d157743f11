"""NeuMF (He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017).

Two id-only towers with *separate* embeddings, as in the paper: GMF, the element-wise product
``p_u^G ⊙ q_i^G``, and an MLP over the concatenation ``[p_u^M, q_i^M]``. The two are fused by concatenation
into the prediction layer ``h^T [φ_GMF, φ_MLP]``. Here the prediction layer has two outputs, one per task:

* ranking: ``logit = h_l^T [φ_GMF, φ_MLP]`` (the paper's output before its sigmoid);
* rating: ``rating = mu + b_u + b_i + h_r^T [φ_GMF, φ_MLP]``: the biases of biased MF, which rating
  prediction needs and the paper (implicit feedback only) has no use for.

The paper trains with log loss on 4 sampled negatives per positive and initialises NeuMF from pre-trained
GMF and MLP models; we train end to end with the shared tasks (BPR on 4 negatives; log loss scored the same
on validation) and skip pre-training, which the paper reports as a small gain, to keep one training run.

Full ranking never builds a per-pair input table: the GMF part of the prediction layer is linear in the item
embedding, so it is one ``[B, D] @ [D, I]`` product; the MLP's first layer splits into a user half and an item
half (``W [p; q] = W_u p + W_i q``) computed once per user and once per item, and only the remaining layers run
on ``[B * C, H]`` chunks of broadcast pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from distillrec.models.base import DataShape, ModelOutput, Recommender, TrainData
from distillrec.models.layers import MLP
from distillrec.registry import register_model

#: pairs per chunk of the MLP tower in ``score``: bounds peak memory at about PAIRS * hidden[0] floats
SCORE_CHUNK_PAIRS = 65536


@dataclass(frozen=True)
class NeuMFConfig:
    """GMF and MLP embedding sizes, the MLP tower (the paper's halving pyramid) and L2 on touched rows."""

    gmf_dim: int = 32
    mlp_dim: int = 32
    hidden: tuple[int, ...] = (64, 32, 16)
    dropout: float = 0.0
    embed_reg: float = 0.0
    init_std: float = 0.01


@register_model("neumf")
class NeuMF(Recommender):
    config_class = NeuMFConfig
    # Defaults chosen on validation (ml-100k P-RANK seed 0, task both, valid NDCG@10; test never read). Model
    # config at its defaults unless named; lr 1e-3, batch 256, BPR unless named:
    #   n_negatives 1, rating_weight 0.5 -> 0.186 | n_negatives 4, rating_weight 0.1 -> 0.234
    #   (rating_weight 0.1, 4 negatives:) embed_reg 1e-3 -> 0.234, 1e-2 -> 0.227; dropout 0.2 -> 0.229;
    #   log loss -> 0.235; 8 negatives -> 0.236; weight_decay 1e-5 -> 0.228; lr 5e-4 -> 0.230;
    #   lr 2e-3 batch 1024 -> 0.228; init_std 0.1 -> 0.208; dims 16/16 tower (32, 16, 8) -> 0.235;
    #   dims 64/64 tower (128, 64, 32) -> 0.231
    #   (4 negatives:) rating_weight 0.3 -> 0.202, 0.05 -> 0.238, 0.02 -> 0.242 (chosen), 0.01 -> 0.239
    # The MSE of the rating head pulls the shared embeddings away from ranking, hence the small weight; the
    # rating head still reaches valid RMSE 0.918 on that split. P-RATING u1 valid RMSE at these defaults: 0.907.
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 0.001, "batch_size": 256, "n_negatives": 4,
                                                "rating_weight": 0.02}

    def __init__(self, shape: DataShape, config: NeuMFConfig) -> None:
        super().__init__(shape, config)
        if not config.hidden:
            raise ValueError("NeuMF needs at least one MLP layer (config.hidden is empty)")
        self.gmf_user = nn.Embedding(shape.n_users, config.gmf_dim)
        self.gmf_item = nn.Embedding(shape.n_items, config.gmf_dim)
        self.mlp_user = nn.Embedding(shape.n_users, config.mlp_dim)
        self.mlp_item = nn.Embedding(shape.n_items, config.mlp_dim)
        self.user_bias = nn.Embedding(shape.n_users, 1)
        self.item_bias = nn.Embedding(shape.n_items, 1)
        # one nn.Linear per tower layer: each layer's output units are a pruning group
        self.mlp = MLP(2 * config.mlp_dim, config.hidden, config.dropout)
        self.head = nn.Linear(config.gmf_dim + self.mlp.out_dim, 2)  # [0]: rating, [1]: ranking logit
        self.register_buffer("global_mean", torch.tensor(sum(shape.rating_scale) / 2))
        for table in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(table.weight, std=config.init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.head.bias)

    def prepare(self, data: TrainData, seed: int = 0) -> None:
        self.global_mean.fill_(float(data.ratings.float().mean()))

    def fused(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B]``, ``[B]`` -> ``[B, gmf_dim + hidden[-1]]``: ``[p^G ⊙ q^G, MLP([p^M, q^M])]``."""
        gmf = self.gmf_user(users) * self.gmf_item(items)
        mlp = self.mlp(torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=1))
        return torch.cat([gmf, mlp], dim=1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        out = self.head(self.fused(users, items))
        return ModelOutput(rating=self._biased(out[:, 0], users, items), logit=out[:, 1])

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if not self.config.embed_reg:
            return torch.zeros((), device=users.device)
        rows = (self.gmf_user(users).pow(2).sum(-1) + self.gmf_item(items).pow(2).sum(-1)
                + self.mlp_user(users).pow(2).sum(-1) + self.mlp_item(items).pow(2).sum(-1))
        return self.config.embed_reg * rows.mean()

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.clip_rating(self.forward(users, items).rating)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, n_items]`` without a per-pair embedding table (see the module docstring)."""
        column = 0 if self.rank_by == "rating" else 1
        weight = self.head.weight[column]  # [gmf_dim + H]
        gmf_w, mlp_w = weight[:self.config.gmf_dim], weight[self.config.gmf_dim:]
        all_items = torch.arange(self.n_items, device=users.device)
        # GMF: sum_d w_d p_ud q_id for all items at once
        scores = (self.gmf_user(users) * gmf_w) @ self.gmf_item(all_items).T + self.head.bias[column]  # [B, I]
        first, rest = self.mlp[0], nn.Sequential(*list(self.mlp)[1:])
        dim = self.config.mlp_dim
        user_half = self.mlp_user(users) @ first.weight[:, :dim].T + first.bias  # [B, H0]
        item_half = self.mlp_item(all_items) @ first.weight[:, dim:].T  # [I, H0]
        batch = len(users)
        chunk = max(1, SCORE_CHUNK_PAIRS // max(1, batch))
        tower = []
        for start in range(0, self.n_items, chunk):
            stop = min(start + chunk, self.n_items)
            pre = user_half.unsqueeze(1) + item_half[start:stop].unsqueeze(0)  # [B, C, H0]
            tower.append(rest(pre.reshape(-1, pre.shape[-1])).matmul(mlp_w).view(batch, stop - start))
        scores = scores + torch.cat(tower, dim=1)
        if column == 0:
            scores = self.global_mean + self.user_bias(users) + self.item_bias.weight.T + scores
        return scores

    def _biased(self, offset: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.global_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + offset
