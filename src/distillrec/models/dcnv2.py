"""DCN-V2 (Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
Learning to Rank Systems", WWW 2021).

The input ``x_0`` is the concatenation of the field embeddings (``d = F * D``). Each cross layer computes

    ``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l``            (full rank, ``W_l`` is ``d x d``; eq. 1)

or, with ``low_rank = r > 0``, the paper's mixture of ``K = n_experts`` low-rank experts (eq. 3, "DCN-Mix")

    ``x_{l+1} = Σ_i G_i(x_l) E_i(x_l) + x_l``,  ``E_i(x) = x_0 ⊙ (U_i g(C_i g(V_i^T x)) + b_l)``,

with ``g = tanh`` and a softmax gate ``G_i(x) = softmax_i(w_i^T x)`` (as in DeepCTR's ``CrossNetMix``). The
cross network and a deep ReLU MLP are combined either ``stacked`` (``x_0 -> cross -> MLP``) or ``parallel``
(``[cross(x_0), MLP(x_0)]``), the paper's two structures; the result feeds the two task heads of
``FieldInteractionModel`` (whose first-order terms carry the user/item biases for rating prediction).

Every cross layer is its own module holding its own ``nn.Linear`` maps, so its ``d`` output units (full rank)
or its experts' ``r`` units (low rank) are addressable groups for Fisher analysis and pruning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from distillrec.models.base import DataShape
from distillrec.models.field_model import SCORE_CHUNK_PAIRS, FieldInteractionModel
from distillrec.models.layers import MLP
from distillrec.registry import register_model

STRUCTURES = ("stacked", "parallel")


@dataclass(frozen=True)
class DCNv2Config:
    """Embedding size, cross depth and form (full or low-rank mixture), deep tower and how the two combine."""

    embed_dim: int = 16
    n_cross: int = 3
    low_rank: int = 0  # 0: full-rank W_l; r > 0: mixture of n_experts rank-r experts
    n_experts: int = 1
    structure: str = "stacked"
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    use_features: bool = True
    embed_reg: float = 0.0


class CrossLayer(nn.Module):
    """Full-rank cross layer: ``x_0 ⊙ (W x_l + b) + x_l`` with ``W`` one ``nn.Linear(d, d)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[N, d]``, ``[N, d]`` -> ``[N, d]``."""
        return x0 * self.linear(x) + x


class LowRankExpert(nn.Module):
    """One expert's ``U g(C g(V^T x))`` (bias-free maps; the layer's bias ``b_l`` is shared by the experts)."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)  # V^T
        self.mid = nn.Linear(rank, rank, bias=False)  # C
        self.up = nn.Linear(rank, dim, bias=False)  # U
        for linear in (self.down, self.mid, self.up):
            nn.init.xavier_normal_(linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.tanh(self.mid(torch.tanh(self.down(x)))))


