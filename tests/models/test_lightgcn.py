"""LightGCN: the graph and the propagation against plain dense formulas, the caches, checkpoints, accuracy."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import distillrec.models.lightgcn  # noqa: F401  (registers "lightgcn")
from distillrec.data.interactions import InteractionMatrix
from distillrec.models.base import DataShape, TrainData
from distillrec.models.lightgcn import LightGCN, LightGCNConfig, normalized_adjacency
from distillrec.runs import RunSpec, load_run, train_run
from distillrec.training.tasks import Batch, build_task
from distillrec.training.trainer import TrainConfig

#: a tiny bipartite graph: 4 users (user 3 has no interactions), 5 items (item 4 has none)
PAIRS = [(0, 0), (0, 1), (1, 1), (1, 2), (1, 3), (2, 0), (2, 3)]
N_USERS, N_ITEMS = 4, 5


def _tiny_data() -> TrainData:
    users = torch.tensor([u for u, _ in PAIRS])
    items = torch.tensor([i for _, i in PAIRS])
    ratings = torch.tensor([5.0, 3.0, 4.0, 1.0, 2.0, 4.0, 3.0])
    return TrainData(users, items, ratings, InteractionMatrix.from_pairs(users, items, N_USERS, N_ITEMS),
                     N_USERS, N_ITEMS)


def _tiny_model(**overrides) -> LightGCN:
    torch.manual_seed(0)
    model = LightGCN(DataShape(N_USERS, N_ITEMS), LightGCNConfig(embed_dim=8, **overrides))
    model.prepare(_tiny_data())
    return model


def _dense_adjacency() -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` built entry by entry; isolated nodes keep zero rows."""
    n = N_USERS + N_ITEMS
    a = torch.zeros(n, n, dtype=torch.float64)
    for u, i in PAIRS:
        a[u, N_USERS + i] = a[N_USERS + i, u] = 1.0
    degree = a.sum(1)
    out = torch.zeros_like(a)
    for r in range(n):
        for c in range(n):
            if a[r, c]:
                out[r, c] = 1.0 / (degree[r].sqrt() * degree[c].sqrt())
    return out


def _dense_propagation(model: LightGCN) -> torch.Tensor:
    """``mean_{k=0..K} A_hat^k E0`` with dense matrices, differentiable w.r.t. the ego embeddings.

    ``E0`` holds the ranking embeddings in its first ``embed_dim`` columns, the rating head's in the rest.
    """
    a_hat = _dense_adjacency().float()
    users = torch.cat([model.user_embedding.weight, model.user_rating_embedding.weight], dim=1)
    items = torch.cat([model.item_embedding.weight, model.item_rating_embedding.weight], dim=1)
    ego = torch.cat([users, items])
    layers = [ego]
    for _ in range(model.config.n_layers):
        layers.append(a_hat @ layers[-1])
    return torch.stack(layers).mean(0)


def _train_config(**overrides) -> TrainConfig:
    return TrainConfig(**{**LightGCN.train_defaults, **overrides})


