"""DeepFM (Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR Prediction", IJCAI 2017).

An FM component (first-order terms from the shared linear layer plus the pairwise second-order term
``0.5 * ((sum_f e_f)^2 - sum_f e_f^2)``) and a deep MLP over the concatenated field embeddings, sharing the
same embeddings. The paper sums both into one logit; here the FM term and the MLP output feed the two task
heads (rating, ranking), which reduces to the paper's sum when the head weights are one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from distillrec.models.base import DataShape
from distillrec.models.field_model import FieldInteractionModel
from distillrec.models.layers import MLP
from distillrec.registry import register_model


@dataclass(frozen=True)
class DeepFMConfig:
    embed_dim: int = 16
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.1
    use_features: bool = True
    embed_reg: float = 0.0


@register_model("deepfm")
class DeepFM(FieldInteractionModel):
    config_class = DeepFMConfig
    # Chosen on validation with the training settings found for NeuMF (ml-100k P-RANK seed 0, valid NDCG@10; test
    # never read): BPR on 4 negatives with rating_weight 0.02 -> 0.239 with hidden (128, 64); hidden (256, 128, 64)
    # -> 0.246 (chosen; the width Wide&Deep's search picked).
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 256, "n_negatives": 4,
                                                "rating_weight": 0.02}

    def __init__(self, shape: DataShape, config: DeepFMConfig) -> None:
        super().__init__(shape, config)
        self.mlp = MLP(self.n_fields * config.embed_dim, config.hidden, config.dropout)
        self.build_heads(self.mlp.out_dim + 1)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, H + 1]``: the MLP output and the FM second-order term."""
        fm = 0.5 * (fields.sum(dim=1).pow(2) - fields.pow(2).sum(dim=1)).sum(dim=1, keepdim=True)
        return torch.cat([self.mlp(fields.flatten(1)), fm], dim=1)
