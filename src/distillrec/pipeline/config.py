"""The pipeline's typed configuration: one frozen dataclass per stage, with the seed's defaults.

Settings come, lowest first, from the dataclass defaults, the ``limits`` preset, ``--config FILE.yaml`` and the
command line (``--dataset``, ``--zoo``, ``--set key=value``). Keys are dotted paths into the dataclasses
(``distill.pruning_ratio``, ``distill.loss.tasks``, ``data.synthetic.n_users``); YAML files may nest them or spell
them dotted. Unknown keys and ill-typed values are one-line errors before anything is trained.

The Fisher and distillation sections are the library's own ``FisherConfig`` and ``DistillConfig`` (what the
``fisher`` and ``distill`` commands build from their flags), so the pipeline cannot drift from the separate
commands; their ``seed`` follows the pipeline's top-level ``seed``, as the commands' ``--seed`` does.

``limits`` caps training work. ``full`` leaves every setting at the separate commands' defaults, so the pipeline
reproduces their numbers exactly; ``quick`` applies :data:`QUICK_LIMITS` (below any explicit setting); ``auto``
(the default) is ``quick`` on the built-in synthetic dataset and ``full`` on everything else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from distillrec.coercion import coerce, is_mapping, mapping_values
from distillrec.data.loading import KNOWN_DATASETS
from distillrec.distillation.prune_distill import DistillConfig
from distillrec.ensemble.weighted import FUSIONS
from distillrec.ensemble.weights import DEFAULT_ALGORITHMS, DEFAULT_TASKS, DEFAULT_WEIGHTS, MemberSpec, parse_members
from distillrec.errors import DistillrecError
from distillrec.fisher.pipeline import FisherConfig
from distillrec.registry import list_models
from distillrec.runs import DataSpec
from distillrec.zoo import parse_models

STAGES = ("zoo", "ensemble", "fisher", "distill", "report")
LIMITS = ("auto", "quick", "full")

#: the ``quick`` caps. On the built-in synthetic set (ml-100k-sized) one epoch of xDeepFM takes ~15 s and of the
#: distillation ~12 s on one busy core, and uncapped they run tens of epochs; these caps bring the whole pipeline
#: to about five minutes on 2 cores. They only bound loops (epochs, Fisher samples): models, losses, weights,
#: the pruning schedule and the evaluation protocol (1,000 timed requests included) stay as they are. SVD is not
#: capped: its rating head costs ~0.3 s an epoch and stopping it at 2 epochs would cost ~0.15 RMSE. (Measured on
#: that set, seed 0: a third epoch adds 0.0005 (xDeepFM) and 0.0024 (AutoInt) valid NDCG@10, a fourth dense
#: distillation epoch 0.0008, and the pruning steps' recovery epochs keep training the student.)
QUICK_LIMITS: dict[str, Any] = {
    "zoo.max_epochs": dict.fromkeys(("neumf", "deepfm", "widedeep", "dcnv2", "xdeepfm", "autoint", "lightgcn"), 2),
    "fisher.max_samples": 4096,
    "distill.epochs": 3,
    "distill.recover_epochs": 1,
    "distill.fisher_samples": 2048,
}


@dataclass(frozen=True)
class ZooSettings:
    """Which models the zoo trains besides the ensemble's members, and an optional cap on their epochs."""

    #: ``members`` (the ensemble's algorithms), ``all`` (every zoo model) or a comma list added to the members
    models: str = "members"
    #: upper bound on ``TrainConfig.epochs``: one number for every model, or per model (``{xdeepfm: 3}``; models
    #: not listed keep their default); None keeps every model's default (the zoo's own spec)
    max_epochs: int | dict[str, int] | None = None

    def epoch_cap(self, model: str) -> int | None:
        return self.max_epochs.get(model) if isinstance(self.max_epochs, dict) else self.max_epochs


