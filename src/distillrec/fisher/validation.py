"""Does the Fisher mean something? Damage a field or a group of a trained teacher and measure what it costs.

* **Fields** are damaged by *permutation* at test time: field ``f`` of every entity takes the value that field
  has for another entity, ``new[u] = old[perm[u]]``, in every recommender of the teacher that has the field
  (one permutation for all ensemble members). A side field permutes the rows of its codes buffer in each
  ``FieldEmbedding`` (the embedding and the first-order term); an id field permutes the rows of the id tables
  and of every other per-user (per-item) tensor of id-only models (SVD's factors, biases, PureSVD rows). The
  model keeps seeing real field values, so the damage is the information the field carries, not its reaction
  to an input it never saw (what zeroing would measure). Nothing is retrained; ``permute_field`` restores the
  tensors on exit.
* **Groups** are damaged by *masking*: the group's units of the probed activation are multiplied by 0, the
  very mask variable ``m_g`` whose gradient the group Fisher squares (``fisher.groups``). Which units a group
  owns is read off its family's reduce functions, so every family (heads, neurons, CIN maps, dimensions,
  fields, layers, ensemble-wide fields) is covered by one rule.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from scipy.stats import spearmanr
from torch import nn
from torch.func import vmap

from distillrec.data.dataset import Dataset
from distillrec.data.splits import Split
from distillrec.errors import DistillrecError
from distillrec.evaluation.protocols import evaluate
from distillrec.fisher.empirical import SampleBatch
from distillrec.fisher.groups import Family, Probe
from distillrec.fisher.losses import Objective
from distillrec.fisher.tracing import Tracer
from distillrec.models.base import Recommender, TrainData
from distillrec.models.layers import FieldEmbedding
from distillrec.training.tasks import sample_negatives

ID_FIELDS = {"user_id": "user", "item_id": "item"}
#: per-entity state of id-only models whose name does not say its side (SVD's cold-user flag)
SIDE_STATE = {"user": ("has_history",), "item": ()}
#: samples per vmapped loss evaluation
LOSS_CHUNK = 1024


def field_side(label: str) -> str:
    """``user_id`` / ``user.gender`` -> ``user``; ``item_id`` / ``item.genres`` -> ``item``."""
    side = ID_FIELDS.get(label) or label.split(".", 1)[0]
    if side not in ("user", "item"):
        raise DistillrecError(f"unknown field {label!r}: expected user_id, item_id, user.<name> or item.<name>")
    return side


def _recommenders(model: nn.Module) -> list[Recommender]:
    """The leaf recommenders of ``model``: itself, or the members of an ensemble."""
    return [m for m in model.modules() if isinstance(m, Recommender) and not list(getattr(m, "members", []))]


def field_tensors(model: nn.Module, label: str) -> list[torch.Tensor]:
    """Every tensor whose rows hold one entity's value of field ``label`` (rows = users or items)."""
    side, found = field_side(label), {}
    for recommender in _recommenders(model):
        inside: set[int] = set()
        for module in recommender.modules():
            if not isinstance(module, FieldEmbedding):
                continue
            inside.update(id(t) for t in (*module.parameters(), *module.buffers()))
            if label in module.field_names:
                tensor = (module.table(label).weight if label in ID_FIELDS
                          else getattr(module, module._buffer(side, label.split(".", 1)[1])))
                found[id(tensor)] = tensor
        if label not in ID_FIELDS:
            continue
        n_rows = recommender.n_users if side == "user" else recommender.n_items
        for name, tensor in (*recommender.named_parameters(), *recommender.named_buffers()):
            leaf = name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name
            named = side in leaf.rsplit(".", 1)[-1] or leaf in SIDE_STATE[side]
            if id(tensor) not in inside and tensor.dim() >= 1 and tensor.shape[0] == n_rows and named:
                found[id(tensor)] = tensor
    return list(found.values())


@contextmanager
def permute_field(model: nn.Module, label: str, perm: torch.Tensor) -> Iterator[list[torch.Tensor]]:
    """Within the block, entity ``e``'s value of field ``label`` is entity ``perm[e]``'s, in every recommender."""
    tensors = field_tensors(model, label)
    if not tensors:
        raise DistillrecError(f"the model has no field {label!r}")
    saved = [t.detach().clone() for t in tensors]
    try:
        with torch.no_grad():
            for tensor, original in zip(tensors, saved, strict=True):
                if len(perm) != len(original):
                    raise DistillrecError(f"field {label}: permutation of {len(perm)} entities for "
                                          f"{len(original)} rows")
                tensor.copy_(original[perm.to(original.device)])
        yield tensors
    finally:
        with torch.no_grad():
            for tensor, original in zip(tensors, saved, strict=True):
                tensor.copy_(original)


