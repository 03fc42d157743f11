"""Flag helpers shared by the subcommands: dual spellings, dataset options, ``--set key=value`` parsing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import yaml

from distillrec.errors import DistillrecError
from distillrec.runs import DataSpec


def add_flag(parser: argparse.ArgumentParser, name: str, *aliases: str, **kwargs: Any) -> None:
    """Add ``--name_with_underscores`` and ``--name-with-dashes`` as one option (seed commands use both)."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}", f"--{name.replace('-', '_')}"}
    kwargs.setdefault("dest", name.replace("-", "_"))
    parser.add_argument(*sorted(spellings, key=lambda s: ("_" in s, s)), *aliases, **kwargs)


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """``--dataset`` plus what generic CSV/Parquet input and local GroupLens folders need."""
    group = parser.add_argument_group("data")
    add_flag(group, "dataset", default="synthetic",
             help="synthetic (built in), ml-100k, ml-1m, ml-latest-small, ml-20m, ml-25m, csv or parquet")
    add_flag(group, "data_dir", default=None, help="folder holding ml-100k/, ml-1m/, ... (else $DISTILLREC_DATA)")
    add_flag(group, "path", default=None, help="interactions file for --dataset csv|parquet")
    add_flag(group, "columns", default=None, help="role=column pairs, e.g. user=userId,item=movieId,rating=rating")
    add_flag(group, "rating_scale", default=None, help="declared rating scale LOW,HIGH, e.g. 1,5")
    add_flag(group, "sep", default=None, help="field separator of a CSV file (default: detected)")
    add_flag(group, "synthetic", default=None,
             help="synthetic generator settings, e.g. n_users=5000,n_items=3000,n_interactions=1000000")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "device", default="cpu", choices=["cpu", "cuda", "auto"], help="where tensors live")
    add_flag(parser, "threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    add_flag(parser, "no_progress", action="store_true", help="hide progress bars")


def apply_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def data_spec(args: argparse.Namespace) -> DataSpec:
    """Turn the dataset flags into a ``DataSpec`` with one-line errors for malformed values."""
    return DataSpec(name=args.dataset, data_dir=args.data_dir, path=args.path,
                    columns=parse_pairs(args.columns, "--columns") if args.columns else None,
                    rating_scale=parse_scale(args.rating_scale) if args.rating_scale else None, sep=args.sep,
                    synthetic=_synthetic_settings(args.synthetic) if args.synthetic else None)


def _synthetic_settings(text: str) -> dict[str, Any]:
    return {key: yaml.safe_load(value) for key, value in parse_pairs(text, "--synthetic").items()}


def parse_pairs(text: str, flag: str) -> dict[str, str]:
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise DistillrecError(f"{flag}: expected key=value pairs separated by commas, got {part!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def parse_scale(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise DistillrecError(f"--rating_scale: expected LOW,HIGH such as 1,5, got {text!r}") from None
    if low >= high:
        raise DistillrecError(f"--rating_scale: LOW must be below HIGH, got {text!r}")
    return low, high


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` entries, values parsed as YAML scalars (``0.1`` -> float, ``true`` -> bool)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DistillrecError(f"--set: expected key=value, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return overrides


def load_config_file(path: str | None) -> dict[str, Any]:
    """A YAML mapping from ``--config FILE``; a one-line error when it is not a mapping."""
    if not path:
        return {}
    file = Path(path)
    if not file.is_file():
        raise DistillrecError(f"{file}: config file not found")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise DistillrecError(f"{file}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise DistillrecError(f"{file}: expected a mapping of settings at the top level")
    return raw
