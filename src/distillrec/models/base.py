"""The one interface every recommender implements.

``score(users) -> [B, n_items]`` ranks, ``predict_rating(users, items) -> [B]`` predicts ratings. Gradient
models also implement ``forward(users, items) -> ModelOutput`` (what the training tasks turn into losses);
closed-form parts are fitted in ``prepare``, which every model gets once with the training split before any
gradient step. Models never hold the dataset or a global config, only typed sizes (``DataShape``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from distillrec.data.dataset import FieldKind, FieldSpec
from distillrec.data.interactions import InteractionMatrix

TASKS = ("rating", "ranking", "both")


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know about the data to build its tensors; stored in every checkpoint."""

    n_users: int
    n_items: int
    rating_scale: tuple[float, float] = (1.0, 5.0)
    user_fields: tuple[FieldSpec, ...] = ()
    item_fields: tuple[FieldSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def fields(specs: tuple[FieldSpec, ...]) -> list[dict[str, Any]]:
            return [{"name": f.name, "kind": f.kind.value, "vocab": list(f.vocab)} for f in specs]

        return {"n_users": self.n_users, "n_items": self.n_items, "rating_scale": list(self.rating_scale),
                "user_fields": fields(self.user_fields), "item_fields": fields(self.item_fields)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataShape:
        def fields(items: list[dict[str, Any]]) -> tuple[FieldSpec, ...]:
            return tuple(FieldSpec(f["name"], FieldKind(f["kind"]), tuple(f["vocab"])) for f in items)

        return cls(int(raw["n_users"]), int(raw["n_items"]), tuple(raw["rating_scale"]),
                   fields(raw.get("user_fields", [])), fields(raw.get("item_fields", [])))


@dataclass
class TrainData:
    """The training split as tensors: rated pairs, their ratings and the positives matrix."""

    users: torch.Tensor  # int64 [n]
    items: torch.Tensor  # int64 [n]
    ratings: torch.Tensor  # float32 [n]
    matrix: InteractionMatrix  # train positives, for PureSVD and negative rejection
    n_users: int
    n_items: int
    #: encoded side features (see ``data.features``): int64 [n] codes or float32 [n, vocab] multi-hot
    user_features: dict[str, torch.Tensor] = field(default_factory=dict)
    item_features: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> TrainData:
        return TrainData(self.users.to(device), self.items.to(device), self.ratings.to(device),
                         self.matrix.to(device), self.n_users, self.n_items,
                         {k: v.to(device) for k, v in self.user_features.items()},
                         {k: v.to(device) for k, v in self.item_features.items()})


@dataclass
class ModelOutput:
    """Per-pair outputs of ``forward``: a rating prediction and/or a ranking logit, each ``[B]``."""

    rating: torch.Tensor | None = None
    logit: torch.Tensor | None = None


def tensor_state_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Identity of a tensor's current contents (storage, device, shape, in-place version): a cache key that changes
    whenever an optimiser step or ``load_state_dict`` writes the tensor."""
    try:
        version = tensor._version
    except RuntimeError:  # an inference tensor (made under inference_mode) has no version counter
        version = -1
    return tensor.data_ptr(), tensor.device, tensor.shape, version


class Recommender(nn.Module):
    """Base class: subclasses set ``config_class`` and implement ``score`` and ``predict_rating``."""

    model_name: ClassVar[str]
    config_class: ClassVar[type]
    #: heads whose parameters are learned by the trainer; closed-form heads are fitted in ``prepare``
    gradient_heads: ClassVar[tuple[str, ...]] = ("rating", "ranking")
    #: training settings (``TrainConfig`` fields) this model defaults to, chosen on validation data
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, shape: DataShape, config: Any) -> None:
        super().__init__()
        self.shape = shape
        self.config = config
        #: which output ranks items: "logit" (the ranking head) or "rating" (for rating-only training)
        self.rank_by = "logit"

    @property
    def n_users(self) -> int:
        return self.shape.n_users

    @property
    def n_items(self) -> int:
        return self.shape.n_items

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def prepare(self, data: TrainData, seed: int = 0) -> None:
        """Fit data-derived state (global mean, closed-form factors) before gradient training."""

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        """Per-pair outputs for training. ``users``, ``items``: int64 [B]."""
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient")

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Extra loss on the parameters a batch touches (per-row L2, as Surprise's SGD does)."""
        return torch.zeros((), device=users.device)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Ranking scores of all items for a batch of users: int64 [B] -> float [B, n_items]."""
        raise NotImplementedError

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Rating predictions for pairs, clipped to the rating scale: int64 [B], int64 [B] -> float [B]."""
        raise NotImplementedError

    def entity_representations(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """What the model knows of every user and item: ``([n_users, Du], [n_items, Di])``, or None.

        The learned per-entity vectors (embeddings, latent factors, tower outputs) that feature distillation aligns
        a student with; models without such vectors (popularity) return None.
        """
        return None

    def clip_rating(self, rating: torch.Tensor) -> torch.Tensor:
        low, high = self.shape.rating_scale
        return rating.clamp(low, high)
