"""Surgery: physically rebuild the student without the removed groups (smaller tensors, narrower layers).

``shrink`` returns a new ``LightweightModel`` whose config records the new widths and whose tensors are slices of
the old ones, so it reloads from its JSON config with no pruning code. ``masked`` is the reference it must equal:
the old model with fixed zero masks on the removed groups (``max_masked_difference`` measures the gap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from distillrec.models.lightweight import LightweightModel
from distillrec.pruning.groups import families, field_offset

Removal = Mapping[str, set[int]]


def kept_units(size: int, removed: set[int], device: torch.device | None = None) -> torch.Tensor:
    return torch.tensor([i for i in range(size) if i not in removed], dtype=torch.int64, device=device)


@torch.no_grad()
def shrink(model: LightweightModel, removed: Removal) -> tuple[LightweightModel, torch.Tensor]:
    """``(smaller model, kept latent indices)``: ``removed`` maps family names to the unit indices to drop."""
    fams = {f.name: f for f in families(model)}
    device = model.global_mean.device
    keep = {name: kept_units(f.size, set(removed.get(name, ())), device) for name, f in fams.items()}
    # fields dropped by earlier steps stay recorded at width 0 (absent from the config would mean embed_dim)
    field_dims = {**model.config.field_dims,
                  **{f.field: len(keep[name]) for name, f in fams.items() if f.kind == "embedding_dim"}}
    config = dataclasses.replace(
        model.config, field_dims=field_dims, out_dim=len(keep["latent"]),
        user_hidden=tuple(len(keep[f"user.hidden{i}"]) for i in range(len(model.user_tower.layers) - 1)),
        item_hidden=tuple(len(keep[f"item.hidden{i}"]) for i in range(len(model.item_tower.layers) - 1)))
    small = LightweightModel(model.shape, config).to(device)
    small.rank_by = model.rank_by
    for label, width in field_dims.items():
        if width:
            source = model.embedding.table(label).weight[:, keep[f"{_side(label)}.emb:{label}"]]
            small.embedding.table(label).weight.copy_(source)
    for name, buffer in small.embedding.named_buffers():
        buffer.copy_(model.embedding.get_buffer(name))
    for side in ("user", "item"):
        old, new = getattr(model, f"{side}_tower"), getattr(small, f"{side}_tower")
        inputs = _kept_inputs(model, side, keep)
        for index, (old_layer, new_layer) in enumerate(zip(old.layers, new.layers, strict=True)):
            rows = keep["latent"] if index == len(old.layers) - 1 else keep[f"{side}.hidden{index}"]
            _copy_linear(old_layer, new_layer, rows, inputs)
            inputs = rows
    small.rating_scale_weight.copy_(model.rating_scale_weight[keep["latent"]])
    small.user_bias.weight.copy_(model.user_bias.weight)
    small.item_bias.weight.copy_(model.item_bias.weight)
    small.global_mean.copy_(model.global_mean)
    return small.train(model.training), keep["latent"]


def _side(label: str) -> str:
    return "user" if label == "user_id" or label.startswith("user.") else "item"


def _kept_inputs(model: LightweightModel, side: str, keep: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Columns of the tower's concatenated input that survive: each kept field's kept dimensions."""
    names = model.user_fields if side == "user" else model.item_fields
    return torch.cat([field_offset(model, n) + keep[f"{side}.emb:{n}"] for n in names])


def _copy_linear(old: nn.Linear, new: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> None:
    new.weight.copy_(old.weight[rows][:, cols])
    new.bias.copy_(old.bias[rows])


@contextmanager
def masked(model: LightweightModel, removed: Removal) -> Iterator[LightweightModel]:
    """The model with fixed zero masks on the removed groups (what ``shrink`` must reproduce)."""
    device = model.global_mean.device
    gates = {}
    for family in families(model):
        gate = torch.ones(family.size, device=device)
        gate[list(removed.get(family.name, ()))] = 0.0
        gates[family.name] = gate
    previous, model.gates = model.gates, gates
    try:
        yield model
    finally:
        model.gates = previous


@torch.no_grad()
def max_masked_difference(masked_model: LightweightModel, removed: Removal, small: LightweightModel,
                          users: torch.Tensor, items: torch.Tensor) -> float:
    """Largest difference between the masked and the shrunk model's ranking scores and rating predictions,
    relative to each output's scale (its largest absolute value, at least 1).

    Relative, because removing units reorders float32 sums: a student whose scores reach 100 differs by a few ulp,
    several 1e-6 in absolute terms, while its surgery is exact.
    """
    modes = masked_model.training, small.training
    masked_model.eval(), small.eval()
    with masked(masked_model, removed) as reference:
        expected = (reference.score(users), reference.predict_rating(users, items))
    actual = (small.score(users), small.predict_rating(users, items))
    masked_model.train(modes[0]), small.train(modes[1])
    return max(float((a - e).abs().max() / e.abs().max().clamp_min(1.0)) for a, e in zip(actual, expected, strict=True))
