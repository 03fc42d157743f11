"""What the student learns from: the teacher's outputs, computed once before distillation starts.

Distillation never runs the teacher inside the training loop. Everything it needs is a fixed function of the
teacher and the training split, so it is computed here in one pass (in user chunks, without gradients):

* ``top_items [U, M]``: each user's top-M items by the teacher's ranking score, the user's training items excluded
  (the ranking-distillation targets; valid and test items are *not* excluded, since the teacher never saw them and
  excluding them would leak which items they are);
* ``top_ratings [U, M]``: the teacher's rating predictions on those items;
* ``train_ratings [n_train]``: the teacher's rating prediction on every training triple;
* ``user_repr [U, Du]``, ``item_repr [I, Di]``: the teacher's per-entity representations
  (``Recommender.entity_representations``), standardised per column so the feature loss has a fixed scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillrec.errors import DistillrecError
from distillrec.evaluation.ranking import topk_excluding
from distillrec.models.base import Recommender, TrainData

#: users scored at once when ranking the catalogue for every user
USER_CHUNK = 512
#: rating predictions per call
PAIR_CHUNK = 65536


@dataclass
class TeacherSignals:
    """The teacher's precomputed targets (see the module docstring for shapes)."""

    top_items: torch.Tensor
    top_ratings: torch.Tensor
    train_ratings: torch.Tensor
    user_repr: torch.Tensor | None
    item_repr: torch.Tensor | None

    @property
    def n_top(self) -> int:
        return self.top_items.shape[1]

    def to(self, device: torch.device | str) -> TeacherSignals:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TeacherSignals(move(self.top_items), move(self.top_ratings), move(self.train_ratings),
                              move(self.user_repr), move(self.item_repr))


@torch.no_grad()  # not inference_mode: the signals index tensors that autograd records during training
def compute_signals(teacher: Recommender, data: TrainData, n_top: int = 20) -> TeacherSignals:
    """One pass of the teacher over every user and every training triple."""
    if not 1 <= n_top < data.n_items:
        raise DistillrecError(f"--n_top must be between 1 and the number of items - 1, got {n_top}")
    teacher.eval()
    device = next(teacher.buffers(), torch.zeros(())).device
    tops = []
    for start in range(0, data.n_users, USER_CHUNK):
        users = torch.arange(start, min(start + USER_CHUNK, data.n_users), device=device)
        rows, cols = data.matrix.to(device).rows(users)
        tops.append(topk_excluding(teacher.score(users).float(), rows, cols, n_top))
    top_items = torch.cat(tops).cpu()
    if (top_items < 0).any():
        raise DistillrecError(f"--n_top {n_top}: some user has fewer than {n_top} items left outside training")
    top_users = torch.arange(data.n_users).repeat_interleave(n_top)
    top_ratings = _ratings(teacher, top_users, top_items.reshape(-1), device).view(data.n_users, n_top)
    train_ratings = _ratings(teacher, data.users, data.items, device)
    reprs = teacher.entity_representations()
    user_repr, item_repr = (None, None) if reprs is None else (standardise(reprs[0]), standardise(reprs[1]))
    return TeacherSignals(top_items, top_ratings, train_ratings, user_repr, item_repr)


def _ratings(model: Recommender, users: torch.Tensor, items: torch.Tensor, device: torch.device) -> torch.Tensor:
    parts = [model.predict_rating(users[s:s + PAIR_CHUNK].to(device), items[s:s + PAIR_CHUNK].to(device)).float().cpu()
             for s in range(0, len(users), PAIR_CHUNK)]
    return torch.cat(parts) if parts else torch.empty(0)


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Columns to mean 0 and standard deviation 1 (constant columns dropped: they carry nothing to match)."""
    x = x.detach().float().cpu()
    std = x.std(dim=0)
    keep = std > 1e-8
    return ((x[:, keep] - x[:, keep].mean(dim=0)) / std[keep]).contiguous()
