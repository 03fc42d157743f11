"""Tiny trained runs shared by the serving tests: the student, SVD and AutoInt (a feature model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from distillrec.runs import RunSpec, train_run
from distillrec.training.trainer import TrainConfig

MODELS = ("lightweight_model", "svd", "autoint")


def _one_thread() -> int:
    """Tiny tensors: one thread avoids OpenMP spin contention on a shared machine; results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


@pytest.fixture(scope="session")
def serving_runs(tmp_path_factory, tiny_synthetic) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serving")
    threads = _one_thread()
    try:
        for name in MODELS:
            train_run(RunSpec(model=name, train=TrainConfig(epochs=2)), out=root / name, progress=False,
                      dataset=tiny_synthetic, latency_requests=20)
    finally:
        torch.set_num_threads(threads)
    return {name: root / name for name in MODELS}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = _one_thread()
    yield
    torch.set_num_threads(threads)
