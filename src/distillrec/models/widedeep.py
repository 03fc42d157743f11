"""Wide & Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016).

``logit = w_wide^T [x, φ(x)] + w_deep^T a^(L) + b``, trained jointly:

* wide: a linear model over the raw sparse features ``x`` -- the base class's first-order term per field
  (for the id fields exactly the user and item biases) -- plus, optionally (``cross=True``), the paper's
  cross-product transformations ``φ(x)``: one weight per (user-side value, item-side value) conjunction
  of every user side-feature field with every item side-feature field (e.g. ``AND(occupation=student,
  genre=Comedy)``). Multi-valued item fields contribute the sum of the weights of their active values, as
  the paper's binary conjunctions do. Id x id crosses are left out: they would be one weight per pair, i.e.
  memorising the training matrix.
* deep: an MLP over the concatenated field embeddings (ReLU layers), whose last layer feeds the heads.

Both parts feed the two task heads of ``FieldInteractionModel`` (rating: ``mu + wide_r + w_r . a``, ranking
logit: ``wide_l + w_l . a``). The paper uses FTRL for the wide part and AdaGrad for the deep part; we use
the shared trainer's single optimiser (Adam) for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from distillrec.data.dataset import FieldKind, FieldSpec
from distillrec.models.base import DataShape, ModelOutput
from distillrec.models.field_model import SCORE_CHUNK_PAIRS, FieldInteractionModel
from distillrec.models.layers import MLP, FieldEmbedding
from distillrec.registry import register_model


@dataclass(frozen=True)
class WideDeepConfig:
    """Embedding size, deep tower, wide cross-product terms on/off, L2 on the touched embedding rows."""

    embed_dim: int = 16
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.1
    use_features: bool = True
    cross: bool = False
    embed_reg: float = 0.0


@register_model("widedeep")
class WideDeep(FieldInteractionModel):
    config_class = WideDeepConfig
    # Defaults chosen on validation (ml-100k P-RANK seed 0, task both, valid NDCG@10; test never read), with
    # the training settings found for NeuMF (lr 1e-3, batch 256, BPR on 4 negatives, rating_weight 0.02):
    #   hidden (256, 128, 64) -> 0.250 (chosen) | hidden (128, 64) -> 0.245 | (128, 64) + cross -> 0.229
    # The cross-product terms lower validation NDCG (they memorise demographic x genre co-occurrence that the
    # embeddings already carry), so they are off by default. P-RATING u1 valid RMSE at the defaults: 0.917.
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 0.001, "batch_size": 256, "n_negatives": 4,
                                                "rating_weight": 0.02}

    def __init__(self, shape: DataShape, config: WideDeepConfig) -> None:
        super().__init__(shape, config)
        self.mlp = MLP(self.n_fields * config.embed_dim, config.hidden, config.dropout)
        self.build_heads(self.mlp.out_dim)
        user_specs, item_specs = self.embedding.user_specs[1:], self.embedding.item_specs[1:]
        self.cross_pairs = [(u, i) for u in user_specs for i in item_specs] if config.cross else []
        # one weight table per crossed field pair, [V_user * V_item, 2] (rating, logit): zero-initialised
        # like the base's first-order terms, so training starts from the plain deep model
        self.crosses = nn.ModuleDict()
        for user_spec, item_spec in self.cross_pairs:
            table = nn.Embedding(user_spec.vocab_size * item_spec.vocab_size, 2)
            nn.init.zeros_(table.weight)
            self.crosses[_cross_key(user_spec, item_spec)] = table

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, hidden[-1]]``: the deep tower over the concatenated embeddings."""
        return self.mlp(fields.flatten(1))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        out = super().forward(users, items)
        if not self.cross_pairs:
            return out
        cross = self.cross_terms(users, items)  # [B, 2]
        return ModelOutput(rating=out.rating + cross[:, 0], logit=out.logit + cross[:, 1])

    def cross_terms(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Wide cross-product part for pairs: ``[B]``, ``[B]`` -> ``[B, 2]``."""
        total = torch.zeros(len(users), 2, device=users.device)
        for user_spec, item_spec in self.cross_pairs:
            weights = self._cross_table(user_spec, item_spec)[self._codes("user", user_spec, users)]  # [B, Vi, 2]
            total = total + (weights * self._item_indicators(item_spec, items).unsqueeze(-1)).sum(1)
        return total

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, n_items]``, equal to ``forward`` on every pair, without a per-pair embedding table.

        The deep tower's first layer is linear in ``[e_user_fields, e_item_fields]``, so it splits into a user
        half and an item half computed once per user and once per item; only the remaining layers run on item
        chunks of broadcast pairs. The wide part is a sum of per-user, per-item and cross terms.
        """
        if not self.config.hidden:
            return super().score(users)
        column = 0 if self.rank_by == "rating" else 1
        all_items = torch.arange(self.n_items, device=users.device)
        user_emb = self.embedding.user_embeddings(users).flatten(1)  # [B, F_user * D]
        item_emb = self.embedding.item_embeddings(all_items).flatten(1)  # [I, F_item * D]
        first, rest = self.mlp[0], nn.Sequential(*list(self.mlp)[1:])
        split = user_emb.shape[1]
        user_half = user_emb @ first.weight[:, :split].T + first.bias  # [B, H0]
        item_half = item_emb @ first.weight[:, split:].T  # [I, H0]
        head = self.head.weight[column]
        batch = len(users)
        chunk = max(1, SCORE_CHUNK_PAIRS // max(1, batch))
        deep = []
        for start in range(0, self.n_items, chunk):
            stop = min(start + chunk, self.n_items)
            pre = user_half.unsqueeze(1) + item_half[start:stop].unsqueeze(0)  # [B, C, H0]
            deep.append(rest(pre.reshape(-1, pre.shape[-1])).matmul(head).view(batch, stop - start))
        user_wide = self.linear.user_embeddings(users)[..., column].sum(1)  # [B]
        item_wide = self.linear.item_embeddings(all_items)[..., column].sum(1)  # [I]
        scores = torch.cat(deep, dim=1) + user_wide.unsqueeze(1) + item_wide.unsqueeze(0) + self.head.bias[column]
        for user_spec, item_spec in self.cross_pairs:
            weights = self._cross_table(user_spec, item_spec)[self._codes("user", user_spec, users), :, column]
            scores = scores + weights @ self._item_indicators(item_spec, all_items).T  # [B, Vi] @ [Vi, I]
        return scores + self.global_mean if column == 0 else scores

    def _cross_table(self, user_spec: FieldSpec, item_spec: FieldSpec) -> torch.Tensor:
        return self.crosses[_cross_key(user_spec, item_spec)].weight.view(user_spec.vocab_size,
                                                                         item_spec.vocab_size, 2)

    def _codes(self, side: str, spec: FieldSpec, ids: torch.Tensor) -> torch.Tensor:
        # the entities' feature codes live once, in the embedding layer's buffers (filled in ``prepare``)
        return getattr(self.embedding, FieldEmbedding._buffer(side, spec.name))[ids]

    def _item_indicators(self, spec: FieldSpec, items: torch.Tensor) -> torch.Tensor:
        """``[B]`` items -> ``[B, V]`` 0/1 indicators of the field's active values."""
        codes = self._codes("item", spec, items)
        if spec.kind is FieldKind.MULTI_CATEGORICAL:
            return codes
        return F.one_hot(codes, spec.vocab_size).to(self.head.weight.dtype)


def _cross_key(user_spec: FieldSpec, item_spec: FieldSpec) -> str:
    return f"user__{user_spec.name}__x__item__{item_spec.name}"
