"""DCN-V2 (Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
Learning to Rank Systems", WWW 2021).

The input ``x_0`` is the concatenation of the field embeddings (``d = F * D``). Each cross layer computes

    ``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l``            (full rank, ``W_l`` is ``d x d``; eq. 1)

or, with ``low_rank = r > 0``, the paper's mixture of ``K = n_experts`` low-rank experts (eq. 3, "DCN-Mix")

    ``x_{l+1} = Σ_i G_i(x_l) E_i(x_l) + x_l``,  ``E_i(x) = x_0 ⊙ (U_i g(C_i g(V_i^T x)) + b_l)``,

with ``g = tanh`` and a softmax gate ``G_i(x) = softmax_i(w_i^T x)`` (as the authors' reference code). The
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
from distillrec.models.field_model import FieldInteractionModel
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
    structure: str = "parallel"
    hidden: tuple[int, ...] = (256, 128, 64)
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
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 0.001, "batch_size": 256}

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
