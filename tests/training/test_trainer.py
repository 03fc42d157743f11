"""Trainer behaviour: negatives avoid positives, early stopping restores the best state, logs per epoch."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from distillrec.data.interactions import InteractionMatrix
from distillrec.models.base import DataShape
from distillrec.registry import create_model
from distillrec.runs import RunSpec, train_run
from distillrec.training.tasks import sample_negatives
from distillrec.training.trainer import TrainConfig, Trainer


def test_negatives_never_hit_training_positives() -> None:
    users = torch.arange(50).repeat_interleave(8)
    items = torch.randint(0, 30, (400,), generator=torch.Generator().manual_seed(0))
    positives = InteractionMatrix.from_pairs(users, items, 50, 30)
    negatives = sample_negatives(torch.arange(50), positives, 16, torch.Generator().manual_seed(1))
    assert negatives.shape == (50, 16)
    flat_users = torch.arange(50).repeat_interleave(16)
    assert not positives.contains(flat_users, negatives.reshape(-1)).any()


def test_early_stopping_restores_best_epoch(tiny_synthetic) -> None:
    """A validator that peaks at epoch 1 must stop after `patience` and restore epoch 1's weights."""
    from distillrec.data.splits import make_split
    from distillrec.runs import data_shape, train_data
    from distillrec.training.tasks import RatingTask

    split = make_split(tiny_synthetic, "p-rank", 0)
    data = train_data(tiny_synthetic, split)
    model = create_model("svd", data_shape(tiny_synthetic))
    model.prepare(data)
    snapshots = []
    fake_rmse = iter([1.0, 0.5, 0.8, 0.9, 0.95, 0.99])

    def validate(m):
        snapshots.append(m.user_bias.weight.detach().clone())
        return {"rmse": next(fake_rmse)}

    result = Trainer(TrainConfig(epochs=6, patience=3), progress=False).fit(model, RatingTask(), data, validate, "rmse")
    assert result.best_epoch == 1 and result.epochs_run == 5
    assert torch.equal(model.user_bias.weight, snapshots[1])


def test_train_log_has_one_line_per_epoch(tiny_synthetic, tmp_path) -> None:
    run = train_run(RunSpec(model="svd", task="rating", train=TrainConfig(epochs=3, patience=5)),
                    out=tmp_path / "run", progress=False, dataset=tiny_synthetic)
    lines = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and all("valid_rmse" in r and "loss" in r for r in rows)
    assert run.metrics["cost"]["epochs"] == 3


def test_shape_round_trips_through_json() -> None:
    from distillrec.data.dataset import FieldKind, FieldSpec

    shape = DataShape(3, 4, (0.5, 5.0), (FieldSpec("gender", FieldKind.CATEGORICAL, ("<unk>", "F", "M")),), ())
    assert DataShape.from_dict(json.loads(json.dumps(shape.to_dict()))) == shape


def test_compile_option_keeps_eager_run_keys() -> None:
    """Adding the option must not orphan stored eager runs: its key enters the hash only when switched on."""
    from distillrec.store import resolved_spec, spec_hash

    eager = RunSpec(model="autoint", train=TrainConfig(epochs=3))
    assert "compile" not in resolved_spec(eager)["train"]
    assert spec_hash(eager) != spec_hash(RunSpec(model="autoint", train=TrainConfig(epochs=3, compile=True)))


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_matches_eager_closely(tiny_synthetic) -> None:
    """The compiled steps train the same model (test RMSE within 0.1% of eager), and the run keeps the eager module."""
    runs = [train_run(RunSpec(model="autoint", task="rating", train=TrainConfig(epochs=2, patience=5, compile=c)),
                      progress=False, dataset=tiny_synthetic, latency_requests=20) for c in (False, True)]
    eager, compiled = (r.metrics["test"]["rmse"] for r in runs)
    assert abs(eager - compiled) < 1e-3 * eager
    assert type(runs[1].model).__name__ == "AutoInt"  # the run holds the eager module, not the compiled wrapper
