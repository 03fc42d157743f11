"""Where structured (group) Fisher is measured: probes on activations, and the group families they feed.

A *probe* marks one activation ``a`` of a module (its output, or a part of it such as a cross layer's cross term)
whose trailing ``unit_dims`` dimensions are *units*: neurons, head channels, CIN feature maps, embedding dimensions.
Multiplying unit ``u`` by a mask ``m_u = 1`` gives ``d loss_n / d m_u = sum over the rest of a * d loss_n / d a``:
activation times gradient, summed over every non-unit dimension of sample ``n``. A *family* sums units into groups
(the ``d_head`` channels of a head, the ``D`` dimensions of a field) and may combine probes (a field is its embedding
and its first-order term); a group's score is ``sum_n (value of sample n)^2``, squared *after* summing over the
group, which is the Fisher of the group's shared mask variable.

Lookup probes (embedding layers) also record which table rows each sample touched, so the parameter Fisher of a
table is accumulated on those rows only (never a ``[batch, vocabulary, dim]`` tensor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distillrec.data.dataset import FieldKind
from distillrec.models.autoint import InteractingLayer
from distillrec.models.base import ModelOutput, Recommender
from distillrec.models.dcnv2 import CrossLayer, LowRankExpert, MixtureCrossLayer
from distillrec.models.layers import MLP, FieldEmbedding
from distillrec.models.svd import SVD
from distillrec.models.xdeepfm import CIN

#: group kinds, in report order
GROUP_KINDS = ("layer", "field", "embedding_dim", "attention_head", "mlp_neuron", "cin_map", "cross_unit",
               "svd_factor", "svd_component")
Reduce = Callable[[torch.Tensor], torch.Tensor]


def _output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output


def _add(output: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return output + delta


def _cross_term(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """``x_{l+1} - x_l``: what a cross layer adds to its input (masking it to 0 skips the layer)."""
    return output - args[1]


def _maps_last(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """CIN holds a layer's maps as ``[H_k, N * D]`` (maps first); units are trailing, so present ``[N * D, H_k]``."""
    return output.transpose(-1, -2)


