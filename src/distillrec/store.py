"""The runs store: one folder per trained configuration, reused by every command.

Runs live under ``$DISTILLREC_RUNS`` (default ``runs/`` in the working directory), in folders named by model,
dataset, protocol, seed and a hash of the fully resolved spec (model settings with defaults filled in,
training settings, task, and the data: the contents of its source files, or a generator's settings). A
finished folder with a matching spec is loaded instead of retrained; a new run is trained into a temporary
folder and renamed into place, so an interrupted training never leaves a half-written run that would later be
mistaken for a finished one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from distillrec.data.dataset import Dataset
from distillrec.data.fingerprint import data_sha256
from distillrec.registry import build_config
from distillrec.runs import DataSpec, Run, RunSpec, load_run, train_run


def runs_root() -> Path:
    return Path(os.environ.get("DISTILLREC_RUNS") or "runs")


def resolved_spec(spec: RunSpec) -> dict:
    """The spec with model defaults filled in, so that omitted and explicit defaults hash alike.

    A dataset read from files is identified by their contents, not by where they were found.
    """
    raw = spec.to_dict()
    contents = data_sha256(spec.data.name, spec.data.data_dir, spec.data.path)
    if contents is not None:
        for where in ("data_dir", "path"):
            raw["data"].pop(where)
        raw["data"]["sha256"] = contents
    raw["model_config"] = dataclasses.asdict(build_config(spec.model, spec.model_config))
    raw.pop("device", None)  # where it ran does not change what was trained
    if not raw["train"].get("compile"):
        raw["train"].pop("compile", None)  # eager runs keep the keys they had before the option existed
    return raw


def spec_hash(spec: RunSpec) -> str:
    text = json.dumps(resolved_spec(spec), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_folder(spec: RunSpec, root: Path | None = None) -> Path:
    fold = f"-fold{spec.fold}" if spec.fold is not None else ""
    name = f"{spec.model}-{spec.data.name}-{spec.protocol}{fold}-seed{spec.seed}-{spec_hash(spec)}"
    return (root or runs_root()) / name


def ensemble_folder(data: DataSpec, protocol: str, seed: int, fold: int | None = None,
                    root: Path | None = None) -> Path:
    """Where ``distillrec ensemble`` writes, and ``fisher``/``distill`` look for, the default ensemble."""
    suffix = f"_fold{fold}" if fold is not None else ""
    return (root or runs_root()) / f"ensemble_{data.name}_{protocol}_seed{seed}{suffix}"


def get_or_train(spec: RunSpec, root: Path | None = None, dataset: Dataset | None = None,
                 progress: bool = True, device: str | None = None) -> tuple[Run, bool]:
    """Load the stored run of ``spec`` or train it; returns ``(run, reused)``."""
    folder = run_folder(spec, root)
    if (folder / "metrics.json").is_file():
        return load_run(folder, device=device or spec.device), True
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        run = train_run(spec, out=tmp, progress=progress, dataset=dataset)
        if folder.exists():  # a concurrent or stale partial folder: replace it
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run.folder = folder
    return run, False
