"""The distillation task: the student's loss against the teacher's precomputed signals and the ground truth.

Per training triple ``(u, i, r)`` (a *sample*), with ``alpha = truth_weight``:

    ranking = alpha * BPR(u, i, negatives) + (1 - alpha) * RRD(u; teacher's top-M items, uninteresting items)
    rating  = alpha * (r_hat(u, i) - r)^2 + (1 - alpha) * mean over {i} + top-M of (r_hat - r_teacher)^2
    feature = MSE(P_u u, t_u) + MSE(P_i v, t_i)            (P: learned projections, dropped after training)
    loss    = w_ranking * ranking + w_rating * rating + w_feature * feature

with the seed's weights ``0.4, 0.4, 0.2`` renormalised over the chosen ``--distill_tasks``. Without a teacher
(``signals=None``) the task is the ground-truth loss alone, ``(1 - rho) * BPR + rho * squared error`` with
``rho = truth_rating_weight`` (0.1: the mix chosen on validation for the student trained on the data, see
``LightweightModel.train_defaults``), so the "no distillation" baselines get the best ground-truth training we
know, with the same negatives, optimiser and schedule as distillation. Uninteresting items are drawn uniformly
from the items that are neither the user's training items nor the teacher's top-M.

The task owns the projections (``parameters()``, which the trainer optimises with the student's) and returns the
loss per sample (``per_sample``), which importance estimation squares sample by sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distillrec.data.interactions import InteractionMatrix
from distillrec.distillation.losses import bpr_loss, feature_loss, rrd_loss
from distillrec.distillation.teacher import TeacherSignals
from distillrec.errors import DistillrecError
from distillrec.models.base import Recommender
from distillrec.training.tasks import Batch, sample_negatives

DISTILL_TASKS = ("ranking", "rating", "feature")
DEFAULT_DISTILL_WEIGHTS = (0.4, 0.4, 0.2)


@dataclass(frozen=True)
class LossConfig:
    """Which distillation terms, their weights, and the sampling sizes."""

    tasks: tuple[str, ...] = DISTILL_TASKS
    weights: tuple[float, ...] = DEFAULT_DISTILL_WEIGHTS
    truth_weight: float = 0.5
    #: rating share of the loss when there is no teacher (the ground-truth-only baselines)
    truth_rating_weight: float = 0.1
    n_negatives: int = 4
    n_uninteresting: int = 50

    def validate(self) -> None:
        unknown = [t for t in self.tasks if t not in DISTILL_TASKS]
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise DistillrecError(f"--distill_tasks: give each of {', '.join(DISTILL_TASKS)} at most once, "
                                  f"got {','.join(self.tasks)}")
        if len(self.weights) != len(DISTILL_TASKS) or min(self.weights) < 0:
            raise DistillrecError("--distill_weights: three non-negative weights (ranking, rating, feature), "
                                  f"got {','.join(map(str, self.weights))}")
        if sum(self.term_weights().values()) <= 0:
            raise DistillrecError("--distill_weights: the chosen --distill_tasks all have weight 0")
        for name in ("truth_weight", "truth_rating_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise DistillrecError(f"--{name} must be in [0, 1], got {getattr(self, name)}")
        if self.n_negatives < 1 or self.n_uninteresting < 1:
            raise DistillrecError("--n_negatives and --n_uninteresting must be at least 1")

    def term_weights(self) -> dict[str, float]:
        """Weights of the chosen terms, renormalised to sum to one."""
        chosen = {t: w for t, w in zip(DISTILL_TASKS, self.weights, strict=True) if t in self.tasks}
        total = sum(chosen.values())
        return {t: w / total for t, w in chosen.items()} if total > 0 else chosen


def pair_outputs(model: Recommender, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``users [B]``, ``items [B, L]`` -> ``(rating [B, L], logit [B, L])`` for any student."""
    if hasattr(model, "outputs"):
        return model.outputs(users, items)
    out = model(users.repeat_interleave(items.shape[1]), items.reshape(-1))
    return out.rating.view_as(items), out.logit.view_as(items)


