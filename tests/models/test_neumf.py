"""NeuMF: the GMF/MLP fusion against a plain formula, chunked full ranking, tiny training."""

from __future__ import annotations

import pytest
import torch

import distillrec.models.neumf as neumf_module
from distillrec.models.base import DataShape
from distillrec.models.neumf import NeuMF, NeuMFConfig
from distillrec.runs import RunSpec, train_run
from distillrec.training.trainer import TrainConfig

N_USERS, N_ITEMS = 5, 7


def _tiny_model(**overrides) -> NeuMF:
    torch.manual_seed(0)
    config = NeuMFConfig(**{"gmf_dim": 4, "mlp_dim": 3, "hidden": (6, 5), "init_std": 0.5, **overrides})
    model = NeuMF(DataShape(N_USERS, N_ITEMS), config)
    with torch.no_grad():  # non-trivial biases and head bias, so the reference checks every term
        model.user_bias.weight.normal_()
        model.item_bias.weight.normal_()
        model.head.bias.normal_()
        model.global_mean.fill_(3.5)
    return model.eval()


def _reference(model: NeuMF, user: int, item: int) -> tuple[float, float]:
    """The paper's NeuMF written out for one pair: ``h^T [p^G ⊙ q^G, a_L]``, ``a_l = relu(W_l a_{l-1} + b_l)``."""
    p_g, q_g = model.gmf_user.weight[user], model.gmf_item.weight[item]
    a = torch.cat([model.mlp_user.weight[user], model.mlp_item.weight[item]])
    for layer in model.mlp:
        if isinstance(layer, torch.nn.Linear):
            a = torch.relu(layer.weight @ a + layer.bias)
    phi = torch.cat([p_g * q_g, a])
    rating_offset = float(model.head.weight[0] @ phi + model.head.bias[0])
    logit = float(model.head.weight[1] @ phi + model.head.bias[1])
    rating = float(model.global_mean) + float(model.user_bias.weight[user, 0] + model.item_bias.weight[item, 0])
    return rating + rating_offset, logit


def test_fusion_matches_plain_formula() -> None:
    model = _tiny_model()
    users = torch.tensor([0, 1, 4, 2])
    items = torch.tensor([6, 0, 3, 3])
    with torch.no_grad():
        out = model(users, items)
        for b, (user, item) in enumerate(zip(users.tolist(), items.tolist(), strict=True)):
            rating, logit = _reference(model, user, item)
            assert float(out.rating[b]) == pytest.approx(rating, abs=1e-5)
            assert float(out.logit[b]) == pytest.approx(logit, abs=1e-5)


@pytest.mark.parametrize("rank_by", ["logit", "rating"])
def test_score_equals_per_pair_forward(rank_by: str, monkeypatch) -> None:
    """The split first layer and item chunks give exactly the per-pair outputs, for both heads."""
    monkeypatch.setattr(neumf_module, "SCORE_CHUNK_PAIRS", 4)  # several chunks, the last one partial
    model = _tiny_model()
    model.rank_by = rank_by
    users = torch.tensor([3, 0, 1])
    with torch.no_grad():
        scores = model.score(users)
        pairs_u = users.repeat_interleave(N_ITEMS)
        pairs_i = torch.arange(N_ITEMS).repeat(len(users))
        out = model(pairs_u, pairs_i)
        expected = (out.rating if rank_by == "rating" else out.logit).view(len(users), N_ITEMS)
    assert scores.shape == (3, N_ITEMS)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_empty_tower_is_rejected() -> None:
    with pytest.raises(ValueError, match="MLP layer"):
        NeuMF(DataShape(N_USERS, N_ITEMS), NeuMFConfig(hidden=()))


def test_tiny_training_beats_popularity(tiny_synthetic) -> None:
    pop = train_run(RunSpec(model="pop", task="both"), progress=False, dataset=tiny_synthetic)
    train = TrainConfig(**{**NeuMF.train_defaults, "epochs": 30, "patience": 30})
    run = train_run(RunSpec(model="neumf", task="both", train=train), progress=False, dataset=tiny_synthetic)
    assert run.metrics["valid"]["ndcg@10"] > pop.metrics["valid"]["ndcg@10"], (run.metrics["valid"], pop.metrics)
    assert run.metrics["valid"]["rmse"] < pop.metrics["valid"]["rmse"] + 0.05


def test_score_of_no_users_is_empty() -> None:
    assert _tiny_model().score(torch.empty(0, dtype=torch.int64)).shape == (0, N_ITEMS)
