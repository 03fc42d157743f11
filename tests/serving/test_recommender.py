"""The in-process recommender: load-time precomputation equals the model, limits are enforced."""

from __future__ import annotations

import copy

import pytest
import torch

from distillrec.runs import load_run
from distillrec.serving.precompute import precomputed_scorer
from distillrec.serving.recommender import Limits, NotFoundError, RequestError, ServingRecommender


@pytest.mark.parametrize("rank_by", ["logit", "rating"])
def test_precomputed_student_scores_equal_the_models(serving_runs, rank_by) -> None:
    model = copy.deepcopy(load_run(serving_runs["lightweight_model"]).model)
    model.rank_by = rank_by
    score = precomputed_scorer(model)
    users = torch.arange(model.n_users)
    with torch.inference_mode():
        torch.testing.assert_close(score(users), model.score(users), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(score(users[[4, 4, 0]]), model.score(users[[4, 4, 0]]), rtol=1e-5, atol=1e-5)


def test_models_without_factors_score_per_request(serving_runs) -> None:
    run = load_run(serving_runs["autoint"])
    assert precomputed_scorer(run.model) is None
    recommender = ServingRecommender(run)
    assert not recommender.precomputed
    with torch.inference_mode():
        best = run.model.score(torch.tensor([2]))[0]
    items = recommender.recommend([run.user_ids[2]], k=3, exclude_seen=False)[0].items
    assert [i.item for i in items] == [run.item_ids[i] for i in best.topk(3).indices.tolist()]


def test_limits_and_unknown_ids(serving_runs) -> None:
    run = load_run(serving_runs["svd"])
    recommender = ServingRecommender(run, Limits(max_k=5, max_users=2, max_pairs=3))
    assert len(recommender.recommend([run.user_ids[0]], k=5)[0].items) == 5
    with pytest.raises(RequestError, match="k must be between 1 and 5"):
        recommender.recommend([run.user_ids[0]], k=6)
    with pytest.raises(RequestError, match="1 to 2 users, got 3"):
        recommender.recommend(run.user_ids[:3])
    with pytest.raises(RequestError, match="1 to 3 pairs, got 0"):
        recommender.predict([])
    with pytest.raises(NotFoundError, match=r"unknown item\(s\) 'a', 'b'"):
        recommender.predict([(run.user_ids[0], "b"), (run.user_ids[1], "a")])
    with pytest.raises(RequestError, match="ids must be 1 to 256 characters"):
        recommender.recommend(["x" * 257], k=1)
