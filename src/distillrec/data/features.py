"""Side features as model-ready tensors.

Models see only two kinds of field: single-valued categoricals (an int64 code per entity, 0 = unknown)
and multi-valued categoricals (a multi-hot row per entity, pooled by the model). Numeric fields are
bucketised here into quantile bins (code 0 for a missing value), as DeepCTR and RecBole do for CTR models,
so that every field can be embedded the same way.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch

from distillrec.data.dataset import FeatureTable, FieldKind, FieldSpec

DEFAULT_BINS = 10


def encode_side_features(table: FeatureTable | None, n_bins: int = DEFAULT_BINS
                         ) -> tuple[tuple[FieldSpec, ...], dict[str, torch.Tensor]]:
    """``(fields, values)`` with every field categorical or multi-categorical.

    ``values[name]`` is int64 ``[n]`` for categoricals and float32 ``[n, vocab]`` multi-hot for
    multi-categoricals. Bucket edges depend only on the feature values, never on ratings.
    """
    if table is None:
        return (), {}
    fields: list[FieldSpec] = []
    values: dict[str, torch.Tensor] = {}
    for spec in table.fields:
        column = table.values[spec.name]
        if spec.kind is FieldKind.NUMERIC:
            spec, codes = bucketise(spec.name, column, n_bins)
            values[spec.name] = torch.from_numpy(codes)
        elif spec.kind is FieldKind.CATEGORICAL:
            values[spec.name] = torch.from_numpy(np.asarray(column, dtype=np.int64))
        else:
            values[spec.name] = torch.from_numpy(np.asarray(column, dtype=np.float32))
        fields.append(spec)
    return tuple(fields), values


def bucketise(name: str, column: np.ndarray, n_bins: int) -> tuple[FieldSpec, np.ndarray]:
    """Quantile bins of a numeric column: codes 1..k for values, 0 for NaN; labels name the ranges."""
    column = np.asarray(column, dtype=np.float64)
    known = column[~np.isnan(column)]
    if known.size == 0:
        return FieldSpec(name, FieldKind.CATEGORICAL, ("<unk>",)), np.zeros(len(column), dtype=np.int64)
    edges = np.unique(np.quantile(known, np.linspace(0, 1, n_bins + 1)[1:-1]))
    codes = np.where(np.isnan(column), 0, np.searchsorted(edges, np.nan_to_num(column), side="right") + 1)
    bounds = [-np.inf, *edges.tolist(), np.inf]
    labels = tuple(f"[{lo:g}, {hi:g})" for lo, hi in pairwise(bounds))
    return FieldSpec(name, FieldKind.CATEGORICAL, ("<unk>", *labels)), codes.astype(np.int64)