def field_damage(model: Recommender, dataset: Dataset, split: Split, labels: Sequence[str], repeats: int = 3,
                 seed: int = 0, part: str = "test", rating: bool = True,
                 device: str | torch.device = "cpu") -> dict[str, Any]:
    """Mean NDCG@10 drop and RMSE rise on ``part`` when each field is permuted, over ``repeats`` seeded permutations.

    Permutation ``r`` of field ``f`` is drawn from seed ``(seed, index of f in labels, r)``, so two teachers
    given the same labels see the same permutations. ``rating=False``: ranking only (RMSE rise is NaN).
    """
    def measure() -> tuple[float, float]:
        metrics = evaluate(model, dataset, split, part, ks=(10,), rating=rating, device=device)
        return metrics["ndcg@10"], metrics.get("rmse", math.nan)

    base_ndcg, base_rmse = measure()
    fields = {}
    for index, label in enumerate(labels):
        n = dataset.n_users if field_side(label) == "user" else dataset.n_items
        drops, rises = [], []
        for r in range(repeats):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index * 1_009 + r)
            with permute_field(model, label, torch.randperm(n, generator=generator)):
                ndcg, rmse = measure()
            drops.append(base_ndcg - ndcg)
            rises.append(rmse - base_rmse)
        fields[label] = {"ndcg_drop": _mean(drops), "ndcg_drop_std": _std(drops), "rmse_rise": _mean(rises),
                         "rmse_rise_std": _std(rises)}
    return {"base": {"ndcg@10": base_ndcg, "rmse": base_rmse}, "repeats": repeats, "fields": fields}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _std(values: Sequence[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else 0.0


def unit_shapes(model: nn.Module, probes: Sequence[Probe], objectives: Sequence[Objective],
                batch: SampleBatch) -> dict[str, tuple[int, ...]]:
    """Each probe's unit shape (its trailing ``unit_dims`` dims), from one traced sample per objective."""
    tracer = Tracer(probes)
    shapes: dict[str, tuple[int, ...]] = {}
    with tracer, torch.no_grad():
        for objective in objectives:
            tracer.start("shape")
            objective(model, *(t[0] for t in batch.tensors()))
            shapes.update(tracer.shapes)
    units = {p.key: p.unit_dims for p in probes}
    return {k: s[len(s) - units[k]:] for k, s in shapes.items()}


def group_masks(family: Family, group: int, units: Mapping[str, tuple[int, ...]],
                dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """``{probe: mask}`` with 0 on the units of ``family``'s group ``group`` and 1 elsewhere.

    A family maps unit contributions to group values with sums (``Family.values``); a unit belongs to the group
    when its one-hot contribution reaches the group's column. Probes the group does not touch are left out.
    """
    if not 0 <= group < len(family.labels):
        raise DistillrecError(f"{family.name}: group {group} out of range ({len(family.labels)} groups)")
    masks = {}
    for key, reduce in family.parts:
        if key not in units:
            continue
        shape = tuple(units[key])
        n = math.prod(shape)
        basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *shape)  # [units, K=1, *shape]
        owned = reduce(basis)[:, 0, group] != 0
        if owned.any():
            masks[key] = (~owned).to(dtype).reshape(shape)
    return masks


def sample_batch(data: TrainData, n_samples: int, n_negatives: int = 1, seed: int = 0) -> SampleBatch:
    """A seeded subset of training triples with seeded sampled negatives (fixed across every damage)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(data.users)
    idx = torch.randperm(n, generator=generator)[:min(n, n_samples)].sort().values
    users = data.users[idx]
    negatives = sample_negatives(users, data.matrix, n_negatives, generator)
    return SampleBatch(users, data.items[idx], data.ratings[idx], negatives)


@torch.no_grad()
def sample_losses(model: nn.Module, objective: Objective, batch: SampleBatch, probes: Sequence[Probe] = (),
                  masks: Mapping[str, torch.Tensor] | None = None, chunk: int = LOSS_CHUNK) -> torch.Tensor:
    """Per-sample loss ``[N]`` of the focus task (the Fisher's own objective), with ``masks`` applied to probes."""
    if objective.task not in ("ranking", "rating"):
        raise DistillrecError(f"loss increase needs a loss task (ranking or rating), not {objective.task!r}")
    model.eval()
    reference = next(iter(model.parameters()), torch.zeros(()))
    masks = {k: m.to(reference.device, reference.dtype) for k, m in (masks or {}).items()}
    chosen = [p for p in probes if p.key in masks]
    per_sample = vmap(lambda *sample: objective(model, *sample))
    tracer = Tracer(chosen)
    out = []
    with tracer:
        for start in range(0, len(batch), chunk):
            part = [t.to(reference.device) for t in batch.part(start, start + chunk).tensors()]
            tracer.start("mask", mask=masks)
            try:
                out.append(per_sample(*part)[:, 0])
            except RuntimeError as exc:  # an op vmap cannot batch: one sample at a time (same losses)
                if "vmap" not in str(exc):
                    raise
                warnings.warn(f"vmap failed ({str(exc)[:60]}...); looping over samples", stacklevel=2)
                losses = []
                for j in range(len(part[0])):
                    tracer.start("mask", mask=masks)
                    losses.append(objective(model, *(t[j] for t in part))[0])
                out.append(torch.stack(losses))
    return torch.cat(out)


def loss_increase(model: nn.Module, objective: Objective, batch: SampleBatch, probes: Sequence[Probe],
                  masks: Mapping[str, torch.Tensor], base: torch.Tensor | None = None) -> float:
    """Mean loss over ``batch`` with the group masked minus without (``base``: the unmasked per-sample losses)."""
    base = sample_losses(model, objective, batch) if base is None else base
    return float((sample_losses(model, objective, batch, probes, masks) - base).double().mean())


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho (ties averaged); ``None`` when it is undefined (fewer than 3 points or a constant side)."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)