@dataclass(frozen=True)
class EnsembleSettings:
    """The seed's ensemble flags: ``--algorithms``, ``--weights`` (numbers or ``auto``), ``--tasks``, ``--fusion``."""

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    weights: tuple[float, ...] | str = DEFAULT_WEIGHTS
    tasks: tuple[str, ...] = DEFAULT_TASKS
    fusion: str = "auto"

    def members(self) -> list[MemberSpec]:
        """Parsed exactly as ``distillrec ensemble`` parses its flags (same errors, same weights)."""
        weights = self.weights if isinstance(self.weights, str) else ",".join(map(str, self.weights))
        return parse_members(",".join(self.algorithms), weights, ",".join(self.tasks))


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one ``distillrec pipeline`` run decides; written to ``OUT/pipeline_config.json``."""

    data: DataSpec = field(default_factory=DataSpec)
    protocol: str = "p-rank"
    fold: int | None = None
    seed: int = 0
    device: str = "cpu"
    limits: str = "auto"
    zoo: ZooSettings = field(default_factory=ZooSettings)
    ensemble: EnsembleSettings = field(default_factory=EnsembleSettings)
    fisher: FisherConfig = field(default_factory=FisherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def zoo_models(self) -> list[str]:
        """The ensemble's members first, then the extra models ``zoo.models`` asks for (each once)."""
        extra = [] if self.zoo.models.strip() == "members" else parse_models(self.zoo.models)
        return list(dict.fromkeys([*self.ensemble.algorithms, *extra]))

    def validate(self) -> None:
        if self.data.name not in KNOWN_DATASETS:
            raise DistillrecError(f"data.name: unknown dataset {self.data.name!r}; known: {', '.join(KNOWN_DATASETS)}")
        _choice("protocol", self.protocol, ("p-rank", "p-rating"))
        _choice("device", self.device, ("cpu", "cuda", "auto"))
        _choice("limits", self.limits, LIMITS)
        _choice("ensemble.fusion", self.ensemble.fusion, ("auto", *FUSIONS))
        if isinstance(self.ensemble.weights, str) and self.ensemble.weights != "auto":
            raise DistillrecError(f"ensemble.weights: numbers or 'auto', got {self.ensemble.weights!r}")
        caps = self.zoo.max_epochs if isinstance(self.zoo.max_epochs, dict) else {"": self.zoo.max_epochs}
        for model, cap in caps.items():
            if model and model not in list_models():
                raise DistillrecError(f"zoo.max_epochs: unknown model {model!r}; known: {', '.join(list_models())}")
            if cap is not None and cap < 1:
                raise DistillrecError(f"zoo.max_epochs must be at least 1, got {cap}")
        for section, check in (("ensemble", self.ensemble.members), ("zoo.models", self.zoo_models),
                               ("fisher", self.fisher.validate), ("distill", self.distill.validate)):
            try:
                check()
            except DistillrecError as exc:  # the library's messages name the flags of the separate commands
                raise DistillrecError(f"{section}: {exc}") from None


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise DistillrecError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")


def resolve_config(file_settings: Mapping[str, Any] | None = None,
                   overrides: Iterable[tuple[str, Any]] = ()) -> PipelineConfig:
    """Defaults, then the ``limits`` preset, then the file's settings, then ``overrides`` (dotted keys)."""
    user = [*flatten(file_settings or {}), *overrides]
    probe = build_config(user)
    limits = probe.limits
    if limits == "auto":
        limits = "quick" if probe.data.name == "synthetic" else "full"
    preset = list(QUICK_LIMITS.items()) if limits == "quick" else []
    config = build_config([*preset, *user, ("limits", limits)])
    config = dataclasses.replace(config, fisher=dataclasses.replace(config.fisher, seed=config.seed),
                                 distill=dataclasses.replace(config.distill, seed=config.seed))
    config.validate()
    return config


def flatten(settings: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A (possibly nested) mapping as ``(dotted key, value)`` pairs, in file order."""
    if not isinstance(settings, Mapping):
        raise DistillrecError("pipeline settings: expected a mapping of keys to values")
    return [(str(key), value) for key, value in settings.items()]


def build_config(pairs: Iterable[tuple[str, Any]]) -> PipelineConfig:
    """Apply ``(dotted key, value)`` pairs to the defaults, checking every key and value against the types."""
    tree = _tree(PipelineConfig())
    for key, value in pairs:
        _assign(tree, PipelineConfig, key.split("."), value, key)
    return _build(PipelineConfig, tree)


def _tree(obj: Any) -> dict[str, Any]:
    return {f.name: _tree(getattr(obj, f.name)) if dataclasses.is_dataclass(getattr(obj, f.name))
            else getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _build(cls: type, tree: dict[str, Any]) -> Any:
    hints = get_type_hints(cls)
    return cls(**{name: _build(_dataclass_of(hints[name]), value) if _dataclass_of(hints[name]) else value
                  for name, value in tree.items()})


def _assign(tree: dict[str, Any], cls: type, parts: list[str], value: Any, key: str) -> None:
    hints = get_type_hints(cls)
    name = parts[0]
    if name not in hints:
        where = ".".join(key.split(".")[:-len(parts)]) or "the top level"
        raise DistillrecError(f"unknown pipeline setting {key!r}; {where} has: {', '.join(hints)}")
    if name == "seed" and cls in (FisherConfig, DistillConfig):
        raise DistillrecError(f"{key}: set the top-level 'seed' (every stage uses the pipeline's seed)")
    hint = hints[name]
    section = _dataclass_of(hint)
    if section is not None:
        if len(parts) > 1:
            _assign(tree[name], section, parts[1:], value, key)
            return
        if not isinstance(value, Mapping):
            raise DistillrecError(f"{key}: expected a mapping of {section.__name__} settings, got {value!r}")
        for sub, sub_value in value.items():
            _assign(tree[name], section, str(sub).split("."), sub_value, f"{key}.{sub}")
    elif len(parts) > 1 and is_mapping(hint):  # one entry of a mapping (model settings, synthetic sizes)
        current = tree[name] if isinstance(tree[name], dict) else {}
        tree[name] = {**current, ".".join(parts[1:]): coerce(value, mapping_values(hint), key)}
    elif len(parts) > 1:
        raise DistillrecError(f"unknown pipeline setting {key!r}: {'.'.join(key.split('.')[:-len(parts) + 1])} "
                              "is a single value")
    else:
        tree[name] = coerce(value, hint, key)


def _dataclass_of(hint: Any) -> type | None:
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None
