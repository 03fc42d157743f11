"""Load-time precomputation for serving: what a request would otherwise recompute for every user.

A table from model name to a builder that returns a scorer ``users [B] -> scores [B, n_items]`` over tensors
computed once. For the two-tower student (``lightweight_model``) that is every user's vector and every item's
vector, so a request is one row times a matrix plus a bias: ``addmm(c, U[users], V^T)``. Models without an entry
are scored by their own ``score`` per request (it already embeds users and items once per call).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from distillrec.evaluation.ranking import ScoreFn
from distillrec.models.base import Recommender


def precomputed_scorer(model: Recommender) -> ScoreFn | None:
    """A scorer over tensors computed now, equal to ``model.score`` up to float rounding; None when not worth it."""
    builder = PRECOMPUTERS.get(model.model_name)
    return None if builder is None else builder(model)


@torch.inference_mode()
def _two_tower(model: Recommender) -> ScoreFn:
    """``lightweight_model``: ``U [n_users, K]`` and ``V^T [K, n_items]`` once; see its module docstring."""
    users = model.user_vectors(torch.arange(model.n_users, device=model.global_mean.device))
    items_t = model.all_item_vectors().T.contiguous()
    if model.rank_by == "rating":
        left = users * model.rating_scale_weight
        item_offset = model.item_bias.weight[:, 0] + model.global_mean
        user_offset = model.user_bias.weight[:, 0].clone()
    else:
        left, item_offset, user_offset = users, model.item_bias.weight[:, 1].clone(), None

    def score(batch: torch.Tensor) -> torch.Tensor:
        scores = torch.addmm(item_offset, left[batch], items_t)
        return scores if user_offset is None else scores + user_offset[batch, None]

    return score


PRECOMPUTERS: dict[str, Callable[[Recommender], ScoreFn]] = {"lightweight_model": _two_tower}
