"""What an export traces: a copy of a model made traceable, behind one two-method module.

``ScoringGraph.forward(users [B]) -> scores [B, n_items]`` and ``ScoringGraph.predict_rating(users [N], items [N])
-> ratings [N]`` call the model's own ``score`` and ``predict_rating``, so the exported numbers come from the same
code as the PyTorch ones. Most models trace as they are; a few hold state or branches that a trace cannot carry,
and a table maps those to a small *preparation* of the copy (the Torch-Pruning pattern of a table from layer type
to a function):

* ``lightweight_model``: the item tower's output for all items is frozen into a buffer, so the item vectors are a
  constant of the graph and a request is one user-tower pass plus one ``[B, K] @ [K, n_items]`` product;
* ``lightgcn``: the propagated embeddings (sparse products the exporters do not support) are frozen the same way;
* ``svd``: ``if cold.any(): scores[cold] = popularity`` (a data-dependent branch) becomes an element-wise
  ``torch.where`` with the same values;
* ``ensemble``: each member is prepared in turn; rank fusion (a per-user double ``argsort``, whose order among tied
  scores ONNX's ``TopK`` does not promise to reproduce) is refused for ONNX.

The student, LightGCN and SVD graphs then accept any batch of users (an ensemble's when all its members' do). The
others (the feature models, NeuMF, popularity) size their item chunks from ``len(users)``, a Python integer that a
trace fixes, so their score graph takes exactly one user per call (what a request needs) and runs their own fastest
path; ``ScoringGraph.dynamic_batch`` says which kind a graph is. Patching a private copy, rather than writing a
second scoring function per model, keeps one definition of the numbers; the export's check proves the copy right.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from distillrec.errors import DistillrecError
from distillrec.models.base import Recommender

#: ``prepare(model_copy, format) -> dynamic_batch``; patches the private copy in place
Preparer = Callable[[Recommender, str], bool]


class ScoringGraph(nn.Module):
    """The traced interface: ``forward`` scores all items for users, ``predict_rating`` rates pairs."""

    def __init__(self, model: Recommender, dynamic_batch: bool) -> None:
        super().__init__()
        self.model = model
        self.dynamic_batch = dynamic_batch

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        """int64 ``[B]`` (``B = 1`` unless ``dynamic_batch``) -> float32 ``[B, n_items]``."""
        return self.model.score(users).float()

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """int64 ``[N]``, int64 ``[N]`` -> float32 ``[N]``, clipped to the rating scale."""
        return self.model.predict_rating(users, items).float()


class RatingGraph(nn.Module):
    """``predict_rating`` as a ``forward``: ONNX exports one entry point per graph."""

    def __init__(self, graph: ScoringGraph) -> None:
        super().__init__()
        self.scoring = graph  # not ``graph``: exported modules become ``GraphModule``s, whose ``graph`` is taken

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.scoring.predict_rating(users, items)


def build_graph(model: Recommender, fmt: str) -> ScoringGraph:
    """A traceable ``ScoringGraph`` over a prepared deep copy of ``model`` (``model`` itself is not touched)."""
    twin = copy.deepcopy(model).cpu().eval()
    for parameter in twin.parameters():
        parameter.requires_grad_(False)
    return ScoringGraph(twin, prepare(twin, fmt)).eval()


def prepare(model: Recommender, fmt: str) -> bool:
    """Make ``model`` (a private copy) traceable for ``fmt``; True when its score graph takes any batch size."""
    return PREPARERS.get(model.model_name, _as_is)(model, fmt)


def _as_is(model: Recommender, fmt: str) -> bool:
    return False


def _freeze(model: Recommender, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Register ``tensor`` as a non-persistent buffer of ``model`` (an exporter lifts it into a graph constant)."""
    model.register_buffer(name, tensor.detach().clone(), persistent=False)
    return getattr(model, name)


def _prepare_lightweight(model: Recommender, fmt: str) -> bool:
    with torch.no_grad():
        items = torch.arange(model.n_items, device=model.global_mean.device)
        _freeze(model, "frozen_item_vectors", model.item_vectors(items))
    # an attribute lookup at call time, so an exporter that swaps buffers for traced values sees the swap
    model.all_item_vectors = lambda: model.frozen_item_vectors
    return True


def _prepare_lightgcn(model: Recommender, fmt: str) -> bool:
    with torch.no_grad():
        users, items = model.final_embeddings()
    _freeze(model, "frozen_user_final", users)
    _freeze(model, "frozen_item_final", items)
    model.final_embeddings = lambda: (model.frozen_user_final, model.frozen_item_final)
    return True


def _prepare_svd(model: Recommender, fmt: str) -> bool:
    def score(users: torch.Tensor) -> torch.Tensor:
        """``SVD.score`` without the branch: users without history get the popularity row."""
        scores = model.user_factors[users] @ model.item_factors.T
        return torch.where(model.has_history[users].unsqueeze(1), scores, model.item_popularity.to(scores.dtype))

    model.score = score
    return True


def _prepare_ensemble(model: Recommender, fmt: str) -> bool:
    if model.config.fusion == "rank" and fmt == "onnx":
        raise DistillrecError("ensemble with rank fusion cannot be exported to ONNX: its per-user ranks (a double "
                              "argsort) have no exact ONNX equivalent for tied scores; use --format torchscript, "
                              "or export a zscore ensemble or its members")
    dynamic = [prepare(member, fmt) for member in model.members]  # a list, not all(): prepare every member
    return all(dynamic)


PREPARERS: dict[str, Preparer] = {
    "lightweight_model": _prepare_lightweight,
    "lightgcn": _prepare_lightgcn,
    "svd": _prepare_svd,
    "ensemble": _prepare_ensemble,
}
