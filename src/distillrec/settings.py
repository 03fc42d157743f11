"""Route flat ``key=value`` settings (from ``--config`` / ``--set``) to a model config or the training config."""

from __future__ import annotations

import dataclasses
from typing import Any

from distillrec.coercion import coerce_fields
from distillrec.errors import DistillrecError
from distillrec.registry import model_class
from distillrec.training.trainer import TrainConfig


def split_settings(model: str, settings: dict[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
    """Route each setting to the model config or the training config; ``train.`` prefixes are allowed."""
    model_fields = {f.name for f in dataclasses.fields(model_class(model).config_class)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_cfg: dict[str, Any] = {}
    train_cfg: dict[str, Any] = dict(getattr(model_class(model), "train_defaults", {}))
    for key, value in settings.items():
        name = key.removeprefix("train.").removeprefix("model.")
        if key.startswith("train.") or (name in train_fields and name not in model_fields):
            if name not in train_fields:
                raise DistillrecError(f"unknown training setting {name!r}; known: {', '.join(sorted(train_fields))}")
            train_cfg[name] = value
        elif name in model_fields:
            model_cfg[name] = value
        else:
            raise DistillrecError(f"unknown setting {key!r} for {model}; model settings: "
                                  f"{', '.join(sorted(model_fields))}; "
                                  f"training settings: {', '.join(sorted(train_fields))}")
    return model_cfg, TrainConfig(**coerce_fields(TrainConfig, train_cfg, "training"))
