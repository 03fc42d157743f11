"""Base class of the feature-interaction models (DeepFM, Wide&Deep, DCNv2, xDeepFM, AutoInt).

Each subclass only defines ``interact(fields [N, F, D]) -> [N, H]``. The base adds what they share:
the field-embedding layer, a first-order (linear) term per field and task, and two heads on the
interaction output: ``rating = mu + linear_r + w_r . h`` and ``logit = linear_l + w_l . h``. The linear
term over the id fields is exactly the user and item biases of biased MF, which rating prediction needs.

Full ranking (``score``) embeds the batch's users once and all items once, then runs ``interact`` on
item chunks of the broadcast pairs, so no per-(user, item) feature table is ever built.
"""

from __future__ import annotations

import torch
from torch import nn

from distillrec.models.base import DataShape, ModelOutput, Recommender, TrainData
from distillrec.models.layers import FieldEmbedding

#: pairs per chunk in ``score``: bounds peak memory at about PAIRS * F * D floats per activation
SCORE_CHUNK_PAIRS = 32768


class FieldInteractionModel(Recommender):
    """Subclasses set ``self.out_dim`` before calling ``build_heads`` and implement ``interact``."""

    def __init__(self, shape: DataShape, config) -> None:
        super().__init__(shape, config)
        self.embedding = FieldEmbedding(shape, config.embed_dim, config.use_features)
        self.linear = FieldEmbedding(shape, 2, config.use_features, init_std=0.0)  # [.., 0]: rating, [.., 1]: logit
        self.register_buffer("global_mean", torch.tensor(sum(shape.rating_scale) / 2))

    @property
    def n_fields(self) -> int:
        return self.embedding.n_fields

    def build_heads(self, hidden_dim: int) -> None:
        self.head = nn.Linear(hidden_dim, 2)
        nn.init.zeros_(self.head.bias)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` field embeddings -> ``[N, H]`` interaction representation."""
        raise NotImplementedError

    def prepare(self, data: TrainData, seed: int = 0) -> None:
        self.global_mean.fill_(float(data.ratings.float().mean()))
        self.embedding.load_features(data.user_features, data.item_features)
        self.linear.load_features(data.user_features, data.item_features)

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        reg = getattr(self.config, "embed_reg", 0.0)
        if not reg:
            return torch.zeros((), device=users.device)
        return reg * self.embedding(users, items).pow(2).sum((1, 2)).mean()

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        out = self._outputs(self.embedding(users, items), self.linear(users, items))
        return ModelOutput(rating=self.global_mean + out[:, 0], logit=out[:, 1])

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.clip_rating(self.forward(users, items).rating)

    def entity_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's and item's field embeddings, flattened: ``[n_users, F_u * D]``, ``[n_items, F_i * D]``."""
        device = self.global_mean.device
        users, items = torch.arange(self.n_users, device=device), torch.arange(self.n_items, device=device)
        return self.embedding.user_embeddings(users).flatten(1), self.embedding.item_embeddings(items).flatten(1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, n_items]``: user and item sides embedded once, interactions in item chunks."""
        column = 0 if self.rank_by == "rating" else 1
        all_items = torch.arange(self.n_items, device=users.device)
        user_emb, item_emb = self.embedding.user_embeddings(users), self.embedding.item_embeddings(all_items)
        user_lin, item_lin = self.linear.user_embeddings(users), self.linear.item_embeddings(all_items)
        batch = len(users)
        chunk = max(1, SCORE_CHUNK_PAIRS // max(1, batch))
        scores = []
        for start in range(0, self.n_items, chunk):
            stop = min(start + chunk, self.n_items)
            fields = _pair_fields(user_emb, item_emb[start:stop])
            linear = _pair_fields(user_lin, item_lin[start:stop])
            scores.append(self._outputs(fields, linear)[:, column].view(batch, stop - start))
        return torch.cat(scores, dim=1)

    def _outputs(self, fields: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]``, ``[N, F, 2]`` -> ``[N, 2]`` (rating offset, ranking logit)."""
        return linear.sum(dim=1) + self.head(self.interact(fields))


def _pair_fields(user_part: torch.Tensor, item_part: torch.Tensor) -> torch.Tensor:
    """All pairs of ``[B, Fu, D]`` users and ``[C, Fi, D]`` items -> ``[B * C, Fu + Fi, D]``."""
    batch, n_items = user_part.shape[0], item_part.shape[0]
    users = user_part.unsqueeze(1).expand(batch, n_items, *user_part.shape[1:])
    items = item_part.unsqueeze(0).expand(batch, n_items, *item_part.shape[1:])
    return torch.cat([users, items], dim=2).reshape(batch * n_items, -1, user_part.shape[-1])
