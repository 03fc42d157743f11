"""The ensemble teacher: a weighted combination of trained members that is itself a ``Recommender``.

Each member has a task: ``ranking`` members feed the ranking score, ``rating`` members the rating
prediction, ``balance`` members both. Weights apply within each task and are renormalised over the
members that feed it. Ranking scores are put on a common scale before they are combined:

* ``zscore``: per user, each member's scores over all items are standardised (mean 0, std 1);
* ``rank``: per user, each member's scores become ``1 - rank / n_items`` (Borda-style rank fusion).

The members are sub-modules, so the ensemble saves and loads like any model (its config lists the members'
names, configs and tasks; ``model.safetensors`` holds every member's weights) and is differentiable end to
end, which Fisher analysis and distillation need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from distillrec.models.base import DataShape, ModelOutput, Recommender
from distillrec.registry import build_config, model_class, register_model

MEMBER_TASKS = ("ranking", "rating", "balance")
FUSIONS = ("zscore", "rank")


@dataclass(frozen=True)
class EnsembleConfig:
    """Members as parallel tuples: model names, their configs (dicts), tasks, weights and ``rank_by``."""

    models: tuple[str, ...] = ()
    configs: tuple[dict[str, Any], ...] = ()
    tasks: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    rank_by: tuple[str, ...] = ()
    #: separate learned weights for the rating side (e.g. from NNLS); empty = use ``weights`` renormalised
    rating_weights: tuple[float, ...] = ()
    fusion: str = "zscore"
    member_runs: tuple[str, ...] = field(default=())


@register_model("ensemble")
class Ensemble(Recommender):
    config_class = EnsembleConfig
    composite = True  # built from trained members, not trained by ``distillrec train``
    gradient_heads = ()  # members are trained on their own; the ensemble only combines them

    def __init__(self, shape: DataShape, config: EnsembleConfig) -> None:
        super().__init__(shape, config)
        self.members = nn.ModuleList()
        for name, member_config, rank_by in zip(config.models, config.configs, config.rank_by, strict=True):
            member = model_class(name)(shape, build_config(name, member_config))
            member.rank_by = rank_by
            self.members.append(member)

    @classmethod
    def from_members(cls, members: list[Recommender], tasks: list[str], weights: list[float],
                     fusion: str = "zscore", rating_weights: list[float] | None = None,
                     member_runs: list[str] | None = None) -> Ensemble:
        """Wrap trained members (their weights are copied in, so the ensemble is self-contained)."""
        config = EnsembleConfig(models=tuple(m.model_name for m in members),
                                configs=tuple(m.config_dict() for m in members), tasks=tuple(tasks),
                                weights=tuple(float(w) for w in weights), rank_by=tuple(m.rank_by for m in members),
                                rating_weights=tuple(rating_weights or ()), fusion=fusion,
                                member_runs=tuple(member_runs or ()))
        ensemble = cls(members[0].shape, config)
        for target, source in zip(ensemble.members, members, strict=True):
            target.load_state_dict(source.state_dict())
        return ensemble.eval()

    def task_weights(self, task: str) -> list[tuple[int, float]]:
        """``(member index, weight)`` for members feeding ``task`` ("ranking" or "rating"), renormalised."""
        if task == "rating" and self.config.rating_weights:
            return [(i, w) for i, w in enumerate(self.config.rating_weights) if w > 0]
        chosen = [(i, w) for i, (t, w) in enumerate(zip(self.config.tasks, self.config.weights, strict=True))
                  if t in (task, "balance") and w > 0]
        total = sum(w for _, w in chosen)
        return [(i, w / total) for i, w in chosen] if total > 0 else []

    def member_scores(self, users: torch.Tensor) -> list[torch.Tensor]:
        """Each ranking member's fused-scale scores ``[B, n_items]`` (for explanations)."""
        return [normalise(self.members[i].score(users), self.config.fusion) for i, _ in self.task_weights("ranking")]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        total = None
        for i, weight in self.task_weights("ranking"):
            part = weight * normalise(self.members[i].score(users), self.config.fusion)
            total = part if total is None else total + part
        return total

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.clip_rating(self.raw_rating(users, items))

    def raw_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        total = None
        for i, weight in self.task_weights("rating"):
            part = weight * self.members[i].predict_rating(users, items)
            total = part if total is None else total + part
        return total

    def entity_representations(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The members' representations side by side (members feeding neither side are skipped)."""
        used = {i for task in ("ranking", "rating") for i, _ in self.task_weights(task)}
        parts = [self.members[i].entity_representations() for i in sorted(used)]
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        return torch.cat([u for u, _ in parts], dim=1), torch.cat([v for _, v in parts], dim=1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        """Per-pair outputs: the fused rating and the pair's fused ranking score (differentiable)."""
        scores = self.score(users.unique())  # normalisation needs every item of the user
        row = torch.searchsorted(users.unique(), users)
        return ModelOutput(rating=self.raw_rating(users, items), logit=scores[row, items])


def normalise(scores: torch.Tensor, fusion: str) -> torch.Tensor:
    """Put one member's ``[B, n_items]`` scores on the common scale of ``fusion``."""
    if fusion == "zscore":
        mean = scores.mean(dim=1, keepdim=True)
        std = scores.std(dim=1, keepdim=True).clamp(min=1e-8)
        return (scores - mean) / std
    if fusion == "rank":
        ranks = scores.argsort(dim=1, descending=True).argsort(dim=1).to(scores.dtype)
        return 1.0 - ranks / scores.shape[1]
    raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