def _add_maps_last(output: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return output + delta.transpose(-1, -2)


def _svd_components(module: nn.Module, args: tuple, output: ModelOutput) -> torch.Tensor:
    """PureSVD's logit is ``sum_k uf[u, k] * if[i, k]``: one term per latent component, ``[P, k]``."""
    users, items = args[0], args[1]
    return module.user_factors[users] * module.item_factors[items]


def _add_to_logit(output: ModelOutput, delta: torch.Tensor) -> ModelOutput:
    return ModelOutput(rating=output.rating, logit=output.logit + delta.sum(-1))


def field_rows(module: FieldEmbedding, args: tuple) -> list[torch.Tensor]:
    """Rows each field of a ``FieldEmbedding`` reads for pairs ``(users [P], items [P])``, in output field order.

    Categorical fields give int64 row ids ``[P]``; multi-hot fields the pooling weights ``[P, V]`` (mean pooling).
    Mirrors ``FieldEmbedding.side_parts``; ``tests/fisher`` checks that these rows rebuild the layer's output.
    """
    rows = []
    for side, specs, ids in (("user", module.user_specs, args[0]), ("item", module.item_specs, args[1])):
        for spec in specs:
            if spec.name in ("user_id", "item_id"):
                rows.append(ids)
                continue
            codes = getattr(module, module._buffer(side, spec.name))[ids]
            if spec.kind is FieldKind.MULTI_CATEGORICAL:
                rows.append(codes / codes.sum(-1, keepdim=True).clamp(min=1.0))
            else:
                rows.append(codes)
    return rows


def embedding_rows(module: nn.Embedding, args: tuple) -> list[torch.Tensor]:
    return [args[0]]


@dataclass(eq=False)
class Probe:
    """One measured activation; ``call`` picks the module's n-th call in a forward (CIN reuses one per layer)."""

    key: str
    kind: str
    module: nn.Module
    scope: str  # path of the recommender the probe belongs to ("" for the teacher itself)
    unit_dims: int = 1
    call: int = 0
    activation: Callable = _output
    inject: Callable = _add
    #: lookup probes: rows read per sample, and the table parameter names in output-field order
    rows: Callable | None = None
    tables: tuple[str, ...] = ()
    #: whether this probe is one entry of its model's ``layer`` family
    is_layer: bool = True
    #: semantic target groups (``--target_layers``) the probe belongs to
    tags: tuple[str, ...] = ()


@dataclass
class Family:
    """Groups of one kind: ``value[n, k, g] = sum over parts of reduce(contribution of probe)``."""

    kind: str
    scope: str
    labels: tuple[str, ...]
    parts: list[tuple[str, Reduce]] = field(default_factory=list)
    #: semantic target groups that select the family; ``always``: computed whatever ``--target_layers`` says
    tags: tuple[str, ...] = ()
    always: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.scope}" if self.scope else self.kind

    def values(self, contributions: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Per-sample group values ``[N, K, G]`` from per-probe unit contributions ``[N, K, *units]``."""
        total = None
        for key, reduce in self.parts:
            if key in contributions:
                part = reduce(contributions[key])
                total = part if total is None else total + part
        return total


@dataclass
class Structure:
    """All probes and families of a teacher (the members of an ensemble included)."""

    probes: dict[str, Probe]
    families: dict[str, Family]
    scopes: dict[str, str]  # recommender path -> model name


def _flat(c: torch.Tensor, unit_dims: int) -> torch.Tensor:
    return c.flatten(c.dim() - unit_dims) if unit_dims > 1 else c


def _place(index: int, size: int, unit_dims: int) -> Reduce:
    """Sum all units into column ``index`` of ``size`` groups (one layer of a ``layer`` family)."""
    def reduce(c: torch.Tensor) -> torch.Tensor:
        total = _flat(c, unit_dims).sum(-1, keepdim=True)
        return F.pad(total, (index, size - index - 1))

    return reduce


def _heads(n_heads: int) -> Reduce:
    return lambda c: c.unflatten(-1, (n_heads, -1)).sum(-1)


def _fields_of(positions: list[int], size: int, unit_dims: int) -> Reduce:
    """Scatter per-field sums into ``size`` field groups.

    ``unit_dims == 2``: a ``[.., F, D]`` field-embedding contribution, one field per position; otherwise the whole
    contribution (a lookup's ``[.., D]``, PureSVD's ``[.., k]``) goes to every listed position.
    """
    index = torch.tensor(positions)

    def reduce(c: torch.Tensor) -> torch.Tensor:
        whole = c.sum(-1, keepdim=True).expand(*c.shape[:-1], len(positions)) if unit_dims != 2 else None
        per_field = c.sum(-1) if whole is None else whole
        out = per_field.new_zeros(*per_field.shape[:-1], size)
        return out.index_add(-1, index.to(c.device), per_field)

    return reduce


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _identity(c: torch.Tensor) -> torch.Tensor:
    return c


def discover(model: nn.Module) -> Structure:
    """Probes and unit families of every recommender inside ``model`` (itself, or the members of an ensemble).

    ``layer`` families depend on which probes ``--target_layers`` selects; ``layer_family`` builds them later.
    """
    probes: dict[str, Probe] = {}
    families: dict[str, Family] = {}
    scopes = {path: module.model_name for path, module in model.named_modules()
              if isinstance(module, Recommender) and not list(getattr(module, "members", []))}
    for scope in scopes:
        recommender = model.get_submodule(scope) if scope else model
        found = _scope_probes(recommender, scope)
        probes.update({p.key: p for p in found})
        for family in [*_unit_families(recommender, scope, found), _field_family(scope, found)]:
            families[family.name] = family
    if len(scopes) > 1:  # an ensemble: a field masked in every member at once
        families["field"] = _ensemble_fields([f for f in families.values() if f.kind == "field"])
    return Structure(probes, families, scopes)


def layer_family(scope: str, probes: list[Probe]) -> Family:
    """One group per layer-like probe of a recommender: the mask of the layer's whole output."""
    layers = [p for p in probes if p.is_layer and p.scope == scope]
    cut = len(scope) + 1 if scope else 0
    return Family("layer", scope, tuple(p.key[cut:] for p in layers),
                  [(p.key, _place(i, len(layers), p.unit_dims)) for i, p in enumerate(layers)])


def _scope_probes(model: nn.Module, scope: str) -> list[Probe]:
    found: list[Probe] = []
    inside_lookup: list[str] = []
    for path, module in model.named_modules():
        key = _join(scope, path)
        if any(path.startswith(p + ".") for p in inside_lookup):
            continue
        if isinstance(module, FieldEmbedding):
            inside_lookup.append(path)
            tables = tuple(f"{key}.tables.{module._key(side, s.name)}.weight"
                           for side, specs in (("user", module.user_specs), ("item", module.item_specs))
                           for s in specs)
            kind = "lookup" if path.rsplit(".", 1)[-1] == "linear" else "embedding"  # first-order terms: no dims
            found.append(Probe(key, kind, module, scope, unit_dims=2, rows=field_rows, tables=tables,
                               tags=("embedding",)))
        elif isinstance(module, nn.Embedding):
            found.append(Probe(key, "lookup", module, scope, rows=embedding_rows, tables=(f"{key}.weight",),
                               tags=("embedding",)))
        elif isinstance(module, InteractingLayer):
            found.append(Probe(key, "attention", module, scope, tags=("attention", "interaction")))
        elif isinstance(module, MLP):
            found += [Probe(f"{key}.{i}", "mlp", layer, scope, tags=("mlp",))
                      for i, layer in enumerate(module) if isinstance(layer, nn.Linear)]
        elif isinstance(module, CIN):
            found += [Probe(f"{key}.layers.{k}", "cin", module.act, scope, call=k, activation=_maps_last,
                            inject=_add_maps_last, tags=("interaction",)) for k in range(len(module.layers))]
        elif isinstance(module, CrossLayer | MixtureCrossLayer):
            found.append(Probe(key, "cross_layer", module, scope, activation=_cross_term, tags=("interaction",)))
            if isinstance(module, CrossLayer):
                found.append(Probe(f"{key}.linear", "cross_unit", module.linear, scope, is_layer=False,
                                   tags=("interaction",)))
        elif isinstance(module, LowRankExpert):
            found.append(Probe(f"{key}.down", "cross_unit", module.down, scope, is_layer=False,
                               tags=("interaction",)))
    if isinstance(model, SVD):
        found.append(Probe(_join(scope, "pure_svd"), "svd_component", model, scope, activation=_svd_components,
                           inject=_add_to_logit, tags=("interaction",)))
    return found


def _unit_families(model: nn.Module, scope: str, probes: list[Probe]) -> list[Family]:
    """Families whose groups are units of one probe: heads, neurons, maps, cross units, dimensions, factors."""
    families = []
    for probe in probes:
        module, key = probe.module, probe.key
        if probe.kind == "embedding":
            labels = tuple(f"{f}:d{d}" for f in module.field_names for d in range(module.dim))
            families.append(Family("embedding_dim", key, labels, [(key, lambda c: c.flatten(-2))], probe.tags))
        elif probe.kind == "lookup" and isinstance(module, nn.Embedding) and module.embedding_dim > 1:
            dims = range(module.embedding_dim)
            if not isinstance(model, SVD):
                families.append(Family("embedding_dim", key, tuple(f"d{d}" for d in dims), [(key, _identity)],
                                       probe.tags))
            elif key.endswith("user_embedding"):
                # MF's latent factor k scales p_uk * q_ik: the user factors' activation times gradient measures
                # it (the item factors would measure the same masks again)
                families.append(Family("svd_factor", key, tuple(f"f{d}" for d in dims), [(key, _identity)],
                                       ("interaction", "embedding")))
        elif probe.kind == "attention":
            labels = tuple(f"head{h}" for h in range(module.n_heads))
            families.append(Family("attention_head", key, labels, [(key, _heads(module.n_heads))], probe.tags))
        elif probe.kind in ("mlp", "cross_unit", "cin"):
            kind, prefix = {"mlp": ("mlp_neuron", "n"), "cross_unit": ("cross_unit", "u"),
                            "cin": ("cin_map", "map")}[probe.kind]
            size = module.out_features if isinstance(module, nn.Linear) else _cin_maps(model, probe)
            families.append(Family(kind, key, tuple(f"{prefix}{i}" for i in range(size)), [(key, _identity)],
                                   probe.tags))
        elif probe.kind == "svd_component":
            labels = tuple(f"c{k}" for k in range(module.item_factors.shape[1]))
            families.append(Family("svd_component", key, labels, [(key, _identity)], probe.tags))
    return families


def _cin_maps(model: nn.Module, probe: Probe) -> int:
    layer = int(probe.key.rsplit(".layers.", 1)[1])
    cin = next(m for m in model.modules() if isinstance(m, CIN) and m.act is probe.module)
    return cin.layers[layer].out_features


def _field_family(scope: str, probes: list[Probe]) -> Family:
    """Whole feature fields: a field's mask scales its embedding and its first-order term together.

    Models without field embeddings (MF, NeuMF) have two fields, the user and the item id, made of the lookups
    whose names say ``user`` or ``item``; PureSVD's logit belongs to both.
    """
    lookups = [p for p in probes if p.rows is not None]
    field_layers = [p for p in lookups if isinstance(p.module, FieldEmbedding)]
    if field_layers:
        labels = tuple(field_layers[0].module.field_names)
        parts = [(p.key, _fields_of(list(range(len(labels))), len(labels), 2)) for p in field_layers
                 if tuple(p.module.field_names) == labels]
        return Family("field", scope, labels, parts, always=True)
    parts = []
    for probe in lookups:
        name = probe.key.rsplit(".", 1)[-1]
        side = 0 if "user" in name else 1 if "item" in name else None
        if side is not None:
            parts.append((probe.key, _fields_of([side], 2, 1)))
    parts += [(p.key, _fields_of([0, 1], 2, 1)) for p in probes if p.kind == "svd_component"]
    return Family("field", scope, ("user_id", "item_id"), parts, always=True)


def _ensemble_fields(member_fields: list[Family]) -> Family:
    """One field family over all members: field ``f`` masked in every member that has it."""
    labels = tuple(dict.fromkeys(label for family in member_fields for label in family.labels))
    parts = []
    for family in member_fields:
        positions = torch.tensor([labels.index(label) for label in family.labels])
        for key, reduce in family.parts:
            parts.append((key, _remap(reduce, positions, len(labels))))
    return Family("field", "", labels, parts, always=True)


def _remap(reduce: Reduce, positions: torch.Tensor, size: int) -> Reduce:
    def remapped(c: torch.Tensor) -> torch.Tensor:
        part = reduce(c)
        out = part.new_zeros(*part.shape[:-1], size)
        return out.index_add(-1, positions.to(part.device), part)

    return remapped
