"""Contract every registered model must honour (parametrised over ``list_models()``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillrec.data.splits import make_split
from distillrec.registry import create_model, list_models
from distillrec.runs import RunSpec, data_shape, load_run, train_data, train_run
from distillrec.training.trainer import TrainConfig

FAST_TRAIN = TrainConfig(epochs=2, batch_size=512, patience=2)


def _fitted(name: str, dataset, seed: int = 0):
    split = make_split(dataset, "p-rank", seed=0)
    torch.manual_seed(seed)
    model = create_model(name, data_shape(dataset))
    model.prepare(train_data(dataset, split), seed=seed)
    return model.eval()


@pytest.mark.parametrize("name", list_models())
def test_output_shapes(name: str, tiny_synthetic) -> None:
    model = _fitted(name, tiny_synthetic)
    users = torch.tensor([0, 5, 7])
    scores = model.score(users)
    assert scores.shape == (3, tiny_synthetic.n_items)
    assert torch.isfinite(scores).all()
    rating = model.predict_rating(users, torch.tensor([1, 2, 3]))
    assert rating.shape == (3,)
    low, high = tiny_synthetic.rating_scale
    assert ((rating >= low) & (rating <= high)).all()


@pytest.mark.parametrize("name", list_models())
def test_deterministic_under_seed(name: str, tiny_synthetic) -> None:
    # Two threads, where advanced indexing's backward once summed repeated rows in a varying order (LightGCN,
    # the lightweight student); every model must reproduce bit for bit under a seed with threads too.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_deterministic(name, tiny_synthetic)
    finally:
        torch.set_num_threads(threads)


def _check_deterministic(name: str, tiny_synthetic) -> None:
    a = train_run(RunSpec(model=name, train=FAST_TRAIN, seed=3), progress=False, dataset=tiny_synthetic,
                  latency_requests=20)
    b = train_run(RunSpec(model=name, train=FAST_TRAIN, seed=3), progress=False, dataset=tiny_synthetic,
                  latency_requests=20)
    users = torch.arange(20)
    assert torch.equal(a.model.score(users), b.model.score(users))
    assert a.metrics["test"]["ndcg@10"] == b.metrics["test"]["ndcg@10"]


@pytest.mark.parametrize("name", list_models())
def test_save_load_round_trip(name: str, tiny_synthetic, tmp_path) -> None:
    run = train_run(RunSpec(model=name, train=FAST_TRAIN), out=tmp_path / "run", progress=False,
                    dataset=tiny_synthetic, latency_requests=20)
    loaded = load_run(tmp_path / "run")
    users = torch.arange(tiny_synthetic.n_users)
    items = torch.arange(tiny_synthetic.n_users) % tiny_synthetic.n_items
    assert torch.equal(run.model.score(users), loaded.model.score(users))
    assert torch.equal(run.model.predict_rating(users, items), loaded.model.predict_rating(users, items))
    assert loaded.metrics["cost"]["bytes"] == (tmp_path / "run" / "model.safetensors").stat().st_size


@pytest.mark.parametrize("name", list_models())
def test_cold_users_and_items_get_predictions(name: str, tiny_synthetic) -> None:
    """A user or item with no training rows still gets finite scores, a full list and a rating."""
    split = make_split(tiny_synthetic, "p-rank", seed=0)
    keep = split.train[(tiny_synthetic.users[split.train] != 0) & (tiny_synthetic.items[split.train] != 1)]
    data = train_data(tiny_synthetic, split)
    data.users, data.items = torch.from_numpy(tiny_synthetic.users[keep]), torch.from_numpy(tiny_synthetic.items[keep])
    data.ratings = torch.from_numpy(tiny_synthetic.ratings[keep]).float()
    from distillrec.data.interactions import InteractionMatrix

    data.matrix = InteractionMatrix.from_pairs(data.users, data.items, data.n_users, data.n_items)
    model = create_model(name, data_shape(tiny_synthetic))
    model.prepare(data)
    scores = model.score(torch.tensor([0]))
    assert torch.isfinite(scores).all() and scores.std() > 0, "cold user must get a real ranking"
    rating = model.predict_rating(torch.tensor([0, 2]), torch.tensor([1, 1]))
    assert torch.isfinite(rating).all()


@pytest.mark.parametrize("name", [n for n in list_models()])
def test_one_gradient_step_lowers_loss(name: str, tiny_synthetic) -> None:
    from distillrec.training.tasks import Batch, build_task

    model = _fitted(name, tiny_synthetic)
    if not model.gradient_heads:
        pytest.skip(f"{name} is closed-form only")
    split = make_split(tiny_synthetic, "p-rank", seed=0)
    data = train_data(tiny_synthetic, split)
    batch = Batch(data.users[:256], data.items[:256], data.ratings[:256])
    task = build_task(model.gradient_heads, data.matrix, generator=torch.Generator().manual_seed(0))
    model.eval()  # no dropout: the same batch must give the same loss before and after the step
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    state = torch.Generator().get_state()
    task_gen = getattr(task, "generator", None) or getattr(getattr(task, "ranking", None), "generator", None)
    if task_gen is not None:
        state = task_gen.get_state()
    before, _ = task.loss(model, batch)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    if task_gen is not None:
        task_gen.set_state(state)  # same negatives for the second evaluation
    after, _ = task.loss(model, batch)
    assert float(after.detach()) < float(before.detach())
    assert np.isfinite(float(after.detach()))
