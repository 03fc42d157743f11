"""xDeepFM: the CIN against a plain loop implementation of the paper's Eq. 6, the factorised full ranking against
the generic one, and a small training run (the MovieLens-100K bands are in ``test_ml100k_bands.py``)."""

from __future__ import annotations

import pytest
import torch

import distillrec.models.xdeepfm  # noqa: F401  (registers "xdeepfm" until models/__init__ imports it)
from distillrec.errors import DistillrecError
from distillrec.models.field_model import FieldInteractionModel
from distillrec.models.xdeepfm import CIN
from distillrec.registry import create_model
from distillrec.runs import RunSpec, data_shape, train_run
from distillrec.training.trainer import TrainConfig


def naive_cin(fields: torch.Tensor, cin: CIN, sizes: tuple[int, ...], split_half: bool, relu: bool) -> torch.Tensor:
    """Eq. 6 of the paper written with explicit loops over feature maps: ``[N, F, D]`` -> ``[N, pooled maps]``."""
    n_fields = fields.shape[1]
    x0 = [fields[:, f] for f in range(n_fields)]  # F tensors [N, D]
    hidden, pooled = x0, []
    for k, size in enumerate(sizes):
        weight = cin.layers[k].weight.view(size, len(hidden), n_fields)
        maps = []
        for g in range(size):
            value = torch.full_like(x0[0], cin.layers[k].bias[g].item())
            for h in range(len(hidden)):
                for f in range(n_fields):
                    value = value + weight[g, h, f] * hidden[h] * x0[f]
            maps.append(value.relu() if relu else value)
        last = k == len(sizes) - 1
        if split_half and not last:  # first half goes on, second half goes to the output
            hidden, direct = maps[:size // 2], maps[size // 2:]
        else:
            hidden, direct = maps, maps
        pooled += [m.sum(dim=1) for m in direct]  # sum pooling over the embedding dimension
    return torch.stack(pooled, dim=1)


@pytest.mark.parametrize(("sizes", "split_half", "activation"), [
    ((6, 4), True, "identity"), ((3, 5, 2), False, "identity"), ((4, 6, 3), True, "relu"), ((5,), True, "identity"),
])
def test_cin_matches_naive_loops(sizes, split_half, activation) -> None:
    torch.manual_seed(0)
    fields = torch.randn(3, 4, 5, dtype=torch.float64)
    cin = CIN(4, sizes, split_half, activation).double()
    for layer in cin.layers:
        torch.nn.init.normal_(layer.bias)  # non-zero biases, so a wrong bias layout shows
    out = cin(fields)
    expected = naive_cin(fields, cin, sizes, split_half, activation == "relu")
    assert out.shape == expected.shape == (3, cin.out_dim)
    torch.testing.assert_close(out, expected)


def test_feature_maps_per_layer_as_configured(tiny_synthetic) -> None:
    model = create_model("xdeepfm", data_shape(tiny_synthetic), {"cin_layers": (128, 128), "mlp_hidden": (32,)})
    n_fields = model.n_fields
    assert [layer.out_features for layer in model.cin.layers] == [128, 128]
    assert [layer.in_features for layer in model.cin.layers] == [n_fields * n_fields, 64 * n_fields]
    assert model.cin.next_maps == [64, 0] and model.cin.direct_maps == [64, 128]
    assert model.interact(torch.randn(7, n_fields, 16)).shape == (7, 64 + 128 + 32)
    whole = create_model("xdeepfm", data_shape(tiny_synthetic), {"cin_layers": (10, 6), "cin_split_half": False})
    assert whole.cin.next_maps == [10, 0] and whole.cin.direct_maps == [10, 6]
    assert whole.cin.layers[1].in_features == 10 * n_fields


def test_bad_settings_are_one_line_errors(tiny_synthetic) -> None:
    shape = data_shape(tiny_synthetic)
    with pytest.raises(DistillrecError, match="even"):
        create_model("xdeepfm", shape, {"cin_layers": (7, 4)})
    with pytest.raises(DistillrecError, match="cin_activation"):
        create_model("xdeepfm", shape, {"cin_activation": "tanh"})


@pytest.mark.parametrize("overrides", [
    {}, {"cin_layers": (16, 8)}, {"cin_layers": (6, 4), "cin_split_half": False}, {"cin_layers": (8,)},
    {"mlp_hidden": ()}, {"use_features": False, "mlp_hidden": (8, 4)},
])
def test_factorised_score_equals_generic_score(tiny_synthetic, overrides) -> None:
    """The low-rank CIN scoring is an exact rewrite of scoring every (user, item) pair."""
    from distillrec.data.splits import make_split
    from distillrec.runs import train_data

    torch.manual_seed(0)
    model = create_model("xdeepfm", data_shape(tiny_synthetic), overrides)
    model.prepare(train_data(tiny_synthetic, make_split(tiny_synthetic, "p-rank", seed=0)))
    with torch.no_grad():  # weights of a trained size, so every term of the expansion matters
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.5)
    model.eval()
    users = torch.tensor([0, 3, 17, 42])
    for rank_by in ("logit", "rating"):
        model.rank_by = rank_by
        fast, generic = model.score(users), FieldInteractionModel.score(model, users)
        assert fast.shape == (4, tiny_synthetic.n_items)
        torch.testing.assert_close(fast, generic, rtol=1e-4, atol=1e-4 * generic.abs().max().item())


def test_training_beats_popularity_on_synthetic(tiny_synthetic) -> None:
    train = TrainConfig(epochs=15, patience=15, lr=3e-3)
    run = train_run(RunSpec(model="xdeepfm", task="both", train=train,
                            model_config={"cin_layers": (16, 16), "mlp_hidden": (32,)}),
                    progress=False, dataset=tiny_synthetic)
    pop = train_run(RunSpec(model="pop", task="both"), progress=False, dataset=tiny_synthetic)
    assert run.metrics["valid"]["ndcg@10"] > pop.metrics["valid"]["ndcg@10"], (run.metrics["valid"], pop.metrics)
    assert run.metrics["valid"]["rmse"] < pop.metrics["valid"]["rmse"]
