"""Check and convert a setting's value to its declared type, with one-line errors naming the setting.

Settings arrive as YAML scalars from ``--set key=value`` and ``--config FILE.yaml``, or as JSON from a saved run;
the dataclasses that hold them (model configs, ``TrainConfig``, the pipeline's sections) declare the types.
Comma strings become tuples (``hidden=128,64``), ints widen to floats, and ``1e-3`` (a string to YAML 1.1,
which needs a dot) is read as a float; anything else of the wrong type is an error before training starts.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from distillrec.errors import DistillrecError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def coerce_fields(cls: type, values: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """``values`` (keys already checked against ``cls``'s fields) converted to the field types of dataclass ``cls``."""
    hints = get_type_hints(cls)
    return {key: coerce(value, hints[key], f"{owner}: {key}") for key, value in values.items()}


def is_mapping(hint: Any) -> bool:
    if hint is dict or get_origin(hint) is dict:
        return True
    return is_union(hint) and any(is_mapping(arg) for arg in get_args(hint))


def mapping_values(hint: Any) -> Any:
    """The value type of the mapping in ``hint`` (``dict[str, int] | None`` -> ``int``)."""
    if is_union(hint):
        return next(mapping_values(arg) for arg in get_args(hint) if is_mapping(arg))
    return get_args(hint)[1] if get_args(hint) else Any


def is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint``; comma strings become tuples (``ranking,rating``); one-line error otherwise."""
    if hint is Any:
        return value
    if is_union(hint):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(value, option, key)
            except DistillrecError:
                continue
        raise DistillrecError(f"{key}: expected {_describe(hint)}, got {value!r}")
    if get_origin(hint) is tuple:
        return _coerce_tuple(value, hint, key)
    if is_mapping(hint):
        if not isinstance(value, Mapping):
            raise DistillrecError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): coerce(v, mapping_values(hint), f"{key}.{k}") for k, v in value.items()}
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    if hint is str and isinstance(value, str):
        return value
    raise DistillrecError(f"{key}: expected {_describe(hint)}, got {value!r}")


def _coerce_tuple(value: Any, hint: Any, key: str) -> tuple:
    if isinstance(value, str):
        value = [yaml.safe_load(part) for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise DistillrecError(f"{key}: expected {_describe(hint)}, got {value!r}")
    args = get_args(hint)
    kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(kinds) != len(value):
        raise DistillrecError(f"{key}: expected {len(kinds)} values, got {len(value)}")
    return tuple(coerce(v, kind, key) for v, kind in zip(value, kinds, strict=True))


def _describe(hint: Any) -> str:
    if is_union(hint):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if get_origin(hint) is tuple:
        return f"a comma list of {_describe(get_args(hint)[0])}"
    if is_mapping(hint):
        return "a mapping"
    return {type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))
