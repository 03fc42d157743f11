"""Shared building blocks: the field-embedding layer every feature model uses, and an MLP.

``FieldEmbedding`` turns (user, item) pairs into ``[N, F, D]`` field embeddings: the user id, the user's
side-feature fields, the item id and the item's fields, in that order. Each field has its own table
(per-field structure is what Fisher analysis and pruning work on). Multi-valued fields (genres) are
mean-pooled. The entities' feature codes are buffers filled in ``load_features`` and saved with the model,
so a checkpoint can score users without the dataset. User-side and item-side parts are computed
separately, which lets full ranking embed each user and each item once.

``field_dims`` gives fields their own widths (a pruned student's embedding dimensions per field); a field of width
0 is dropped with its table and codes. Stacked ``[N, F, D]`` outputs need equal widths; ``side_concat`` returns
the fields side by side, ``[N, sum of widths]``, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from distillrec.data.dataset import FieldKind, FieldSpec
from distillrec.models.base import DataShape


class FieldEmbedding(nn.Module):
    """Per-field embedding tables for user id, user fields, item id, item fields -> ``[N, F, D]``."""

    def __init__(self, shape: DataShape, dim: int, use_features: bool = True, init_std: float = 0.01,
                 field_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.dim = dim
        widths = dict(field_dims or {})
        user_fields = shape.user_fields if use_features else ()
        item_fields = shape.item_fields if use_features else ()
        user_specs = (FieldSpec("user_id", FieldKind.CATEGORICAL, ()), *user_fields)
        item_specs = (FieldSpec("item_id", FieldKind.CATEGORICAL, ()), *item_fields)
        self.user_specs = tuple(s for s in user_specs if widths.get(_label("user", s.name), dim) > 0)
        self.item_specs = tuple(s for s in item_specs if widths.get(_label("item", s.name), dim) > 0)
        sizes = {"user_id": shape.n_users, "item_id": shape.n_items}
        self.tables = nn.ModuleDict()
        for side, specs, n_rows in (("user", self.user_specs, shape.n_users), ("item", self.item_specs, shape.n_items)):
            for spec in specs:
                width = widths.get(_label(side, spec.name), dim)
                self.tables[self._key(side, spec.name)] = nn.Embedding(sizes.get(spec.name, spec.vocab_size), width)
                if spec.name in sizes:
                    continue
                multi = spec.kind is FieldKind.MULTI_CATEGORICAL
                empty = torch.zeros(n_rows, spec.vocab_size) if multi else torch.zeros(n_rows, dtype=torch.int64)
                self.register_buffer(self._buffer(side, spec.name), empty)
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=init_std)

    @property
    def field_names(self) -> list[str]:
        return [_label("user", s.name) for s in self.user_specs] + [_label("item", s.name) for s in self.item_specs]

    @property
    def field_dims(self) -> list[int]:
        """Width of each field, in ``field_names`` order."""
        return [self.tables[self._key(side, s.name)].embedding_dim
                for side, specs in (("user", self.user_specs), ("item", self.item_specs)) for s in specs]

    @property
    def n_fields(self) -> int:
        return len(self.user_specs) + len(self.item_specs)

    def load_features(self, user_values: dict[str, torch.Tensor], item_values: dict[str, torch.Tensor]) -> None:
        """Copy the entities' encoded feature codes into the buffers (done once, in ``prepare``)."""
        for side, specs, values in (("user", self.user_specs, user_values), ("item", self.item_specs, item_values)):
            for spec in specs:
                if spec.name in ("user_id", "item_id"):
                    continue
                buffer = getattr(self, self._buffer(side, spec.name))
                buffer.copy_(values[spec.name].to(buffer.dtype))

    def user_embeddings(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` user ids -> ``[B, F_user, D]``."""
        return torch.stack(self.side_parts("user", users), dim=-2)

    def item_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """``[B]`` item ids -> ``[B, F_item, D]``."""
        return torch.stack(self.side_parts("item", items), dim=-2)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Pairs -> ``[N, F, D]`` with user fields first, then item fields."""
        return torch.cat([self.user_embeddings(users), self.item_embeddings(items)], dim=1)

    def side_parts(self, side: str, ids: torch.Tensor) -> list[torch.Tensor]:
        """Each field of one side (``"user"`` or ``"item"``) for ids of any shape ``[*]`` -> ``[*, width]``."""
        parts = []
        for spec in self.user_specs if side == "user" else self.item_specs:
            table = self.tables[self._key(side, spec.name)]
            if spec.name in ("user_id", "item_id"):
                parts.append(table(ids))
                continue
            codes = getattr(self, self._buffer(side, spec.name))[ids]
            if spec.kind is FieldKind.MULTI_CATEGORICAL:
                weights = codes / codes.sum(-1, keepdim=True).clamp(min=1.0)  # mean pooling, [*, V]
                parts.append(weights @ table.weight)
            else:
                parts.append(table(codes))
        return parts

    def table(self, label: str) -> nn.Embedding:
        """The table of a field by its public name (``user_id``, ``item.genres``, ...)."""
        if label in ("user_id", "item_id"):
            return self.tables[label]
        side, name = label.split(".", 1)
        return self.tables[self._key(side, name)]

    def side_concat(self, side: str, ids: torch.Tensor) -> torch.Tensor:
        """``[*]`` ids -> ``[*, sum of the side's widths]``: the fields side by side (per-field widths allowed)."""
        return torch.cat(self.side_parts(side, ids), dim=-1)

    @staticmethod
    def _key(side: str, name: str) -> str:
        return name if name in ("user_id", "item_id") else f"{side}__{name}"

    @staticmethod
    def _buffer(side: str, name: str) -> str:
        return f"codes__{side}__{name}"


class MLP(nn.Sequential):
    """Linear -> ReLU (-> Dropout) blocks; ``hidden`` lists the layer widths."""

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        super().__init__(*layers)
        self.out_dim = in_dim


def _label(side: str, name: str) -> str:
    """A field's public name: ``user_id``, ``item_id``, or ``user.<field>`` / ``item.<field>``."""
    return name if name in ("user_id", "item_id") else f"{side}.{name}"


def take_rows(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[index]`` for a tensor that needs gradients, reproducibly.

    Advanced indexing's backward accumulates repeated rows with atomic adds across CPU threads, so two seeded runs
    drift apart in the last bits; ``index_select``'s backward (``index_add``) adds in a fixed order.
    """
    return rows.index_select(0, index.reshape(-1)).view(*index.shape, *rows.shape[1:])