class MixtureCrossLayer(nn.Module):
    """Low-rank mixture cross layer: ``Σ_i softmax_i(w_i^T x_l) x_0 ⊙ (E_i(x_l) + b) + x_l``."""

    def __init__(self, dim: int, rank: int, n_experts: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(LowRankExpert(dim, rank) for _ in range(n_experts))
        self.gate = nn.Linear(dim, n_experts, bias=False)
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[N, d]``, ``[N, d]`` -> ``[N, d]``."""
        experts = torch.stack([x0 * (expert(x) + self.bias) for expert in self.experts], dim=-1)  # [N, d, K]
        gates = torch.softmax(self.gate(x), dim=-1).unsqueeze(1)  # [N, 1, K]
        return (experts * gates).sum(-1) + x


@register_model("dcnv2")
class DCNv2(FieldInteractionModel):
    config_class = DCNv2Config
    # Defaults chosen on validation (ml-100k P-RANK seed 0, task both, valid NDCG@10; test never read), with
    # the training settings found for NeuMF (lr 1e-3, batch 256, BPR on 4 negatives, rating_weight 0.02):
    #   parallel, 3 cross, hidden (256, 128, 64) -> 0.240 | parallel, 2 cross, (128, 64) -> 0.237
    #   stacked, 2 cross, (128, 64) -> 0.245 | stacked, 3 cross, (128, 64) -> 0.245 (chosen; 0.2453 vs 0.2446)
    # P-RATING u1 valid RMSE at the defaults: 0.916.
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 0.001, "batch_size": 256, "n_negatives": 4,
                                                "rating_weight": 0.02}

    def __init__(self, shape: DataShape, config: DCNv2Config) -> None:
        super().__init__(shape, config)
        if config.structure not in STRUCTURES:
            raise ValueError(f"dcnv2 structure must be one of {STRUCTURES}, got {config.structure!r}")
        dim = self.n_fields * config.embed_dim
        self.cross = nn.ModuleList(
            CrossLayer(dim) if config.low_rank <= 0 else MixtureCrossLayer(dim, config.low_rank, config.n_experts)
            for _ in range(config.n_cross))
        self.mlp = MLP(dim, config.hidden, config.dropout)
        out_dim = self.mlp.out_dim if config.structure == "stacked" else dim + self.mlp.out_dim
        self.build_heads(out_dim)

    def cross_network(self, x0: torch.Tensor) -> torch.Tensor:
        """``[N, d]`` -> ``[N, d]``: the stack of cross layers."""
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return x

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, H]``: stacked ``MLP(cross(x0))`` or parallel ``[cross(x0), MLP(x0)]``."""
        x0 = fields.flatten(1)
        if self.config.structure == "stacked":
            return self.mlp(self.cross_network(x0))
        return torch.cat([self.cross_network(x0), self.mlp(x0)], dim=1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, n_items]``, equal to ``forward`` on every pair, with the maps that read ``x_0`` split.

        ``x_0 = [x_user, x_item]``, so any linear map of it is a user half plus an item half computed once per
        user and once per item: here the first full-rank cross layer's ``W_0 x_0`` and, in the parallel
        structure, the MLP's first layer. Only the rest runs on item chunks of broadcast pairs.
        """
        column = 0 if self.rank_by == "rating" else 1
        all_items = torch.arange(self.n_items, device=users.device)
        x_user = self.embedding.user_embeddings(users).flatten(1)  # [B, d_user]
        x_item = self.embedding.item_embeddings(all_items).flatten(1)  # [I, d_item]
        split_cross = len(self.cross) > 0 and isinstance(self.cross[0], CrossLayer)
        split_mlp = self.config.structure == "parallel" and len(self.mlp) > 0
        cross_halves = _split_linear(self.cross[0].linear, x_user, x_item) if split_cross else None
        mlp_halves = _split_linear(self.mlp[0], x_user, x_item) if split_mlp else None
        mlp_rest = nn.Sequential(*list(self.mlp)[1:])
        head = self.head.weight[column]
        batch = len(users)
        chunk = max(1, SCORE_CHUNK_PAIRS // max(1, batch))
        parts = []
        for start in range(0, self.n_items, chunk):
            stop = min(start + chunk, self.n_items)
            x0 = _pairs(x_user, x_item[start:stop])  # [B * C, d]
            x, layers = x0, list(self.cross)
            if cross_halves is not None:
                x, layers = x0 * _pairs_sum(cross_halves[0], cross_halves[1][start:stop]) + x0, layers[1:]
            for layer in layers:
                x = layer(x0, x)
            if self.config.structure == "stacked":
                hidden = self.mlp(x)
            else:
                deep = mlp_rest(_pairs_sum(mlp_halves[0], mlp_halves[1][start:stop])) if split_mlp else x0
                hidden = torch.cat([x, deep], dim=1)
            parts.append((hidden @ head).view(batch, stop - start))
        user_lin = self.linear.user_embeddings(users)[..., column].sum(1)  # [B]
        item_lin = self.linear.item_embeddings(all_items)[..., column].sum(1)  # [I]
        scores = torch.cat(parts, dim=1) + user_lin.unsqueeze(1) + item_lin.unsqueeze(0) + self.head.bias[column]
        return scores + self.global_mean if column == 0 else scores


def _split_linear(layer: nn.Linear, x_user: torch.Tensor, x_item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W [x_u; x_i] + b`` as ``(W_u x_u + b, W_i x_i)``: ``[B, out]``, ``[I, out]``."""
    split = x_user.shape[1]
    return x_user @ layer.weight[:, :split].T + layer.bias, x_item @ layer.weight[:, split:].T


def _pairs(user_part: torch.Tensor, item_part: torch.Tensor) -> torch.Tensor:
    """All pairs of ``[B, du]`` users and ``[C, di]`` items -> ``[B * C, du + di]``."""
    batch, n_items = user_part.shape[0], item_part.shape[0]
    users = user_part.unsqueeze(1).expand(batch, n_items, user_part.shape[1])
    items = item_part.unsqueeze(0).expand(batch, n_items, item_part.shape[1])
    return torch.cat([users, items], dim=2).reshape(batch * n_items, user_part.shape[1] + item_part.shape[1])


def _pairs_sum(user_part: torch.Tensor, item_part: torch.Tensor) -> torch.Tensor:
    """``[B, h]``, ``[C, h]`` -> ``[B * C, h]``: every user row plus every item row."""
    return (user_part.unsqueeze(1) + item_part.unsqueeze(0)).reshape(-1, user_part.shape[1])
