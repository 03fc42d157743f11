"""Empirical Fisher of a teacher, per parameter and per group, accumulated over the training split.

``F_p = mean_n (d loss_n / d theta_p)^2`` with *per-sample* gradients, and for a group ``g`` with mask ``m_g``
``G_g = sum_n (d loss_n / d m_g)^2`` (see ``groups``). Estimators:

* ``exact`` (default): ``torch.func.vmap`` over samples of ``jacrev`` of the per-sample objective with respect to
  (a) the selected dense parameters and (b) a zero perturbation added to every probed activation. (b) is the
  per-sample gradient of each activation, which gives the group values (activation times gradient) and, for an
  embedding lookup, the gradient of the rows the sample read: the looked-up rows are per-sample inputs, so a
  table's Fisher is accumulated on the touched rows with ``index_add`` (repeated rows within a sample summed
  before squaring; multi-hot fields visit only their active values) and no ``[batch, vocabulary, dim]`` tensor is
  ever built. Any module whose outputs for
  different samples are independent works (everything but graph propagation, i.e. LightGCN).
* ``batch``: the cheap approximation, the gradient of the *batch sum* squared (``B`` times the squared batch-mean
  gradient, so that it estimates the same quantity when per-sample gradients are uncorrelated with zero mean).
  It mixes samples and depends on the batch size; every output says it was used.

Both reduce the same per-sample quantities: ``exact`` squares them per sample, ``batch`` sums them over the batch
first. ``FisherAccumulator`` keeps the sums keyed by parameter and group name.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap
from tqdm.auto import tqdm

from distillrec.errors import DistillrecError
from distillrec.fisher.groups import Family, Probe
from distillrec.fisher.losses import FusionStats, Objective
from distillrec.fisher.targets import Selection
from distillrec.fisher.tracing import Tracer
from distillrec.models.base import TrainData
from distillrec.training.tasks import sample_negatives

ESTIMATORS = ("exact", "batch")
ESTIMATOR_NOTES = {
    "exact": "exact: mean over samples of squared per-sample gradients",
    "batch": "APPROXIMATION (--estimator batch): squared gradient of each batch's summed loss, divided by the "
             "number of samples; not per-sample Fisher",
}
#: tensor elements one exact sub-batch may hold in per-sample gradients (bounds peak memory)
ELEMENT_BUDGET = 2 ** 25
#: models whose per-pair outputs depend on every sample (graph propagation): no per-sample objective
UNSUPPORTED = ("lightgcn",)


@dataclass
class SampleBatch:
    """Training triples ``[N]`` and their sampled negatives ``[N, J]``."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor
    negatives: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.users, self.items, self.ratings, self.negatives

    def part(self, start: int, stop: int) -> SampleBatch:
        return SampleBatch(*(t[start:stop] for t in self.tensors()))


@dataclass
class FisherResult:
    """One focus task's Fisher: parameter diagonals (means over samples) and group scores (sums over samples)."""

    task: str
    estimator: str
    n_samples: int
    diagonals: dict[str, torch.Tensor]
    groups: dict[str, torch.Tensor]


class FisherAccumulator:
    """Sums of squared per-sample gradients keyed by parameter and group name (``reset``, ``update``, ``compute``)."""

    def __init__(self, task: str = "", estimator: str = "exact") -> None:
        self.task = task
        self.estimator = estimator
        self.reset()

    def reset(self) -> None:
        self._diagonals: dict[str, torch.Tensor] = {}
        self._groups: dict[str, torch.Tensor] = {}
        self.n_samples = 0

    def update(self, diagonals: Mapping[str, torch.Tensor], groups: Mapping[str, torch.Tensor],
               n_samples: int) -> None:
        """Add one batch's sums of squares (float64, so long runs do not lose small terms)."""
        for store, new in ((self._diagonals, diagonals), (self._groups, groups)):
            for name, value in new.items():
                value = value.detach().to(torch.float64)
                store[name] = value if name not in store else store[name] + value
        self.n_samples += n_samples

    def compute(self) -> FisherResult:
        n = max(1, self.n_samples)
        return FisherResult(self.task, self.estimator, self.n_samples,
                            {k: v / n for k, v in self._diagonals.items()}, dict(self._groups))


class _Bound(nn.Module):
    """The teacher and its objective as one module, so ``functional_call`` can swap in parameters."""

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, *sample: torch.Tensor) -> torch.Tensor:
        return self.objective(self.model, *sample)


