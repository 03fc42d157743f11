"""The in-memory dataset every loader produces.

Conventions fixed here for the whole library: users are rows, ids are contiguous ``int64`` starting at 0,
the original ids are kept for input and output, and scores are ``[B, n_items]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from distillrec.errors import DataError


class FieldKind(StrEnum):
    """How a side-feature field is stored and embedded."""

    CATEGORICAL = "categorical"  # one code per entity, int64 in [0, vocab); 0 means unknown
    MULTI_CATEGORICAL = "multi_categorical"  # multi-hot uint8 [n, vocab]
    NUMERIC = "numeric"  # float32 per entity, NaN where unknown


@dataclass(frozen=True)
class FieldSpec:
    """One side-feature field. ``vocab`` holds the category labels (index = code) for categoricals."""

    name: str
    kind: FieldKind
    vocab: tuple[str, ...] = ()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


@dataclass
class FeatureTable:
    """Side features of one entity side (users or items), row ``i`` belongs to contiguous id ``i``.

    ``values[name]`` is ``int64 [n]`` (categorical), ``uint8 [n, vocab]`` (multi-categorical) or
    ``float32 [n]`` (numeric).
    """

    fields: tuple[FieldSpec, ...]
    values: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise DataError(f"duplicate feature field names: {names}")
        lengths = {len(self.values[n]) for n in names}
        if len(lengths) > 1:
            raise DataError(f"feature fields have different row counts: {sorted(lengths)}")
        for spec in self.fields:
            column = self.values[spec.name]
            if spec.kind is FieldKind.MULTI_CATEGORICAL and column.shape[1:] != (spec.vocab_size,):
                raise DataError(f"field {spec.name!r}: multi-hot width {column.shape} != vocab {spec.vocab_size}")

    @property
    def n_rows(self) -> int:
        return len(self.values[self.fields[0].name]) if self.fields else 0

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclass
class Dataset:
    """User-item interactions with original ids, optional titles and side features.

    ``user_ids[u]`` / ``item_ids[i]`` are the original ids (as strings) of contiguous ids ``u`` / ``i``.
    ``source_dir`` is the folder the files came from (used for predefined splits such as ml-100k's u1..u5).
    """

    name: str
    user_ids: np.ndarray  # object/str [n_users]
    item_ids: np.ndarray  # object/str [n_items]
    users: np.ndarray  # int64 [n]
    items: np.ndarray  # int64 [n]
    ratings: np.ndarray  # float32 [n]
    timestamps: np.ndarray  # int64 [n]
    rating_scale: tuple[float, float] = (1.0, 5.0)
    item_titles: np.ndarray | None = None  # object/str [n_items]
    user_features: FeatureTable | None = None
    item_features: FeatureTable | None = None
    source_dir: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("items", "ratings", "timestamps"):
            if len(getattr(self, name)) != n:
                raise DataError(f"{self.name}: column {name!r} has {len(getattr(self, name))} rows, expected {n}")
        if n == 0:
            raise DataError(f"{self.name}: no interactions")
        if self.user_features is not None and self.user_features.n_rows != self.n_users:
            raise DataError(f"{self.name}: user features have {self.user_features.n_rows} rows, {self.n_users} users")
        if self.item_features is not None and self.item_features.n_rows != self.n_items:
            raise DataError(f"{self.name}: item features have {self.item_features.n_rows} rows, {self.n_items} items")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    def user_index(self) -> dict[str, int]:
        """Original user id -> contiguous id."""
        return {str(u): i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        """Original item id -> contiguous id."""
        return {str(v): i for i, v in enumerate(self.item_ids)}

    def summary(self) -> dict[str, object]:
        density = self.n_interactions / max(1, self.n_users * self.n_items)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": round(density, 6),
            "rating_scale": list(self.rating_scale),
            "user_fields": [f.name for f in self.user_features.fields] if self.user_features else [],
            "item_fields": [f.name for f in self.item_features.fields] if self.item_features else [],
        }


def encode_ids(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map raw ids to contiguous int64 codes in sorted order of the raw ids.

    Returns ``(codes [n], originals [n_unique] as str)``. Numeric ids sort numerically so that
    contiguous id order follows the original ids (user 1 -> 0, user 2 -> 1, ...).
    """
    uniques, codes = np.unique(raw, return_inverse=True)
    return codes.astype(np.int64), uniques.astype(str).astype(object)
