"""Importance of the student's structured groups: Fisher (on any per-sample loss), magnitude, random.

Fisher of group ``g`` with mask ``m_g`` (all ones): ``sum_n (d loss_n / d m_g)^2``. The student takes *per-sample*
gates ``[B, G]`` (``LightweightModel.gates``), and every sample is computed from its own rows (its user, its item
list), so one backward pass of ``sum_n loss_n`` gives each sample's ``d loss_n / d m_{n, g}`` exactly: the
per-sample gradients the empirical Fisher needs, at the cost of one ordinary training step.

A whole field scores the sum of its dimensions' Fisher (the diagonal estimate of removing all of them), not the
Fisher of one mask over the whole field, ``sum_n (sum_d d loss_n / d m_{n, d})^2``. That joint mask measures how
the loss reacts to *scaling* the field's vector, and the dimensions' terms cancel: on ml-100k at pruning ratio 0.9 it
rated ``user_id`` cheaper per parameter than single dimensions, so step 2 or 3 dropped the user-id table in all three
seeds and valid NDCG@10 fell from 0.265 to 0.13-0.17 (``benchmarks/distill.py``, trajectories of ``ours_r0.9*``).

``magnitude`` is Torch-Pruning's L2 criterion over the parameters a group removes; ``random`` is seeded noise.
All three return raw scores; ``schedule.select`` divides by each group's cost before comparing groups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from distillrec.errors import DistillrecError
from distillrec.models.lightweight import LightweightModel
from distillrec.pruning.groups import Family, families, field_offset
from distillrec.training.tasks import Batch

IMPORTANCES = ("fisher", "magnitude", "random")
PerSampleLoss = Callable[[LightweightModel, Batch], torch.Tensor]


class Scores(dict):
    """``{family name: [size] unit scores}`` plus ``fields``: ``{field label: whole-field score}``."""

    def __init__(self, units: dict[str, torch.Tensor], fields: dict[str, float]) -> None:
        super().__init__(units)
        self.fields = fields

    @classmethod
    def summed(cls, units: dict[str, torch.Tensor], fams: list[Family]) -> Scores:
        """Unit scores with each whole field scored as the sum of its dimensions' scores (every criterion here)."""
        return cls(units, {f.field: float(units[f.name].sum()) for f in fams if f.kind == "embedding_dim"})


def fisher_scores(model: LightweightModel, loss: PerSampleLoss, batches: Iterable[Batch]) -> Scores:
    """Exact empirical group Fisher over the batches (dropout off, parameters untouched)."""
    fams = families(model)
    units = {f.name: torch.zeros(f.size, dtype=torch.float64) for f in fams}
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            device = batch.users.device
            gates = {f.name: torch.ones(len(batch.users), f.size, device=device, requires_grad=True) for f in fams}
            model.gates = gates
            with torch.enable_grad():
                per_sample = loss(model, batch)
                grads = torch.autograd.grad(per_sample.sum(), list(gates.values()), allow_unused=True)
            for family, g in zip(fams, grads, strict=True):
                if g is None:
                    continue
                units[family.name] += g.detach().double().cpu().pow(2).sum(0)
    finally:
        model.gates = None
        model.train(was_training)
    return Scores.summed(units, fams)


@torch.no_grad()
def magnitude_scores(model: LightweightModel) -> Scores:
    """Sum of squares of the parameters each group removes (its L2 norm squared)."""
    fams = families(model)
    units = {}
    for family in fams:
        if family.kind == "embedding_dim":
            tower = model.user_tower if family.side == "user" else model.item_tower
            table = model.embedding.table(family.field).weight  # [V, d]
            offset = field_offset(model, family.field)
            first = tower.layers[0].weight[:, offset:offset + family.size]  # [H, d]
            units[family.name] = (table.pow(2).sum(0) + first.pow(2).sum(0)).double().cpu()
        elif family.kind == "mlp_neuron":
            tower = model.user_tower if family.side == "user" else model.item_tower
            layer, nxt = tower.layers[family.layer], tower.layers[family.layer + 1]
            units[family.name] = (layer.weight.pow(2).sum(1) + layer.bias.pow(2)
                                  + nxt.weight.pow(2).sum(0)).double().cpu()
        else:
            rows = [t.layers[-1] for t in (model.user_tower, model.item_tower)]
            units[family.name] = (sum(r.weight.pow(2).sum(1) + r.bias.pow(2) for r in rows)
                                  + model.rating_scale_weight.pow(2)).double().cpu()
    return Scores.summed(units, fams)


def random_scores(model: LightweightModel, seed: int) -> Scores:
    generator = torch.Generator().manual_seed(seed)
    fams = families(model)
    units = {f.name: torch.rand(f.size, generator=generator, dtype=torch.float64) for f in fams}
    return Scores.summed(units, fams)


def group_scores(kind: str, model: LightweightModel, loss: PerSampleLoss | None = None,
                 batches: Iterable[Batch] = (), seed: int = 0) -> Scores:
    """Dispatch on ``--importance``."""
    if kind == "fisher":
        if loss is None:
            raise ValueError("Fisher importance needs a per-sample loss")
        return fisher_scores(model, loss, batches)
    if kind == "magnitude":
        return magnitude_scores(model)
    if kind == "random":
        return random_scores(model, seed)
    raise DistillrecError(f"--importance must be one of {', '.join(IMPORTANCES)}, got {kind!r}")
