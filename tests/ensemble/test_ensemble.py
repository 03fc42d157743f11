"""Ensemble teacher: flag parsing, renormalisation, fusion, round trip, and no test leakage in learning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from distillrec.data.splits import make_split
from distillrec.ensemble.build import build_ensemble
from distillrec.ensemble.weighted import Ensemble, normalise
from distillrec.ensemble.weights import learn_rating_weights, parse_members, simplex_grid
from distillrec.errors import DistillrecError
from distillrec.runs import DataSpec, load_run

SMALL = DataSpec(name="synthetic", synthetic={"n_users": 120, "n_items": 180, "n_interactions": 4000})
MEMBERS = "svd,deepfm,pop"


def test_parse_seed_flags() -> None:
    members = parse_members("svd,deepfm,pop", "0.4,0.4,0.2", "ranking,rating,balance")
    assert [(m.model, m.task, m.weight) for m in members] == [
        ("svd", "ranking", 0.4), ("deepfm", "rating", 0.4), ("pop", "balance", 0.2)]
    assert all(m.weight is None for m in parse_members("svd,pop", "auto", "ranking,rating"))


@pytest.mark.parametrize("algorithms, weights, tasks, message", [
    ("svd,pop", "0.5", "ranking,rating", "--weights has 1 entries but --algorithms has 2"),
    ("svd,pop", "0.5,0.5", "ranking", "--tasks has 1 entries but --algorithms has 2"),
    ("svd,nosuch", "0.5,0.5", "ranking,rating", "unknown model 'nosuch'"),
    ("svd,pop", "0.5,x", "ranking,rating", "'x' is not a number"),
    ("svd,pop", "0.5,-1", "ranking,rating", "non-negative"),
    ("svd,pop", "0.5,0.5", "ranking,sorting", "unknown task 'sorting'"),
    ("svd,pop", "0.5,0.5", "ranking,ranking", "no member feeds the rating side"),
])
def test_bad_flags_are_one_line_errors(algorithms, weights, tasks, message) -> None:
    with pytest.raises(DistillrecError, match=message.replace("(", r"\(")) as info:
        parse_members(algorithms, weights, tasks)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    run = build_ensemble(parse_members(MEMBERS, "0.4,0.4,0.2", "ranking,rating,balance"), SMALL, root=root,
                         out=root / "ens", progress=False)
    return run, root


def test_weights_renormalise_within_each_task(fixed) -> None:
    ensemble = fixed[0].model
    assert ensemble.task_weights("ranking") == [(0, pytest.approx(0.4 / 0.6)), (2, pytest.approx(0.2 / 0.6))]
    assert ensemble.task_weights("rating") == [(1, pytest.approx(0.4 / 0.6)), (2, pytest.approx(0.2 / 0.6))]


def test_fused_outputs_are_the_weighted_member_outputs(fixed) -> None:
    ensemble = fixed[0].model
    users, items = torch.arange(10), torch.arange(10) * 3
    svd, deepfm, pop = ensemble.members
    fusion = ensemble.config.fusion
    expected = (0.4 * normalise(svd.score(users), fusion) + 0.2 * normalise(pop.score(users), fusion)) / 0.6
    assert torch.allclose(ensemble.score(users), expected, atol=1e-5)
    rating = (0.4 * deepfm.predict_rating(users, items) + 0.2 * pop.predict_rating(users, items)) / 0.6
    assert torch.allclose(ensemble.predict_rating(users, items), rating, atol=1e-5)


def test_save_load_round_trip_gives_identical_scores(fixed) -> None:
    run, root = fixed
    loaded = load_run(root / "ens")
    assert isinstance(loaded.model, Ensemble)
    users = torch.arange(run.model.n_users)
    assert torch.equal(run.model.score(users), loaded.model.score(users))
    assert torch.equal(run.model.predict_rating(users, users % 50), loaded.model.predict_rating(users, users % 50))
    assert loaded.metrics["cost"]["bytes"] > 0


def test_ensemble_is_differentiable(fixed) -> None:
    ensemble = fixed[0].model
    out = ensemble(torch.tensor([0, 1, 1]), torch.tensor([3, 4, 5]))
    (out.rating.sum() + out.logit.sum()).backward()
    grads = [p.grad for p in ensemble.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_rank_fusion_maps_ranks_to_unit_interval() -> None:
    scores = torch.tensor([[0.1, 5.0, -2.0, 3.0]])
    assert torch.allclose(normalise(scores, "rank"), torch.tensor([[0.5, 1.0, 0.25, 0.75]]))
    z = normalise(scores, "zscore")
    assert torch.allclose(z.mean(), torch.tensor(0.0), atol=1e-6) and torch.allclose(z.std(), torch.tensor(1.0))


def test_nnls_recovers_a_known_mixture() -> None:
    rng = np.random.default_rng(0)
    preds = rng.uniform(1, 5, size=(500, 3))
    target = 0.7 * preds[:, 0] + 0.3 * preds[:, 2]
    assert np.allclose(learn_rating_weights(preds, target), [0.7, 0.0, 0.3], atol=1e-6)
    assert len(simplex_grid(3, 0.1)) == 66 and all(abs(sum(w) - 1) < 1e-9 for w in simplex_grid(3, 0.1))


def test_learned_weights_never_see_the_test_split(tmp_path, monkeypatch) -> None:
    """Poison every test rating and move every test item: the learned weights must not change."""
    dataset = SMALL.load()
    split = make_split(dataset, "p-rank", 0)
    poisoned = dataclasses.replace(dataset, ratings=dataset.ratings.copy(), items=dataset.items.copy())
    poisoned.ratings[split.test] = 1.0
    poisoned.items[split.test] = (poisoned.items[split.test] + 7) % dataset.n_items
    members = parse_members(MEMBERS, "auto", "ranking,rating,balance")

    def learned(ds, store):  # separate stores: the members are retrained on each dataset
        monkeypatch.setattr(DataSpec, "load", lambda self: ds)
        run = build_ensemble(members, SMALL, root=tmp_path / store, progress=False)
        config = run.model.config
        return (config.weights, config.rating_weights, config.fusion), run.metrics["test"]["rmse"]

    clean, clean_rmse = learned(dataset, "clean")
    dirty, dirty_rmse = learned(poisoned, "poisoned")
    assert clean == dirty
    assert clean_rmse != dirty_rmse  # the poison did reach the test split


def test_rating_members_train_their_rating_head_only(fixed) -> None:
    run, root = fixed
    member_runs = [load_run(Path(folder)) for folder in run.model.config.member_runs]
    assert [r.spec.task for r in member_runs] == ["both", "rating", "both"]  # ranking, rating, balance members
    assert [r.metrics["heads"] for r in member_runs] == [["rating", "ranking"], ["rating"], ["rating", "ranking"]]
    assert all(Path(folder).parent == root for folder in run.model.config.member_runs)
