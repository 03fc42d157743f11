"""DCN-V2: cross layers against the paper's formulas, both structures, tiny training."""

from __future__ import annotations

import pytest
import torch

import distillrec.models.dcnv2 as dcnv2_module
from distillrec.models.base import DataShape
from distillrec.models.dcnv2 import CrossLayer, DCNv2, DCNv2Config, MixtureCrossLayer
from distillrec.runs import RunSpec, data_shape, train_run
from distillrec.training.trainer import TrainConfig


def test_full_rank_cross_layer_matches_formula() -> None:
    """``x_{l+1} = x_0 ⊙ (W x_l + b) + x_l``, written element by element."""
    torch.manual_seed(0)
    layer = CrossLayer(5)
    with torch.no_grad():
        layer.linear.bias.normal_()
    x0, xl = torch.randn(3, 5), torch.randn(3, 5)
    w, b = layer.linear.weight, layer.linear.bias
    expected = torch.empty(3, 5)
    for n in range(3):
        for j in range(5):
            expected[n, j] = x0[n, j] * (sum(w[j, k] * xl[n, k] for k in range(5)) + b[j]) + xl[n, j]
    with torch.no_grad():
        assert torch.allclose(layer(x0, xl), expected, atol=1e-5)


def test_mixture_cross_layer_matches_formula() -> None:
    """``x_{l+1} = Σ_i G_i(x_l) x_0 ⊙ (U_i tanh(C_i tanh(V_i^T x_l)) + b) + x_l``, G = softmax of a linear gate."""
    torch.manual_seed(0)
    layer = MixtureCrossLayer(6, rank=2, n_experts=3)
    with torch.no_grad():
        layer.bias.normal_()
    x0, xl = torch.randn(4, 6), torch.randn(4, 6)
    with torch.no_grad():
        got = layer(x0, xl)
        for n in range(4):
            logits = torch.stack([layer.gate.weight[i] @ xl[n] for i in range(3)])
            gates = logits.exp() / logits.exp().sum()
            out = xl[n].clone()
            for i, expert in enumerate(layer.experts):
                inner = expert.up.weight @ torch.tanh(expert.mid.weight @ torch.tanh(expert.down.weight @ xl[n]))
                out += gates[i] * x0[n] * (inner + layer.bias)
            assert torch.allclose(got[n], out, atol=1e-5)


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
def test_interaction_matches_structure(structure: str) -> None:
    """Stacked: ``MLP(cross(x0))``; parallel: ``[cross(x0), MLP(x0)]``; with ``x0`` the flattened fields."""
    torch.manual_seed(0)
    model = DCNv2(DataShape(4, 6), DCNv2Config(embed_dim=3, n_cross=2, hidden=(5,), dropout=0.0,
                                               structure=structure)).eval()
    fields = torch.randn(7, model.n_fields, 3)
    x0 = fields.flatten(1)
    x = x0
    for layer in model.cross:
        x = x0 * (x @ layer.linear.weight.T + layer.linear.bias) + x
    mlp = model.mlp[0]
    if structure == "stacked":
        expected = torch.relu(x @ mlp.weight.T + mlp.bias)
    else:
        expected = torch.cat([x, torch.relu(x0 @ mlp.weight.T + mlp.bias)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model.interact(fields), expected, atol=1e-5)
    assert model.head.in_features == expected.shape[1]


def test_cross_layers_are_separate_modules(tiny_synthetic) -> None:
    model = DCNv2(data_shape(tiny_synthetic), DCNv2Config(n_cross=3))
    dim = model.n_fields * model.config.embed_dim
    assert len(model.cross) == 3
    assert all(isinstance(layer, CrossLayer) and layer.linear.weight.shape == (dim, dim) for layer in model.cross)
    low = DCNv2(data_shape(tiny_synthetic), DCNv2Config(n_cross=2, low_rank=4, n_experts=2))
    assert all(isinstance(layer, MixtureCrossLayer) and len(layer.experts) == 2 for layer in low.cross)
    assert low.cross[0].experts[0].down.weight.shape == (4, dim)
    with pytest.raises(ValueError, match="structure"):
        DCNv2(data_shape(tiny_synthetic), DCNv2Config(structure="diagonal"))


@pytest.mark.parametrize("overrides", [
    {}, {"structure": "stacked"}, {"low_rank": 4, "n_experts": 2}, {"low_rank": 4, "structure": "stacked"},
    {"hidden": ()}, {"n_cross": 0}])
@pytest.mark.parametrize("rank_by", ["logit", "rating"])
def test_score_equals_per_pair_forward(tiny_synthetic, overrides, rank_by: str, monkeypatch) -> None:
    """The split maps over ``x_0`` and the item chunks give exactly the per-pair outputs."""
    monkeypatch.setattr(dcnv2_module, "SCORE_CHUNK_PAIRS", 150)  # several chunks, the last one partial
    torch.manual_seed(0)
    model = DCNv2(data_shape(tiny_synthetic), DCNv2Config(**overrides))
    with torch.no_grad():  # O(1) embeddings, non-zero first-order terms and head bias: every term counts
        for table in [*model.embedding.tables.values(), *model.linear.tables.values()]:
            table.weight.normal_(std=0.5)
        model.head.bias.normal_()
    model.eval().rank_by = rank_by
    users, n_items = torch.tensor([2, 9, 31]), tiny_synthetic.n_items
    with torch.no_grad():
        scores = model.score(users)
        out = model(users.repeat_interleave(n_items), torch.arange(n_items).repeat(len(users)))
    expected = out.rating if rank_by == "rating" else out.logit
    assert torch.allclose(scores, expected.view(len(users), n_items), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
def test_score_of_no_users_is_empty(tiny_synthetic, structure: str) -> None:
    model = DCNv2(data_shape(tiny_synthetic), DCNv2Config(structure=structure)).eval()
    assert model.score(torch.empty(0, dtype=torch.int64)).shape == (0, tiny_synthetic.n_items)


def test_tiny_training_beats_popularity(tiny_synthetic) -> None:
    pop = train_run(RunSpec(model="pop", task="both"), progress=False, dataset=tiny_synthetic)
    train = TrainConfig(**{**DCNv2.train_defaults, "epochs": 30, "patience": 30})
    run = train_run(RunSpec(model="dcnv2", task="both", train=train), progress=False, dataset=tiny_synthetic)
    assert run.metrics["valid"]["ndcg@10"] > pop.metrics["valid"]["ndcg@10"], (run.metrics["valid"], pop.metrics)
    assert run.metrics["valid"]["rmse"] < pop.metrics["valid"]["rmse"] + 0.05