def test_normalized_adjacency_equals_dense_reference() -> None:
    edges = torch.tensor(PAIRS, dtype=torch.int32).T
    adj = normalized_adjacency(edges, N_USERS, N_ITEMS)
    assert adj.layout == torch.sparse_csr
    dense = adj.to_dense().double()
    assert torch.allclose(dense, _dense_adjacency(), atol=1e-7)
    assert torch.equal(dense, dense.T)
    # the model builds the same graph from the training split (and keeps only its edges)
    model = _tiny_model()
    assert model.graph_edges.dtype == torch.int32 and model.graph_edges.shape == (2, len(PAIRS))
    assert torch.allclose(model.adjacency().to_dense().double(), _dense_adjacency(), atol=1e-7)


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_propagation_and_gradients_equal_dense_formula(n_layers: int) -> None:
    model = _tiny_model(n_layers=n_layers)
    users, items = model.propagate()
    expected = _dense_propagation(model)
    assert torch.allclose(torch.cat([users, items]), expected, atol=1e-6)
    # the symmetric sparse product's backward is the dense one's
    weights = torch.randn(expected.shape)
    (torch.cat([users, items]) * weights).sum().backward()
    sparse_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(sparse_grads) == 4  # ranking and rating ego embeddings of users and items
    model.zero_grad()
    (expected * weights).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6)
               for a, p in zip(sparse_grads, [p for p in model.parameters() if p.grad is not None], strict=True))
    # scores are dot products of the final embeddings; isolated nodes keep (1 / (K + 1)) * their ego embedding
    model.eval()
    with torch.inference_mode():
        scores = model.score(torch.arange(N_USERS))
    final = expected.detach()[:, :8]
    assert torch.allclose(scores, final[:N_USERS] @ final[N_USERS:].T, atol=1e-6)
    assert torch.allclose(final[3], model.user_embedding.weight[3].detach() / (n_layers + 1))


def test_forward_outputs_and_rating_head() -> None:
    model = _tiny_model()
    users, items = torch.tensor([0, 1, 3]), torch.tensor([1, 4, 0])
    out = model(users, items)
    final = _dense_propagation(model).detach()
    e_u, e_i = final[users], final[N_USERS + items]
    assert torch.allclose(out.logit, (e_u[:, :8] * e_i[:, :8]).sum(-1), atol=1e-6)
    assert model.global_mean.item() == pytest.approx(22 / 7)
    with torch.no_grad():
        model.user_bias.weight.normal_()
        model.item_bias.weight.normal_()
    out = model(users, items)
    rating = (model.global_mean + model.user_bias.weight[users, 0] + model.item_bias.weight[items, 0]
              + (e_u[:, 8:] * e_i[:, 8:]).sum(-1))
    assert torch.allclose(out.rating, rating, atol=1e-6)
    model.rank_by = "rating"
    model.eval()
    with torch.inference_mode():
        scores = model.score(users)
        assert torch.allclose(scores[torch.arange(3), items], out.rating.detach(), atol=1e-6)
        assert torch.allclose(model.predict_rating(users, items), model.clip_rating(out.rating.detach()))


def test_one_propagation_per_training_batch(monkeypatch) -> None:
    """Positives, negatives and the rating head of one loss share a single propagation, as in the paper."""
    model = _tiny_model()
    calls = []
    original = model.propagate
    monkeypatch.setattr(model, "propagate", lambda: calls.append(1) or original())
    data = _tiny_data()
    task = build_task(("rating", "ranking"), data.matrix, generator=torch.Generator().manual_seed(0))
    batch = Batch(data.users, data.items, data.ratings)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss, _ = task.loss(model, batch)
    assert len(calls) == 1
    loss.backward()
    # the backward pass freed the shared graph: a new loss before the step must propagate again, not fail
    loss, _ = task.loss(model, batch)
    assert len(calls) == 2
    loss.backward()
    optimizer.step()
    task.loss(model, batch)
    assert len(calls) == 3


def test_l2_terms_follow_the_trained_heads() -> None:
    """Both heads' L2 until a backward pass shows which heads are trained; then only theirs (an untrained head's
    parameters then get exactly zero gradient instead of decaying into denormals that slow every product)."""
    model = _tiny_model(reg=0.1, rating_reg=0.2)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([1, 3, 0])
    ranking = 0.1 * 0.5 * ((model.user_embedding(users).pow(2).sum(-1) + model.item_embedding(items).pow(2).sum(-1))
                           .mean() + model.item_embedding.weight.pow(2).sum(-1).mean())
    rating = 0.2 * (model.user_rating_embedding(users).pow(2).sum(-1)
                    + model.item_rating_embedding(items).pow(2).sum(-1)).mean()  # biases are still zero
    assert torch.allclose(model.regularization(users, items), ranking + rating)
    data = _tiny_data()
    task = build_task(("ranking",), data.matrix, generator=torch.Generator().manual_seed(0))
    model.train()
    task.loss(model, Batch(data.users, data.items, data.ratings))[0].backward()
    assert torch.allclose(model.regularization(users, items), ranking)
    model.zero_grad()
    task.loss(model, Batch(data.users, data.items, data.ratings))[0].backward()
    assert not model.user_rating_embedding.weight.grad.any() and model.user_embedding.weight.grad.any()


