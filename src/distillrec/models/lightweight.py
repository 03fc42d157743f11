"""The serving student (``lightweight_model``): a two-tower model whose item side is computed once for all items.

A user tower and an item tower (in the spirit of YouTube's candidate generator, Covington et al., RecSys 2016, and
DSSM-style two-tower retrieval) each read their side's fields through the shared field-embedding layer, with a
width per field, concatenated, then an MLP ending in ``out_dim`` latent dimensions:

    u = T_user([e_user_id, e_gender, e_age, ...])            [K]
    v = T_item([e_item_id, e_genres, e_year, ...])           [K]
    logit(u, i)  = <u, v> + c_i                              (ranking)
    rating(u, i) = mu + b_u + b_i + <w ⊙ u, v>               (rating; w [K] weighs the shared latent dimensions)

Why this form (measured for ``benchmarks/distill.py``): every pairwise feature model of the zoo runs its interaction
network on each (user, item) pair, so one request costs ``n_items`` network evaluations; here a request is one user
tower pass and one ``[1, K] @ [K, n_items]`` product over item vectors cached at load time. Side features stay in,
so cold users and items still get informed vectors (a new user is all-unknown codes plus an untrained id row).

Structured groups for pruning (see ``distillrec.pruning``): each field's embedding dimensions (and whole fields),
each tower's hidden neurons, and the shared latent dimensions. ``gates`` lets importance estimation scale any of
them: ``{"user.emb:<field>" | "item.emb:<field>" | "user.hidden<l>" | "item.hidden<l>" | "latent": tensor}``, per
sample ``[B, G]`` or one fixed mask ``[G]``; with no gates set the model is the plain function above. The config
records every width, so a pruned student is rebuilt from its JSON config alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from distillrec.errors import DistillrecError
from distillrec.models.base import DataShape, ModelOutput, Recommender, TrainData, tensor_state_key
from distillrec.models.layers import FieldEmbedding, take_rows
from distillrec.registry import register_model

#: ``outputs`` scores a batch against all its distinct items at once when they number at most this many per list entry
DENSE_LIST_FACTOR = 32


@dataclass(frozen=True)
class LightweightConfig:
    """Widths: ``embed_dim`` per field unless ``field_dims`` says otherwise (0 drops a field), towers, latent size."""

    embed_dim: int = 32
    field_dims: dict[str, int] = field(default_factory=dict)
    user_hidden: tuple[int, ...] = (64,)
    item_hidden: tuple[int, ...] = (64,)
    out_dim: int = 32
    dropout: float = 0.0
    use_features: bool = True
    embed_reg: float = 0.0
    init_std: float = 0.05


class Tower(nn.Module):
    """Concatenated fields -> ReLU MLP -> ``out_dim``; ``layers[l]`` are the Linear maps (prunable by row)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, gate: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``[*, in_dim] -> [*, out_dim]``; ``gate(l, h)`` scales hidden layer ``l``'s units (importance probes)."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = gate(index, self.dropout(x.relu()))
        return x


