"""Wide & Deep: wide + deep against a plain formula, cross-product terms, tiny training."""

from __future__ import annotations

import pytest
import torch

import distillrec.models.widedeep as widedeep_module
from distillrec.data.splits import make_split
from distillrec.models.widedeep import WideDeep, WideDeepConfig
from distillrec.runs import RunSpec, data_shape, train_data, train_run
from distillrec.training.trainer import TrainConfig


def _model(dataset, **overrides) -> WideDeep:
    torch.manual_seed(0)
    config = WideDeepConfig(**{"embed_dim": 4, "hidden": (8, 6), "dropout": 0.0, **overrides})
    model = WideDeep(data_shape(dataset), config)
    model.prepare(train_data(dataset, make_split(dataset, "p-rank", seed=0)))
    with torch.no_grad():  # O(1) embeddings and non-zero wide weights, so the checks see every term
        for table in [*model.embedding.tables.values(), *model.linear.tables.values(), *model.crosses.values()]:
            table.weight.normal_(std=0.5)
        model.head.bias.normal_()
    return model.eval()


def _active_values(dataset, side: str, name: str, entity: int) -> list[int]:
    """The codes of one entity's field, read from the raw encoded features (one code, or all active genres)."""
    from distillrec.data.features import encode_side_features

    table = dataset.user_features if side == "user" else dataset.item_features
    values = encode_side_features(table)[1][name][entity]
    if values.dim() == 1:  # a multi-hot row
        return values.nonzero().flatten().tolist()
    return [int(values)]


def _reference(model: WideDeep, dataset, user: int, item: int) -> torch.Tensor:
    """``[rating offset, logit]`` of one pair: the sum of every active feature's wide weight, the weight of every
    active (user value, item value) conjunction, and the heads on ``MLP([e_1, ..., e_F])``."""
    emb = model.embedding(torch.tensor([user]), torch.tensor([item]))[0]  # [F, D]
    a = emb.flatten()
    for layer in model.mlp:
        if isinstance(layer, torch.nn.Linear):
            a = torch.relu(layer.weight @ a + layer.bias)
    out = model.head.weight @ a + model.head.bias
    out = out + model.linear(torch.tensor([user]), torch.tensor([item]))[0].sum(0)  # first-order terms
    for user_spec, item_spec in model.cross_pairs:
        table = model.crosses[f"user__{user_spec.name}__x__item__{item_spec.name}"].weight
        for u_code in _active_values(dataset, "user", user_spec.name, user):
            for i_code in _active_values(dataset, "item", item_spec.name, item):
                out = out + table[u_code * item_spec.vocab_size + i_code]
    return out


@pytest.mark.parametrize("cross", [False, True])
def test_wide_and_deep_match_plain_formula(tiny_synthetic, cross: bool) -> None:
    model = _model(tiny_synthetic, cross=cross)
    assert bool(model.cross_pairs) == cross
    users, items = torch.tensor([0, 3, 17, 99]), torch.tensor([5, 0, 42, 199])
    with torch.no_grad():
        out = model(users, items)
        for b, (user, item) in enumerate(zip(users.tolist(), items.tolist(), strict=True)):
            expected = _reference(model, tiny_synthetic, user, item)
            assert float(out.rating[b]) == pytest.approx(float(model.global_mean + expected[0]), abs=1e-4)
            assert float(out.logit[b]) == pytest.approx(float(expected[1]), abs=1e-4)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("rank_by", ["logit", "rating"])
def test_score_equals_per_pair_forward(tiny_synthetic, rank_by: str, cross: bool, monkeypatch) -> None:
    """The split first layer, item chunks and cross matmuls give exactly the per-pair outputs."""
    monkeypatch.setattr(widedeep_module, "SCORE_CHUNK_PAIRS", 100)  # several chunks, the last one partial
    model = _model(tiny_synthetic, cross=cross)
    model.rank_by = rank_by
    users = torch.tensor([1, 7, 50])
    n_items = tiny_synthetic.n_items
    with torch.no_grad():
        scores = model.score(users)
        out = model(users.repeat_interleave(n_items), torch.arange(n_items).repeat(len(users)))
    expected = (out.rating if rank_by == "rating" else out.logit).view(len(users), n_items)
    assert torch.allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_score_of_no_users_is_empty(tiny_synthetic) -> None:
    model = _model(tiny_synthetic, cross=True)
    assert model.score(torch.empty(0, dtype=torch.int64)).shape == (0, tiny_synthetic.n_items)


def test_deep_tower_layers_are_separate_linears(tiny_synthetic) -> None:
    model = _model(tiny_synthetic)
    widths = [m.out_features for m in model.mlp if isinstance(m, torch.nn.Linear)]
    assert widths == [8, 6]
    assert model.mlp[0].in_features == model.n_fields * 4


def test_tiny_training_beats_popularity(tiny_synthetic) -> None:
    pop = train_run(RunSpec(model="pop", task="both"), progress=False, dataset=tiny_synthetic)
    train = TrainConfig(**{**WideDeep.train_defaults, "epochs": 30, "patience": 30})
    run = train_run(RunSpec(model="widedeep", task="both", train=train), progress=False, dataset=tiny_synthetic)
    assert run.metrics["valid"]["ndcg@10"] > pop.metrics["valid"]["ndcg@10"], (run.metrics["valid"], pop.metrics)
    assert run.metrics["valid"]["rmse"] < pop.metrics["valid"]["rmse"] + 0.05
