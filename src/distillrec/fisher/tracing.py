"""Instrumenting a model for the duration of a ``with`` block: record, perturb or mask the probed activations.

The probed modules' ``forward`` is wrapped (an instance attribute, removed on exit), so the model code stays
untouched and hooks other code may have registered keep working. Every wrapped call counts, so a module applied
several times in one forward (CIN's activation, once per layer) is probed per call. Modes:

* ``shape``: run as usual and note each probe's per-sample activation shape (to build zero perturbations);
* ``delta``: add ``delta[key]`` to the probe's output (through ``probe.inject``) and record its activation and,
  for lookups, the rows it read. With ``delta`` zero the forward is unchanged, and the gradient with respect to
  ``delta`` is the gradient with respect to the activation;
* ``mask``: scale the activation by ``mask[key]`` (broadcast over its non-unit dimensions), the brute-force
  definition of group Fisher used by the reference estimator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from distillrec.fisher.groups import Probe


class Tracer:
    """Wraps the forward of every probed module while active; ``start`` resets records before each call."""

    def __init__(self, probes: Iterable[Probe]) -> None:
        self.probes = {(id(p.module), p.call): p for p in probes}
        self.modules = {id(p.module): p.module for p in self.probes.values()}
        self.mode = "off"
        self.delta: dict[str, torch.Tensor] = {}
        self.mask: dict[str, torch.Tensor] = {}
        self.activations: dict[str, torch.Tensor] = {}
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._calls: dict[int, int] = {}
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Tracer:
        for key, module in self.modules.items():
            self._saved[key] = module.__dict__.get("forward")
            module.forward = self._wrap(module, module.forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for key, module in self.modules.items():
            del module.forward
            if self._saved[key] is not None:
                module.forward = self._saved[key]
        self._saved.clear()
        self.mode = "off"

    def start(self, mode: str, delta: dict[str, torch.Tensor] | None = None,
              mask: dict[str, torch.Tensor] | None = None) -> None:
        """Begin one traced evaluation: reset call counters and records."""
        self.mode = mode
        self.delta, self.mask = delta or {}, mask or {}
        self.activations, self.rows, self._calls = {}, {}, {}

    def _wrap(self, module: torch.nn.Module, forward: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            output = forward(*args, **kwargs)
            call = self._calls.get(id(module), 0)
            self._calls[id(module)] = call + 1
            probe = self.probes.get((id(module), call))
            if probe is None or self.mode == "off":
                return output
            return self._apply(probe, module, args, output)

        return wrapped

    def _apply(self, probe: Probe, module: torch.nn.Module, args: tuple, output: Any) -> Any:
        activation = probe.activation(module, args, output)
        if self.mode == "shape":
            self.shapes[probe.key] = tuple(activation.shape)
            return output
        if probe.rows is not None:
            self.rows[probe.key] = probe.rows(module, args)
        if self.mode == "delta":
            self.activations[probe.key] = activation.detach()
            delta = self.delta.get(probe.key)
            return output if delta is None else probe.inject(output, delta)
        if self.mode == "mask":
            mask = self.mask.get(probe.key)
            return output if mask is None else probe.inject(output, activation * (mask - 1))
        raise ValueError(f"unknown tracer mode {self.mode!r}")
