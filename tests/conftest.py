"""Shared fixtures: where the real MovieLens data lives, small synthetic data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$DISTILLREC_DATA`` or ``../shared/data`` next to the repository (where CI puts it)."""
    return Path(os.environ.get("DISTILLREC_DATA") or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def ml100k_root() -> Path:
    """The folder holding ``ml-100k/``; skips the test when the real data is absent."""
    root = shared_data_root()
    if not (root / "ml-100k" / "u.data").is_file():
        pytest.skip(f"MovieLens-100K not found at {root / 'ml-100k'}; set DISTILLREC_DATA to the folder holding it")
    return root


@pytest.fixture(scope="session")
def ml100k(ml100k_root: Path):
    from distillrec.data.loading import load_dataset

    return load_dataset("ml-100k", data_dir=ml100k_root)


@pytest.fixture(scope="session")
def tiny_synthetic():
    """A small synthetic set (fast to train on) shared by model and CLI tests."""
    from distillrec.data.synthetic import SyntheticConfig, generate_synthetic

    return generate_synthetic(SyntheticConfig(n_users=120, n_items=200, n_interactions=4000, seed=0))
