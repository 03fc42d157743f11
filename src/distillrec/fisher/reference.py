"""Brute-force Fisher: one backward per sample and output, straight from the definitions.

Parameters are differentiated as whole tensors (embedding tables included, as dense ``[V, D]`` gradients) and
every group gets a real mask variable ``m = 1`` multiplying its units, whose gradient is read directly. It shares
no per-sample machinery with ``empirical`` (no ``vmap``, no perturbations, no row scattering), so the exact
estimator is tested against it. Slow: for tests and small checks only.
"""

from __future__ import annotations

import torch
from torch import nn

from distillrec.fisher.empirical import FisherAccumulator, FisherEstimator, FisherResult, SampleBatch
from distillrec.fisher.losses import Objective
from distillrec.fisher.targets import Selection
from distillrec.fisher.tracing import Tracer


def reference_fisher(model: nn.Module, objective: Objective, selection: Selection,
                     batch: SampleBatch) -> FisherResult:
    """Per-sample loop over ``batch``: squared gradients of the selected parameters and group masks."""
    model.eval()
    engine = FisherEstimator(model, objective, selection)
    engine.prepare(batch)  # only to learn which probes fire and their unit shapes
    params = {n: model.get_parameter(n) for n in selection.params}
    reference = next(model.parameters())
    masks = {key: torch.ones(engine.shapes[key][len(engine.shapes[key]) - probe.unit_dims:], dtype=reference.dtype,
                             device=reference.device, requires_grad=True)
             for key, probe in engine.probes.items()}
    accumulator = FisherAccumulator(objective.task, "reference")
    tracer = Tracer(engine.probes.values())
    with tracer:
        for n in range(len(batch)):
            tracer.start("mask", mask=masks)
            out = objective(model, *(t[n] for t in batch.tensors()))
            diag: dict[str, torch.Tensor] = {}
            groups: dict[str, torch.Tensor] = {}
            for k, weight in enumerate(objective.weights.tolist()):
                grads = torch.autograd.grad(out[k], [*params.values(), *masks.values()], retain_graph=True,
                                            allow_unused=True)
                for name, g in zip(params, grads, strict=False):
                    value = weight * (g.pow(2) if g is not None else torch.zeros_like(params[name]))
                    diag[name] = value if name not in diag else diag[name] + value
                mask_grads = {key: (g if g is not None else torch.zeros_like(masks[key]))[None, None]
                              for key, g in zip(masks, grads[len(params):], strict=True)}
                for name, family in engine.families.items():
                    value = weight * family.values(mask_grads)[0, 0].pow(2)
                    groups[name] = value if name not in groups else groups[name] + value
            accumulator.update(diag, groups, 1)
    return accumulator.compute()
