"""The HTTP API through FastAPI's TestClient: original ids, seen items, cold start, limits, JSON errors."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (pip install -e '.[serve]') is not installed")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # starlette >= 1.x nudges towards httpx2; httpx is what the serve extra installs
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from distillrec.evaluation.ranking import topk_excluding
from distillrec.runs import Run, load_run
from distillrec.serving.app import create_app
from distillrec.serving.recommender import ServingRecommender


@pytest.fixture(scope="module", params=["lightweight_model", "svd"])
def served(request, serving_runs) -> tuple[Run, TestClient]:
    """The student (precomputed two-tower path) and SVD (``model.score`` per request)."""
    run = load_run(serving_runs[request.param])
    return run, TestClient(create_app(ServingRecommender(run)))


@pytest.fixture(scope="module")
def student(serving_runs) -> tuple[Run, TestClient]:
    run = load_run(serving_runs["lightweight_model"])
    return run, TestClient(create_app(ServingRecommender(run)))


def _expected(run: Run, index: int, k: int, exclude_seen: bool = True) -> tuple[list[str], list[float]]:
    """The model's own top-k for user ``index`` (seen items masked), as original ids, with its scores."""
    users = torch.tensor([index])
    with torch.inference_mode():
        scores = run.model.score(users).float()
    rows, cols = run.seen.rows(users) if exclude_seen else (torch.empty(0, dtype=torch.long),) * 2
    top = topk_excluding(scores, rows, cols, k)[0]
    return [run.item_ids[i] for i in top.tolist()], scores[0, top].tolist()


def test_known_user_gets_the_models_top_k_without_seen_items(served) -> None:
    run, client = served
    for index in (0, 3, 57):
        body = client.get("/recommend", params={"user": run.user_ids[index], "k": 10}).json()
        ids, scores = _expected(run, index, 10)
        assert body["user"] == run.user_ids[index] and body["cold_start"] is False and body["k"] == 10
        assert [item["item"] for item in body["items"]] == ids
        assert [item["rank"] for item in body["items"]] == list(range(1, 11))
        assert [item["score"] for item in body["items"]] == pytest.approx(scores, rel=1e-5, abs=1e-6)
        seen = {run.item_ids[i] for i in run.seen.indices[run.seen.indptr[index]:run.seen.indptr[index + 1]]}
        assert seen and not seen & set(ids)
        titles = dict(zip(run.item_ids, run.titles, strict=True))
        assert [item["title"] for item in body["items"]] == [titles[i] for i in ids]


def test_exclude_seen_false_ranks_every_item(served) -> None:
    run, client = served
    body = client.get("/recommend", params={"user": run.user_ids[3], "k": 20, "exclude_seen": "false"}).json()
    assert [item["item"] for item in body["items"]] == _expected(run, 3, 20, exclude_seen=False)[0]


def test_unknown_user_gets_popular_items_flagged(served) -> None:
    run, client = served
    body = client.get("/recommend", params={"user": "no-such-user", "k": 5}).json()
    counts = torch.bincount(run.seen.indices, minlength=len(run.item_ids)).tolist()
    by_popularity = sorted(range(len(counts)), key=lambda i: (-counts[i], i))[:5]  # ties: lower index first
    assert body["cold_start"] is True
    assert [item["item"] for item in body["items"]] == [run.item_ids[i] for i in by_popularity]
    assert [item["score"] for item in body["items"]] == [float(counts[i]) for i in by_popularity]


def test_batch_equals_single_requests_and_accepts_numeric_ids(student) -> None:
    run, client = student
    users = [run.user_ids[1], "stranger", int(run.user_ids[9])]
    body = client.post("/recommend", json={"users": users, "k": 4}).json()
    assert body["model"] == "lightweight_model"
    singles = [client.get("/recommend", params={"user": str(u), "k": 4}).json() for u in users]
    assert body["results"] == singles
    assert [r["cold_start"] for r in body["results"]] == [False, True, False]


