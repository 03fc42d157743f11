"""A tiny pipeline config (seconds per stage) and one finished pipeline run shared by the pipeline tests."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from distillrec.cli.main import main

TINY = {
    "data": {"synthetic": {"n_users": 120, "n_items": 200, "n_interactions": 4000}},
    "zoo": {"max_epochs": 2, "models": "pop"},
    "fisher": {"max_samples": 256},
    "distill": {"epochs": 2, "recover_epochs": 1, "pruning_steps": 2, "fisher_samples": 256, "latency_requests": 50},
}


def run_cli(*args: str) -> tuple[int, str]:
    """``distillrec ARGS`` in this process; returns the exit code and what it printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(list(args))
    return code, buffer.getvalue()


@pytest.fixture
def cli():
    """``cli("pipeline", ...)`` -> ``(exit code, stdout)``."""
    return run_cli


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "pipeline.yaml"
    path.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def one_thread():
    """One intra-op thread: bit-reproducible training, so runs can be compared number for number."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def finished(tmp_path_factory, tiny_config, one_thread) -> tuple[Path, str]:
    """An uninterrupted pipeline run on the tiny config: its output folder and what it printed."""
    out = tmp_path_factory.mktemp("pipeline") / "out"
    code, printed = run_cli("pipeline", "--config", str(tiny_config), "--out", str(out), "--no-progress")
    assert code == 0, printed
    return out, printed


@pytest.fixture
def finished_copy(finished, tmp_path) -> Path:
    """A private copy of the finished run, for tests that change it."""
    return Path(shutil.copytree(finished[0], tmp_path / "out"))