class FisherEstimator:
    """Per-batch sums of squared gradients of one teacher and objective, for the selected parameters and groups."""

    def __init__(self, model: nn.Module, objective: Objective, selection: Selection, estimator: str = "exact",
                 element_budget: int = ELEMENT_BUDGET) -> None:
        if estimator not in ESTIMATORS:
            raise DistillrecError(f"--estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
        coupled = sorted({getattr(m, "model_name", "") for m in model.modules()} & set(UNSUPPORTED))
        if coupled:
            raise DistillrecError(f"Fisher analysis is not available for {', '.join(coupled)}: graph propagation "
                                  "couples the samples, so per-sample losses are not separable")
        self.model, self.objective, self.selection = model, objective, selection
        self.estimator, self.element_budget = estimator, element_budget
        self.bound = _Bound(model, objective)
        self.probes: dict[str, Probe] = {}
        self.families: dict[str, Family] = {}
        self.row_tables: dict[str, tuple[str, int]] = {}  # table parameter -> (lookup probe, field index)
        self.dense: list[str] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.loop = False  # set when the model's forward cannot be vmapped
        self.unreached: list[str] = []

    def prepare(self, batch: SampleBatch) -> None:
        """Run one sample to learn the probes' activation shapes; drop probes that never fire."""
        tracer = Tracer(self.selection.probes.values())
        params = {n: self.model.get_parameter(n) for n in self.selection.params}
        with tracer, torch.enable_grad():
            tracer.start("shape")
            out = self.bound(*(t[0] for t in batch.tensors()))
            reached = (torch.autograd.grad(out.sum(), list(params.values()), allow_unused=True)
                       if params and out.requires_grad else [None] * len(params))
        # parameters the task's loss never reaches (an ensemble member feeding only the other task) have zero
        # Fisher: skip their per-sample gradients
        self.unreached = [n for n, g in zip(params, reached, strict=True) if g is None]
        self.shapes = dict(tracer.shapes)
        self.probes = {k: p for k, p in self.selection.probes.items() if k in self.shapes}
        self.families = {}
        for name, family in self.selection.families.items():
            parts = [(k, r) for k, r in family.parts if k in self.probes]
            if parts:
                self.families[name] = Family(family.kind, family.scope, family.labels, parts, family.tags,
                                             family.always)
        wanted = set(self.selection.params)
        self.row_tables = {table: (key, i) for key, p in self.probes.items() for i, table in enumerate(p.tables)
                           if table in wanted}
        self.dense = [n for n in self.selection.params if n not in self.row_tables and n not in self.unreached]

    def sums(self, batch: SampleBatch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(parameter sums of squares, group sums of squares)`` of the objective's task for one batch."""
        if not self.shapes:
            self.prepare(batch)
        if self.estimator == "batch":
            diag, groups = self._reduce(*self._batch_grads(batch), per_sample=False)
            return {**diag, **self._zero_unreached()}, groups
        chunk = max(1, self.element_budget // max(1, self._per_sample_elements()))
        diag: dict[str, torch.Tensor] = self._zero_unreached()
        groups: dict[str, torch.Tensor] = {}
        for start in range(0, len(batch), chunk):
            part = self._reduce(*self._exact_grads(batch.part(start, start + chunk)), per_sample=True)
            for store, new in zip((diag, groups), part, strict=True):
                for k, v in new.items():
                    store[k] = v if k not in store else store[k] + v
        return diag, groups

    def _zero_unreached(self) -> dict[str, torch.Tensor]:
        return {n: torch.zeros_like(self.model.get_parameter(n)) for n in self.unreached}

    def _per_sample_elements(self) -> int:
        params = dict(self.model.named_parameters())
        dense = sum(params[n].numel() for n in self.dense)
        activations = sum(math.prod(s) for s in self.shapes.values())
        return self.objective.n_outputs * (dense + 3 * activations)

    def _function(self, tracer: Tracer, scalar: bool = False) -> Callable:
        """The per-sample objective as a function of (dense parameters, perturbations, sample) for torch.func."""
        def run(dense: dict[str, torch.Tensor], delta: dict[str, torch.Tensor], *sample: torch.Tensor):
            tracer.start("delta", delta)
            out = functional_call(self.bound, {f"model.{k}": v for k, v in dense.items()}, sample)
            return out[0] if scalar else out, (dict(tracer.activations), dict(tracer.rows))

        return run

    def _zeros(self, leading: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
        reference = next(self.model.parameters())
        return {k: torch.zeros(*leading, *self.shapes[k], dtype=reference.dtype, device=reference.device)
                for k in self.probes}

    def _exact_grads(self, batch: SampleBatch):
        """Per-sample ``[N, K, ...]`` gradients of dense parameters and probe perturbations, and the records."""
        params = dict(self.model.named_parameters())
        dense = {n: params[n].detach() for n in self.dense}
        tracer = Tracer(self.probes.values())
        if self.objective.n_outputs == 1:  # one output: a gradient, without jacrev's extra vmap over outputs
            jac = _unsqueezed(grad(self._function(tracer, scalar=True), argnums=(0, 1), has_aux=True))
        else:
            jac = jacrev(self._function(tracer), argnums=(0, 1), has_aux=True)
        with tracer, torch.no_grad():  # no graph outside the transforms: they differentiate on their own
            (g_dense, g_delta), (acts, rows) = self._map(jac, (None, None, 0, 0, 0, 0),
                                                         (dense, self._zeros(), *batch.tensors()))
        return g_dense, g_delta, acts, rows

    def _map(self, fn: Any, in_dims: tuple, args: tuple) -> Any:
        """``vmap(fn)(*args)``; a model with ops ``vmap`` cannot batch falls back to a loop over samples."""
        if not self.loop:
            try:
                return vmap(fn, in_dims=in_dims)(*args)
            except RuntimeError as exc:
                if "vmap" not in str(exc):
                    raise
                warnings.warn(f"the teacher's forward does not support torch.func.vmap ({str(exc)[:80]}...); "
                              "falling back to one sample at a time (same result, slower)", stacklevel=3)
                self.loop = True
        n = next(len(a) for a, d in zip(args, in_dims, strict=True) if d == 0)
        outs = [fn(*(a if d is None else _index(a, j) for a, d in zip(args, in_dims, strict=True)))
                for j in range(n)]
        return _stack(outs)

    def _batch_grads(self, batch: SampleBatch):
        """Gradients of each output's batch sum: ``[1, K, ...]`` for parameters, per-sample for perturbations."""
        params = dict(self.model.named_parameters())
        dense = {n: params[n] for n in self.dense}
        delta = {k: v.requires_grad_() for k, v in self._zeros((len(batch),)).items()}
        tracer = Tracer(self.probes.values())
        with tracer, torch.enable_grad():
            out, (acts, rows) = self._map(self._function(tracer), (None, 0, 0, 0, 0, 0),
                                          (dense, delta, *batch.tensors()))
            inputs = [*dense.values(), *delta.values()]
            per_output = [torch.autograd.grad(out[:, k].sum(), inputs, retain_graph=True, allow_unused=True)
                          for k in range(out.shape[1])]
        grads = [torch.stack([g[i] if g[i] is not None else torch.zeros_like(x) for g in per_output], dim=0)
                 for i, x in enumerate(inputs)]
        g_dense = {n: g.unsqueeze(0) for n, g in zip(dense, grads, strict=False)}
        g_delta = {k: g.transpose(0, 1) for k, g in zip(delta, grads[len(dense):], strict=True)}
        return g_dense, g_delta, acts, rows

    def _reduce(self, g_dense, g_delta, acts, rows, per_sample: bool):
        """Square (per sample, or after summing the batch) and weight the task's outputs."""
        contributions = {k: _unit_sum(acts[k].unsqueeze(1) * g_delta[k], self.probes[k].unit_dims)
                         for k in self.probes}
        values = {name: f.values(contributions) for name, f in self.families.items()}
        if not per_sample:
            values = {name: v.sum(0, keepdim=True) for name, v in values.items()}
        w = self.objective.weights
        diag = {n: _weighted_squares(g, w, inplace=True) for n, g in g_dense.items()}
        for table, (key, field) in self.row_tables.items():
            diag[table] = _table_fisher(self.probes[key], field, rows[key][field], g_delta[key], w,
                                        self.model.get_parameter(table).shape[0], per_sample)
        return diag, {name: _weighted_squares(v, w) for name, v in values.items()}


def _unsqueezed(fn: Any) -> Any:
    """A ``grad`` result shaped like ``jacrev``'s for one output: ``[1, *shape]`` per input."""
    def run(*args: Any) -> Any:
        grads, aux = fn(*args)
        return tuple({k: v.unsqueeze(0) for k, v in g.items()} for g in grads), aux

    return run


def _index(tree: Any, j: int) -> Any:
    if isinstance(tree, dict):
        return {k: _index(v, j) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_index(v, j) for v in tree)
    return tree[j]


def _stack(items: list[Any]) -> Any:
    """Stack a list of equally structured (nested dict / tuple / list of tensors) results along a new dim 0."""
    first = items[0]
    if isinstance(first, dict):
        return {k: _stack([item[k] for item in items]) for k in first}
    if isinstance(first, list | tuple):
        return type(first)(_stack([item[i] for item in items]) for i in range(len(first)))
    return torch.stack(items)


def _unit_sum(c: torch.Tensor, unit_dims: int) -> torch.Tensor:
    """``[N, K, *rest, *units]`` -> ``[N, K, *units]``: a mask on a unit scales it at every row of the sample."""
    dims = tuple(range(2, c.dim() - unit_dims))
    return c.sum(dims) if dims else c


def _weighted_squares(g: torch.Tensor, weights: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``sum_{n, k} w_k g[n, k]^2`` for ``g [N, K, ...]``; ``inplace`` squares ``g`` itself (saves a copy)."""
    n, k = g.shape[:2]
    flat = g.reshape(n * k, -1)
    squares = flat.square_() if inplace and g.is_contiguous() else flat.square()
    w = weights.to(g.dtype).to(g.device).repeat(n)  # [N * K], k fastest like the rows of ``flat``
    return (w @ squares).view(g.shape[2:])


def _table_fisher(probe: Probe, field: int, rows: torch.Tensor, grads: torch.Tensor, weights: torch.Tensor,
                  n_rows: int, per_sample: bool) -> torch.Tensor:
    """Fisher ``[V, D]`` of one table from the gradients of its looked-up rows; only touched rows are visited.

    ``grads`` is ``[N, K, ..., D]`` (a field-embedding output ``[N, K, P, F, D]`` is cut to field ``field``); ``rows``
    holds the row ids ``[N, ...]`` or, for a mean-pooled multi-hot field, the pooling weights ``[N, P, V]`` (the
    touched rows are its non-zeros). Gradients reaching the same row from one sample (its user in every pair, a
    genre shared by the positive and a negative) are summed before squaring; ``per_sample=False`` sums the whole
    batch first (the batch estimator).
    """
    if probe.unit_dims == 2:
        grads = grads[..., field, :]
    n, k, dim = grads.shape[0], grads.shape[1], grads.shape[-1]
    grads = grads.reshape(n, k, -1, dim)  # [N, K, R, D]
    if rows.is_floating_point():
        sample, row, ids = rows.nonzero(as_tuple=True)
        entries = grads[sample, :, row] * rows[sample, row, ids].to(grads.dtype)[:, None, None]  # [M, K, D]
    else:
        ids = rows.reshape(-1)
        sample = torch.arange(n, device=ids.device).repeat_interleave(grads.shape[2])
        entries = grads.transpose(1, 2).reshape(-1, k, dim)
    keys = sample * n_rows + ids if per_sample else ids
    unique, inverse = torch.unique(keys, return_inverse=True)
    summed = grads.new_zeros(len(unique), k, dim).index_add_(0, inverse, entries)
    squares = (summed.pow(2) * weights.to(grads.dtype).to(grads.device).view(1, -1, 1)).sum(1)
    return grads.new_zeros(n_rows, dim).index_add_(0, unique % n_rows, squares)


def fisher_samples(data: TrainData, max_samples: int | None, seed: int) -> torch.Tensor:
    """Indices of the training triples used: all of them, or a seeded random subset of ``max_samples``."""
    n = len(data.users)
    if max_samples is None or max_samples >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:max_samples].sort().values


def compute_fisher(model: nn.Module, data: TrainData, tasks: tuple[str, ...], selection: Selection,
                   estimator: str = "exact", batch_size: int = 512, n_negatives: int = 1, seed: int = 0,
                   max_samples: int | None = None, stats: FusionStats | None = None,
                   progress: bool = True) -> dict[str, FisherResult]:
    """Fisher of every focus task over the training triples; all tasks see the same batches and negatives."""
    if batch_size < 1:
        raise DistillrecError(f"--batch_size must be positive, got {batch_size}")
    model.eval()
    engines = {t: FisherEstimator(model, Objective(t, n_negatives, stats), selection, estimator) for t in tasks}
    accumulators = {t: FisherAccumulator(t, estimator) for t in tasks}
    indices = fisher_samples(data, max_samples, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    n_neg = max(e.objective.n_negatives for e in engines.values())
    starts = range(0, len(indices), batch_size)
    for start in tqdm(starts, desc=f"fisher {','.join(tasks)} ({estimator})", disable=not progress, leave=False):
        idx = indices[start:start + batch_size].to(data.users.device)
        users = data.users[idx]
        negatives = (sample_negatives(users, data.matrix, n_neg, generator) if n_neg
                     else users.new_zeros(len(users), 0))
        batch = SampleBatch(users, data.items[idx], data.ratings[idx], negatives)
        for task, engine in engines.items():
            accumulators[task].update(*engine.sums(batch), len(batch))
    return {t: a.compute() for t, a in accumulators.items()}
