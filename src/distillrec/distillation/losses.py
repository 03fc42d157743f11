"""Per-sample distillation losses (each returns ``[B]``, so Fisher importance can square them sample by sample).

* ``rrd_loss``: Relaxed Ranking Distillation (Kang, Hwang, Kweon & Yu, "DE-RRD: A Knowledge Distillation Framework
  for Recommender System", CIKM 2020). The teacher's top items must come out in the teacher's order, each above
  every sampled "uninteresting" item; the order among uninteresting items is left free:
  ``-1/M sum_k log( exp(s_pi_k) / (sum_{l>=k} exp(s_pi_l) + sum_j exp(s_j)) )``.
* ``bpr_loss``: the ground-truth ranking loss, observed item against sampled negatives.
* ``feature_loss``: mean squared error between a learned projection of the student's representation and the
  teacher's (standardised) representation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rrd_loss(top: torch.Tensor, uninteresting: torch.Tensor) -> torch.Tensor:
    """``top [B, M]``: student logits of the teacher's top items, in teacher order; ``uninteresting [B, N]``.

    Returns ``[B]``.
    """
    tail = torch.logcumsumexp(top.flip(1), dim=1).flip(1)  # log sum_{l >= k} exp(s_pi_l), [B, M]
    rest = torch.logsumexp(uninteresting, dim=1, keepdim=True)  # [B, 1]
    return -(top - torch.logaddexp(tail, rest)).mean(dim=1)


def bpr_loss(positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """``positive [B]``, ``negatives [B, J]`` -> ``[B]``: ``-mean_j log sigmoid(s_pos - s_neg_j)``."""
    return -F.logsigmoid(positive.unsqueeze(1) - negatives).mean(dim=1)


def feature_loss(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B, D]``, ``[B, D]`` -> ``[B]``: mean squared difference per sample."""
    return (projected - target).pow(2).mean(dim=1)
