"""Distillation losses against hand-computed values, the teacher's signals, and a tiny prune-and-distil run."""

from __future__ import annotations

import math

import pytest
import torch

from distillrec.data.splits import make_split
from distillrec.distillation.losses import bpr_loss, feature_loss, rrd_loss
from distillrec.distillation.prune_distill import DistillConfig, distill
from distillrec.distillation.task import DistillationTask, LossConfig
from distillrec.distillation.teacher import compute_signals, standardise
from distillrec.errors import DistillrecError
from distillrec.runs import DataSpec, RunSpec, load_run, train_data, train_run
from distillrec.training.tasks import Batch
from distillrec.training.trainer import TrainConfig

TINY = {"n_users": 120, "n_items": 200, "n_interactions": 4000}


def test_rrd_loss_by_hand() -> None:
    top, rest = torch.tensor([[2.0, 1.0]]), torch.tensor([[0.0, -1.0]])
    unint = math.exp(0) + math.exp(-1)
    expected = -(math.log(math.exp(2) / (math.exp(2) + math.exp(1) + unint))
                 + math.log(math.exp(1) / (math.exp(1) + unint))) / 2
    assert float(rrd_loss(top, rest)) == pytest.approx(expected, rel=1e-6)
    # the teacher's order is rewarded: swapping the two top items costs more
    assert float(rrd_loss(top.flip(1), rest)) > float(rrd_loss(top, rest))


def test_bpr_and_feature_losses_by_hand() -> None:
    assert float(bpr_loss(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]))) == pytest.approx(
        (math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 2, rel=1e-6)
    assert feature_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]])).tolist() == [2.5]


def test_standardise_keeps_informative_columns() -> None:
    x = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    out = standardise(x)
    assert out.shape == (3, 2)  # the constant column carries nothing to match
    assert torch.allclose(out.mean(0), torch.zeros(2), atol=1e-6) and torch.allclose(out.std(0), torch.ones(2))


@pytest.fixture(scope="module")
def teacher(tiny_synthetic, tmp_path_factory):
    spec = RunSpec(model="autoint", data=DataSpec("synthetic", synthetic=TINY), train=TrainConfig(epochs=3))
    folder = tmp_path_factory.mktemp("teacher")
    train_run(spec, out=folder, progress=False, dataset=tiny_synthetic, latency_requests=20)
    return load_run(folder)


def test_teacher_signals(teacher, tiny_synthetic) -> None:
    split = make_split(tiny_synthetic, "p-rank", seed=0)
    data = train_data(tiny_synthetic, split)
    signals = compute_signals(teacher.model, data, n_top=7)
    assert signals.top_items.shape == (tiny_synthetic.n_users, 7)
    assert not data.matrix.contains(torch.arange(tiny_synthetic.n_users).repeat_interleave(7),
                                    signals.top_items.reshape(-1)).any(), "training items are never targets"
    users = torch.arange(5)
    scores = teacher.model.score(users)
    picked = scores.gather(1, signals.top_items[:5])
    assert (picked[:, :-1] >= picked[:, 1:]).all(), "top items come in the teacher's order"
    assert torch.allclose(signals.train_ratings[:9], teacher.model.predict_rating(data.users[:9], data.items[:9]))
    assert signals.user_repr.shape[0] == tiny_synthetic.n_users and signals.item_repr.shape[0] == data.n_items


def test_task_without_teacher_is_ground_truth_only(teacher, tiny_synthetic) -> None:
    from distillrec.registry import create_model
    from distillrec.runs import data_shape

    data = train_data(tiny_synthetic, make_split(tiny_synthetic, "p-rank", seed=0))
    student = create_model("lightweight_model", data_shape(tiny_synthetic))
    student.prepare(data)
    batch = Batch(data.users[:64], data.items[:64], data.ratings[:64], torch.arange(64))
    plain = DistillationTask(LossConfig(truth_rating_weight=0.25), data.matrix, None, student)
    plain.generator.manual_seed(5)
    total, parts = plain.per_sample(student, batch)
    assert set(parts) == {"bpr", "mse"}
    assert torch.allclose(total, 0.75 * parts["bpr"] + 0.25 * parts["mse"])
    signals = compute_signals(teacher.model, data, n_top=5)
    kd = DistillationTask(LossConfig(), data.matrix, signals, student, torch.Generator().manual_seed(3))
    per_sample, parts = kd.per_sample(student, batch)
    assert set(parts) == {"bpr", "rrd", "mse", "rating_kd", "feature"} and per_sample.shape == (64,)
    kd.generator.manual_seed(3)
    total, _ = kd.loss(student, batch)
    assert total.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)
    with pytest.raises(DistillrecError, match="distill_tasks"):
        LossConfig(tasks=("ranking", "style")).validate()


def test_prune_and_distil_end_to_end(teacher, tmp_path) -> None:
    config = DistillConfig(epochs=2, recover_epochs=1, pruning_steps=2, fisher_samples=256, batch_size=256,
                           n_top=5, latency_requests=20)
    run = distill(teacher, config, tmp_path / "student", progress=False)
    summary = run.metrics["distillation"]
    assert summary["final_prunable"] <= summary["start_prunable"] / 2
    assert summary["max_masked_difference"] <= 1e-5
    assert run.metrics["teacher"]["test"]["ndcg@10"] == teacher.metrics["test"]["ndcg@10"]
    rows = (tmp_path / "student" / "trajectory.jsonl").read_text().splitlines()
    assert len(rows) == 3 and (tmp_path / "student" / "trajectory.png").stat().st_size > 0
    loaded = load_run(tmp_path / "student")  # rebuilt from its own config, no pruning code involved
    users = torch.arange(20)
    assert torch.allclose(loaded.model.score(users), run.model.eval().score(users))
    assert loaded.metrics["test"]["ndcg@10"] == run.metrics["test"]["ndcg@10"]


def test_given_teacher_cost_is_used_instead_of_measured(teacher, tmp_path) -> None:
    """A benchmark measures the teacher once and passes it in; the speed-up is computed from that figure."""
    config = DistillConfig(epochs=1, recover_epochs=1, pruning_steps=1, fisher_samples=128, batch_size=256,
                           n_top=5, latency_requests=20)
    given = {"latency_p50_ms": 123.0, "latency_p99_ms": 456.0, "users_per_second": 7.0}
    run = distill(teacher, config, tmp_path / "student", progress=False, teacher_cost=given)
    assert run.metrics["teacher"]["cost_same_run"] == given
    expected = round(456.0 / run.metrics["cost"]["latency_p99_ms"], 4)
    assert run.metrics["distillation"]["latency_p99_speedup"] == expected
