"""Explicit model registry: ``@register_model``, ``create_model``, ``list_models`` (the timm pattern).

A model class declares its config dataclass; ``create_model`` builds the config from defaults plus
overrides, so a checkpoint's JSON config is enough to rebuild the model without the code that trained it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from distillrec.coercion import coerce_fields
from distillrec.errors import DistillrecError

_REGISTRY: dict[str, type] = {}


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator adding a model under ``name``; the class must define ``config_class``."""

    def add(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"{cls.__name__} needs a dataclass `config_class`")
        cls.model_name = name
        _REGISTRY[name] = cls
        return cls

    return add


def list_models(include_composite: bool = False) -> list[str]:
    """Names of the registered models, sorted; composite models (the ensemble) only when asked for."""
    _import_builtin_models()
    return sorted(n for n, cls in _REGISTRY.items() if include_composite or not getattr(cls, "composite", False))


def model_class(name: str) -> type:
    """The registered class for ``name``, with a one-line error listing the known names."""
    _import_builtin_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DistillrecError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def build_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The model's config with ``overrides`` applied; unknown keys and ill-typed values are one-line errors."""
    config_cls = model_class(name).config_class
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise DistillrecError(f"{name}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    return config_cls(**coerce_fields(config_cls, overrides, name))


def create_model(name: str, shape: Any, overrides: Mapping[str, Any] | None = None) -> Any:
    """Instantiate model ``name`` for a data shape (``DataShape``) with config overrides."""
    return model_class(name)(shape, build_config(name, overrides))


def _import_builtin_models() -> None:
    """Importing the models package runs every ``@register_model`` decorator once."""
    import distillrec.ensemble
    import distillrec.models  # noqa: F401