def student_representations(model: Recommender, users: torch.Tensor,
                            items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's per-entity vectors of a batch: two-tower outputs, or flattened field embeddings."""
    if hasattr(model, "user_vectors"):
        return model.user_vectors(users), model.item_vectors(items)
    embedding = getattr(model, "embedding", None)
    if embedding is None or not hasattr(embedding, "user_embeddings"):
        raise DistillrecError(f"feature distillation needs a student with field embeddings or towers, not "
                              f"{model.model_name}; drop 'feature' from --distill_tasks")
    return embedding.user_embeddings(users).flatten(1), embedding.item_embeddings(items).flatten(1)


class DistillationTask(nn.Module):
    """``loss(model, batch)`` for the trainer and ``per_sample(model, batch)`` for importance estimation."""

    def __init__(self, config: LossConfig, positives: InteractionMatrix, signals: TeacherSignals | None,
                 student: Recommender, generator: torch.Generator | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.positives = positives
        self.signals = signals
        self.generator = generator or torch.Generator().manual_seed(0)
        self.weights = config.term_weights()
        self.alpha = 1.0 if signals is None else config.truth_weight
        self.projections = nn.ModuleDict()
        self.avoid = positives
        if signals is not None:
            users = torch.arange(positives.n_users)
            rows, cols = positives.rows(users)
            top_users = users.repeat_interleave(signals.n_top)
            self.avoid = InteractionMatrix.from_pairs(torch.cat([rows, top_users]),
                                                      torch.cat([cols, signals.top_items.reshape(-1)]),
                                                      len(users), positives.n_items)
            if "feature" in self.weights:
                if signals.user_repr is None:
                    raise DistillrecError("the teacher has no entity representations for feature distillation; "
                                          "drop 'feature' from --distill_tasks")
                user_dim, item_dim = (r.shape[1] for r in student_representations(
                    student, torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)))
                self.projections["user"] = nn.Linear(user_dim, signals.user_repr.shape[1])
                self.projections["item"] = nn.Linear(item_dim, signals.item_repr.shape[1])
        else:
            rho = config.truth_rating_weight
            self.weights = {t: w for t, w in {"ranking": 1 - rho, "rating": rho}.items() if t in self.weights}

    @property
    def distilling(self) -> bool:
        return self.signals is not None

    def per_sample(self, model: Recommender, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``([B] loss, {term: [B]})`` of one batch of training triples."""
        users, n_neg = batch.users, self.config.n_negatives
        negatives = sample_negatives(users, self.positives, n_neg, self.generator)  # [B, J]
        lists = [batch.items.unsqueeze(1), negatives]
        if self.signals is not None:
            top = self.signals.top_items[users]  # [B, M]
            lists += [top, sample_negatives(users, self.avoid, self.config.n_uninteresting, self.generator)]
        rating, logit = pair_outputs(model, users, torch.cat(lists, dim=1))
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros_like(rating[:, 0])
        m = self.signals.n_top if self.signals is not None else 0
        if "ranking" in self.weights:
            ranking = bpr_loss(logit[:, 0], logit[:, 1:1 + n_neg])
            parts["bpr"] = ranking
            if self.signals is not None:
                parts["rrd"] = rrd_loss(logit[:, 1 + n_neg:1 + n_neg + m], logit[:, 1 + n_neg + m:])
                ranking = self.alpha * ranking + (1 - self.alpha) * parts["rrd"]
            total = total + self.weights["ranking"] * ranking
        if "rating" in self.weights:
            truth = (rating[:, 0] - batch.ratings).pow(2)
            parts["mse"] = truth
            if self.signals is not None:
                targets = torch.cat([self.signals.train_ratings[batch.index].unsqueeze(1),
                                     self.signals.top_ratings[users]], dim=1)  # [B, 1 + M]
                predicted = torch.cat([rating[:, :1], rating[:, 1 + n_neg:1 + n_neg + m]], dim=1)
                parts["rating_kd"] = (predicted - targets).pow(2).mean(dim=1)
                truth = self.alpha * truth + (1 - self.alpha) * parts["rating_kd"]
            total = total + self.weights["rating"] * truth
        if "feature" in self.weights and self.signals is not None:
            user_vec, item_vec = student_representations(model, users, batch.items)
            parts["feature"] = (feature_loss(self.projections["user"](user_vec), self.signals.user_repr[users])
                                + feature_loss(self.projections["item"](item_vec), self.signals.item_repr[batch.items]))
            total = total + self.weights["feature"] * parts["feature"]
        return total, parts

    def loss(self, model: Recommender, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.index is None and self.signals is not None:
            raise ValueError("distillation needs each batch's training-row index (Batch.index)")
        per_sample, parts = self.per_sample(model, batch)
        total = per_sample.mean() + model.regularization(batch.users, batch.items)
        return total, {k: float(v.detach().mean()) for k, v in parts.items()}

    def keep_latent(self, kept: torch.Tensor) -> None:
        """Follow the student's surgery: its representations lost the columns not in ``kept``."""
        for name, projection in self.projections.items():
            shrunk = nn.Linear(len(kept), projection.out_features).to(projection.weight.device)
            with torch.no_grad():
                shrunk.weight.copy_(projection.weight[:, kept])
                shrunk.bias.copy_(projection.bias)
            self.projections[name] = shrunk