@register_model("lightweight_model")
class LightweightModel(Recommender):
    """Two towers over per-field embeddings; see the module docstring for the equations and the groups."""

    config_class = LightweightConfig
    # chosen on validation with the zoo's training settings: see ``benchmarks/distill.py``'s student search
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "batch_size": 1024, "n_negatives": 4,
                                                "rating_weight": 0.1}

    def __init__(self, shape: DataShape, config: LightweightConfig) -> None:
        super().__init__(shape, config)
        if config.out_dim < 1 or min((*config.user_hidden, *config.item_hidden), default=1) < 1:
            raise DistillrecError("lightweight_model: out_dim and every hidden width must be at least 1")
        self.embedding = FieldEmbedding(shape, config.embed_dim, config.use_features, init_std=config.init_std,
                                        field_dims=config.field_dims)
        if not self.embedding.user_specs or not self.embedding.item_specs:
            raise DistillrecError("lightweight_model: each side needs at least one field of width > 0")
        dims = dict(zip(self.embedding.field_names, self.embedding.field_dims, strict=True))
        self.user_fields = [n for n in self.embedding.field_names if n == "user_id" or n.startswith("user.")]
        self.item_fields = [n for n in self.embedding.field_names if n == "item_id" or n.startswith("item.")]
        self.user_tower = Tower(sum(dims[n] for n in self.user_fields), tuple(config.user_hidden), config.out_dim,
                                config.dropout)
        self.item_tower = Tower(sum(dims[n] for n in self.item_fields), tuple(config.item_hidden), config.out_dim,
                                config.dropout)
        self.rating_scale_weight = nn.Parameter(torch.ones(config.out_dim))  # w: latent weights of the rating head
        self.user_bias = nn.Embedding(shape.n_users, 1)
        self.item_bias = nn.Embedding(shape.n_items, 2)  # [:, 0] rating bias b_i, [:, 1] ranking bias c_i
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("global_mean", torch.tensor(sum(shape.rating_scale) / 2))
        #: per-sample multipliers on structured groups (importance estimation); ``None`` in normal use
        self.gates: dict[str, torch.Tensor] | None = None
        self._item_cache: tuple[tuple[Any, ...], torch.Tensor] | None = None

    # -- sides ---------------------------------------------------------------------------------------------------
    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, K]``: the user tower's output (latent gates applied)."""
        return self._gate("latent", self._side("user", users, self.user_tower))

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """``[*]`` -> ``[*, K]``: the item tower's output for item ids of any shape."""
        return self._side("item", items, self.item_tower)

    def _side(self, side: str, ids: torch.Tensor, tower: Tower) -> torch.Tensor:
        names = self.user_fields if side == "user" else self.item_fields
        parts = [self._gate(f"{side}.emb:{name}", part)
                 for name, part in zip(names, self.embedding.side_parts(side, ids), strict=True)]
        return tower(torch.cat(parts, dim=-1), lambda layer, h: self._gate(f"{side}.hidden{layer}", h))

    def _gate(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x [B, *, G]`` times the gate of ``name``: per sample ``[B, G]`` (importance) or ``[G]`` for all (masks)."""
        if self.gates is None or name not in self.gates:
            return x
        gate = self.gates[name]
        if gate.dim() == 1:
            return x * gate
        return x * gate.view(gate.shape[0], *([1] * (x.dim() - 2)), gate.shape[1])

    def all_item_vectors(self) -> torch.Tensor:
        """``[n_items, K]``; cached outside autograd until any parameter changes (what serving precomputes)."""
        if torch.is_grad_enabled() or self.gates is not None:
            return self.item_vectors(self._all_items())
        key = tuple(tensor_state_key(t) for t in (*self.parameters(), *self.buffers()))
        if self._item_cache is None or self._item_cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable outside inference mode
                self._item_cache = (key, self.item_vectors(self._all_items()))
        return self._item_cache[1]

    def _all_items(self) -> torch.Tensor:
        return torch.arange(self.n_items, device=self.item_bias.weight.device)

    # -- the interface -------------------------------------------------------------------------------------------
    def prepare(self, data: TrainData, seed: int = 0) -> None:
        self.global_mean.fill_(float(data.ratings.float().mean()))
        self.embedding.load_features(data.user_features, data.item_features)

    def outputs(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``users [B]``, ``items [B, L]`` -> ``(rating [B, L], logit [B, L])``: each user against its own list.

        Distillation lists repeat the catalogue many times per batch (ml-100k: 75 items x 1024 users over 1682
        items), so the item tower runs once per distinct item; when the distinct items are few next to the list
        length, both heads are one ``[2, B, K] @ [K, N]`` product read at the list's positions, far cheaper than
        gathering ``[B, L, K]`` item vectors and their scatter-add backward. Per-sample item gates (importance
        probes), dropout and graph export need the per-entry pass.
        """
        u = self.user_vectors(users)  # [B, K]
        base = self.global_mean + self.user_bias(users)  # [B, 1]
        if self._per_entry():
            v, bias = self.item_vectors(items), self.item_bias(items)  # [B, L, K], [B, L, 2]
        else:
            distinct, inverse = torch.unique(items, return_inverse=True)
            v, bias = self.item_vectors(distinct), take_rows(self.item_bias(distinct), inverse)  # [N, K], [B, L, 2]
            if len(distinct) <= DENSE_LIST_FACTOR * items.shape[1]:
                both = torch.stack([u, u * self.rating_scale_weight]) @ v.T  # [2, B, N]
                dots, rated = both.gather(2, inverse.expand(2, -1, -1))  # one gather: one sparse backward
                return base + bias[..., 0] + rated, dots + bias[..., 1]
            v = take_rows(v, inverse)
        dots = (u.unsqueeze(1) * v).sum(-1)
        rated = (u.unsqueeze(1) * self.rating_scale_weight * v).sum(-1)
        return base + bias[..., 0] + rated, dots + bias[..., 1]

    def _per_entry(self) -> bool:
        per_sample = self.gates is not None and any(name.startswith("item.") and gate.dim() > 1
                                                    for name, gate in self.gates.items())
        # graph export cannot trace ``torch.unique``'s data-dependent size
        tracing = torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()
        return per_sample or tracing or (self.training and self.config.dropout > 0)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        rating, logit = self.outputs(users, items.unsqueeze(1))
        return ModelOutput(rating=rating[:, 0], logit=logit[:, 0])

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if not self.config.embed_reg:
            return torch.zeros((), device=users.device)
        rows = (self.embedding.side_concat("user", users).pow(2).sum(-1)
                + self.embedding.side_concat("item", items).pow(2).sum(-1))
        return self.config.embed_reg * rows.mean()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B] -> [B, n_items]``: one user-tower pass and one product with the (cached) item vectors."""
        items = self.all_item_vectors()
        if self.rank_by == "rating":
            scores = (self.user_vectors(users) * self.rating_scale_weight) @ items.T
            return scores + self.global_mean + self.user_bias(users) + self.item_bias.weight[:, 0]
        return torch.addmm(self.item_bias.weight[:, 1], self.user_vectors(users), items.T)

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.clip_rating(self.forward(users, items).rating)

    def entity_representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The towers' outputs ``u`` and ``v`` for every user and item: ``[n_users, K]``, ``[n_items, K]``."""
        return self.user_vectors(torch.arange(self.n_users, device=self.global_mean.device)), self.all_item_vectors()
