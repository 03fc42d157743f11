"""The structured groups of the serving student, what each one costs, and how many parameters a plan leaves.

A *family* is one gate of ``LightweightModel`` (see its docstring): the embedding dimensions of one field
(``user.emb:<field>``), the hidden neurons of one tower layer (``user.hidden<l>``), or the shared latent dimensions
(``latent``). Group ``g`` of a family is one unit of it. Removing a group removes these parameters:

* embedding dimension ``d`` of field ``f``: column ``d`` of ``f``'s table (``vocab_f``) and the matching input
  column of the tower's first layer (its width);
* hidden neuron ``j`` of layer ``l``: row ``j`` of layer ``l`` (inputs + bias) and column ``j`` of layer ``l + 1``;
* latent dimension ``k``: row ``k`` (and bias) of both towers' last layers and the rating weight ``w_k``.

*Prunable* parameters are the field tables, the tower layers and ``w``; the per-entity biases stay.
A whole field is a group too (all its dimensions at once), so Fisher can drop a feature that does not matter.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from distillrec.errors import DistillrecError
from distillrec.models.lightweight import LightweightModel


@dataclass(frozen=True)
class Family:
    """One gate: ``name``, its ``kind`` (embedding_dim, mlp_neuron, latent_dim), its side and its size."""

    name: str
    kind: str
    side: str  # "user", "item" or "both" (latent)
    size: int
    layer: int = 0  # hidden layer index for mlp_neuron families
    field: str = ""  # field label for embedding_dim families


def require_prunable(model: object) -> object:
    """``model`` (an instance or a registered class) when surgery knows its structure, else a one-line error."""
    cls = model if isinstance(model, type) else type(model)
    if not issubclass(cls, LightweightModel):
        raise DistillrecError(f"structured pruning is implemented for the lightweight_model student, not "
                              f"{getattr(cls, 'model_name', cls.__name__)}; use --pruning_ratio 0 "
                              "to distil other architectures densely")
    return model


def families(model: LightweightModel) -> list[Family]:
    """Every gate of the student, in a fixed order (fields, then hidden layers, then latent)."""
    found = []
    for name, width in zip(model.embedding.field_names, model.embedding.field_dims, strict=True):
        side = "user" if name == "user_id" or name.startswith("user.") else "item"
        found.append(Family(f"{side}.emb:{name}", "embedding_dim", side, width, field=name))
    for side, tower in (("user", model.user_tower), ("item", model.item_tower)):
        for layer, linear in enumerate(tower.layers[:-1]):
            found.append(Family(f"{side}.hidden{layer}", "mlp_neuron", side, linear.out_features, layer=layer))
    found.append(Family("latent", "latent_dim", "both", model.config.out_dim))
    return found


@dataclass(frozen=True)
class Widths:
    """The sizes that determine the prunable parameter count."""

    vocab: dict[str, int]  # field label -> table rows
    dims: dict[str, int]  # field label -> width
    hidden: dict[str, tuple[int, ...]]  # side -> hidden widths
    out_dim: int

    def side_fields(self, side: str) -> list[str]:
        return [f for f in self.dims if f == f"{side}_id" or f.startswith(f"{side}.")]

    def prunable(self) -> int:
        total = sum(self.vocab[f] * d for f, d in self.dims.items()) + self.out_dim
        for side in ("user", "item"):
            widths = [sum(self.dims[f] for f in self.side_fields(side)), *self.hidden[side], self.out_dim]
            total += sum((a + 1) * b for a, b in itertools.pairwise(widths))
        return total


def widths_of(model: LightweightModel) -> Widths:
    embedding = model.embedding
    return Widths(vocab={f: embedding.table(f).num_embeddings for f in embedding.field_names},
                  dims=dict(zip(model.embedding.field_names, model.embedding.field_dims, strict=True)),
                  hidden={"user": tuple(lin.out_features for lin in model.user_tower.layers[:-1]),
                          "item": tuple(lin.out_features for lin in model.item_tower.layers[:-1])},
                  out_dim=model.config.out_dim)


def field_offset(model: LightweightModel, label: str) -> int:
    """Where field ``label`` starts in its tower's concatenated input."""
    names = model.user_fields if label in model.user_fields else model.item_fields
    dims = dict(zip(model.embedding.field_names, model.embedding.field_dims, strict=True))
    return sum(dims[n] for n in names[:names.index(label)])


def prunable_parameters(model: LightweightModel) -> int:
    """Parameters in the field tables, tower layers and rating weights (equals ``widths_of(model).prunable()``)."""
    return widths_of(model).prunable()


def widths_after(widths: Widths, fams: list[Family], removed: Mapping[str, set[int]]) -> Widths:
    """The widths once the groups in ``removed`` (family name -> unit indices) are gone."""
    by_name = {f.name: f for f in fams}
    dims, hidden, out_dim = dict(widths.dims), {k: list(v) for k, v in widths.hidden.items()}, widths.out_dim
    for name, units in removed.items():
        family = by_name[name]
        if family.kind == "embedding_dim":
            dims[family.field] -= len(units)
        elif family.kind == "mlp_neuron":
            hidden[family.side][family.layer] -= len(units)
        else:
            out_dim -= len(units)
    return Widths(widths.vocab, {f: d for f, d in dims.items() if d > 0},
                  {k: tuple(v) for k, v in hidden.items()}, out_dim)


def group_costs(model: LightweightModel, fams: list[Family]) -> dict[str, torch.Tensor]:
    """Parameters each single group removes at the current widths, ``{family: [size]}``."""
    w = widths_of(model)
    costs = {}
    for family in fams:
        if family.kind == "embedding_dim":
            tower = model.user_tower if family.side == "user" else model.item_tower
            cost = w.vocab[family.field] + tower.layers[0].out_features
        elif family.kind == "mlp_neuron":
            tower = model.user_tower if family.side == "user" else model.item_tower
            cost = tower.layers[family.layer].in_features + 1 + tower.layers[family.layer + 1].out_features
        else:
            cost = model.user_tower.layers[-1].in_features + model.item_tower.layers[-1].in_features + 3
        costs[family.name] = torch.full((family.size,), float(cost))
    return costs