def test_eval_cache_reused_and_invalidated_after_a_training_step() -> None:
    model = _tiny_model()
    users = torch.arange(N_USERS)
    model.eval()
    with torch.inference_mode():
        before = model.score(users)
        cached = model.final_embeddings()[0]
        model.score(users)
        assert model.final_embeddings()[0] is cached  # no second propagation
    data = _tiny_data()
    task = build_task(("ranking",), data.matrix, generator=torch.Generator().manual_seed(0))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss, _ = task.loss(model, Batch(data.users, data.items, data.ratings))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.inference_mode():
        after = model.score(users)
    final = _dense_propagation(model).detach()[:, :8]
    assert not torch.allclose(before, after)
    assert torch.allclose(after, final[:N_USERS] @ final[N_USERS:].T, atol=1e-6)
    # an in-place parameter change without a train()/eval() round trip also invalidates the cache
    with torch.no_grad():
        model.user_embedding.weight.mul_(2.0)
        model.item_embedding.weight.mul_(2.0)  # propagation is linear: every score scales by 4
        assert torch.allclose(model.score(users), 4 * after, atol=1e-6)


def test_deepcopy_drops_caches() -> None:
    import copy

    model = _tiny_model()
    model.train()
    model(torch.tensor([0]), torch.tensor([1]))  # leaves a cache holding an autograd graph
    clone = copy.deepcopy(model)
    assert clone._cache == {}
    clone.eval()
    model.eval()
    with torch.inference_mode():
        assert torch.equal(clone.score(torch.arange(N_USERS)), model.score(torch.arange(N_USERS)))


def test_save_load_round_trip_gives_identical_scores(tiny_synthetic, tmp_path) -> None:
    spec = RunSpec(model="lightgcn", task="both", train=_train_config(epochs=3, batch_size=512))
    run = train_run(spec, out=tmp_path / "run", progress=False, dataset=tiny_synthetic)
    loaded = load_run(tmp_path / "run")
    assert torch.equal(loaded.model.graph_edges, run.model.graph_edges)
    assert run.model.graph_edges.shape[1] > 0
    users = torch.arange(tiny_synthetic.n_users)
    items = users % tiny_synthetic.n_items
    for rank_by in ("logit", "rating"):
        run.model.rank_by = loaded.model.rank_by = rank_by
        assert torch.equal(run.model.score(users), loaded.model.score(users))
    assert torch.equal(run.model.predict_rating(users, items), loaded.model.predict_rating(users, items))


def test_tiny_training_beats_popularity(tiny_synthetic) -> None:
    pop = train_run(RunSpec(model="pop", task="ranking"), progress=False, dataset=tiny_synthetic)
    run = train_run(RunSpec(model="lightgcn", task="ranking", train=_train_config(epochs=40, batch_size=256)),
                    progress=False, dataset=tiny_synthetic)
    ndcg = run.metrics["valid"]["ndcg@10"]
    assert ndcg > pop.metrics["valid"]["ndcg@10"], (ndcg, pop.metrics["valid"])


def test_config_defaults_are_the_papers_architecture() -> None:
    config = LightGCNConfig()
    assert (config.embed_dim, config.n_layers) == (64, 3)
    assert dataclasses.is_dataclass(config) and LightGCN.model_name == "lightgcn"
    assert LightGCN.train_defaults["batch_size"] == 2048