def test_predict_matches_the_model_and_unknown_ids_are_404(served) -> None:
    run, client = served
    pairs = [(run.user_ids[u], run.item_ids[i]) for u, i in ((0, 0), (5, 17), (119, 199))]
    body = client.post("/predict", json={"pairs": [{"user": u, "item": i} for u, i in pairs]}).json()
    with torch.inference_mode():
        want = run.model.predict_rating(torch.tensor([0, 5, 119]), torch.tensor([0, 17, 199])).tolist()
    assert [p["rating"] for p in body["predictions"]] == pytest.approx(want, rel=1e-6)
    assert [(p["user"], p["item"]) for p in body["predictions"]] == pairs
    assert body["predictions"][1]["title"] == run.titles[17]
    response = client.post("/predict", json={"pairs": [{"user": run.user_ids[0], "item": "no-such-item"}]})
    assert response.status_code == 404 and "unknown item(s) 'no-such-item'" in response.json()["detail"]
    response = client.post("/predict", json={"pairs": [{"user": "nobody", "item": run.item_ids[0]}]})
    assert response.status_code == 404 and "unknown user(s) 'nobody'" in response.json()["detail"]


@pytest.mark.parametrize("k", ["0", "-3", "201", "1001", "ten"])
def test_k_out_of_range_is_a_422_json_error(student, k) -> None:
    run, client = student  # 200 items: k is bounded by the catalogue as well as by 1000
    response = client.get("/recommend", params={"user": run.user_ids[0], "k": k})
    assert response.status_code == 422 and response.headers["content-type"] == "application/json"
    assert response.json()["detail"]
    response = client.post("/recommend", json={"users": [run.user_ids[0]], "k": k})
    assert response.status_code == 422 and response.json()["detail"]


@pytest.mark.parametrize("body", [b"{not json", b'{"users": ["1"', b"[]", b'{"users": []}', b'{"users": [1.5]}',
                                  b'{"users": ["1"], "typo": true}', b'{"users": [""]}'])
def test_malformed_bodies_are_4xx_json_errors(student, body) -> None:
    _, client = student
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)


def test_oversized_batches_and_bodies_are_refused(student) -> None:
    run, client = student
    response = client.post("/recommend", json={"users": [run.user_ids[0]] * 257})
    assert response.status_code == 422 and response.json()["detail"] == "a request takes 1 to 256 users, got 257"
    pairs = [{"user": run.user_ids[0], "item": run.item_ids[0]}] * 10_001
    response = client.post("/predict", json={"pairs": pairs})
    assert response.status_code == 422 and "10000 pairs" in response.json()["detail"]
    big = b'{"users": ["' + b"1" * (1 << 20) + b'"]}'
    response = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json() == {"detail": "request body over 1048576 bytes"}
    chunks = (b"x" * 65536 for _ in range(20))  # no Content-Length: read up to the limit, then refused
    response = client.post("/recommend", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_health_model_and_docs(served) -> None:
    run, client = served
    assert client.get("/health").json() == {"status": "ok", "model": run.spec.model}
    info = client.get("/model").json()
    assert info["name"] == run.spec.model and info["version"] == run.metrics["version"]
    assert info["params"] == run.metrics["cost"]["params"] and info["n_items"] == len(run.item_ids)
    assert info["metrics"]["test"]["ndcg@10"] == pytest.approx(run.metrics["test"]["ndcg@10"])
    assert info["serving"]["precomputed"] is (run.spec.model == "lightweight_model")
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/predict", "/health", "/model"} <= set(paths) and {"get", "post"} <= set(paths["/recommend"])
    assert client.get("/docs").status_code == 200


def test_an_internal_failure_is_a_json_500(serving_runs, monkeypatch) -> None:
    run = load_run(serving_runs["svd"])

    def broken(users: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    monkeypatch.setattr(run.model, "score", broken)
    client = TestClient(create_app(ServingRecommender(run)), raise_server_exceptions=False)
    response = client.get("/recommend", params={"user": run.user_ids[0]})
    assert response.status_code == 500 and response.json() == {"detail": "internal error: RuntimeError"}
