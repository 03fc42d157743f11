"""Atomic artifact writing: every file appears whole or not at all.

Each writer writes a temporary file in the target's folder and ``os.replace``s it into place, so a crash
or Ctrl-C never leaves a truncated ``metrics.json`` or checkpoint behind. Checkpoints are safetensors
(no pickle is ever loaded).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    """Pretty JSON, written atomically."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """safetensors file of contiguous CPU copies (shared storage is not allowed by the format)."""
    plain = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, str(tmp)))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
