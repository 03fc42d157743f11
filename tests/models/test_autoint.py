"""AutoInt: interacting layers against a per-head reference, head structure, residual, tiny training."""

from __future__ import annotations

import json

import pytest
import torch

import distillrec.models.autoint  # noqa: F401  (registers "autoint")
from distillrec.models.autoint import INFERENCE_BLOCK, AutoInt, AutoIntConfig, InteractingLayer
from distillrec.models.base import DataShape
from distillrec.registry import build_config
from distillrec.runs import RunSpec, data_shape, train_run
from distillrec.training.trainer import TrainConfig


def naive_layer(layer: InteractingLayer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's eq. 5-8 with explicit loops over samples, heads and fields: (output, attention [N, H, F, F])."""
    n, n_fields, _ = x.shape
    d = layer.d_head
    out = torch.zeros(n, n_fields, layer.n_heads * d, dtype=x.dtype)
    alphas = torch.zeros(n, layer.n_heads, n_fields, n_fields, dtype=x.dtype)
    for s in range(n):
        for h in range(layer.n_heads):
            cols = slice(h * d, (h + 1) * d)
            wq, wk, wv = layer.W_q[:, cols], layer.W_k[:, cols], layer.W_v[:, cols]
            for m in range(n_fields):
                scores = torch.stack([(x[s, m] @ wq) @ (x[s, k] @ wk) * layer.scale for k in range(n_fields)])
                alpha = scores.exp() / scores.exp().sum()
                alphas[s, h, m] = alpha
                out[s, m, cols] = sum(alpha[k] * (x[s, k] @ wv) for k in range(n_fields))
    if layer.W_res is not None:
        for s in range(n):
            for m in range(n_fields):
                out[s, m] = out[s, m] + x[s, m] @ layer.W_res
    return torch.relu(out), alphas


@pytest.mark.parametrize(("heads", "d_head", "residual", "scaled"),
                         [(2, 4, True, False), (3, 2, False, True), (1, 5, True, False)])
def test_layer_matches_per_head_reference(heads: int, d_head: int, residual: bool, scaled: bool) -> None:
    torch.manual_seed(0)
    layer = InteractingLayer(6, heads, d_head, use_residual=residual, scale_attention=scaled).double()
    x = torch.randn(3, 5, 6, dtype=torch.double, requires_grad=True)
    expected, alphas = naive_layer(layer, x)
    got = layer(x)
    assert got.shape == (3, 5, heads * d_head)
    assert torch.allclose(got, expected, atol=1e-10)
    assert torch.allclose(layer.attention_weights(x), alphas, atol=1e-10)
    # gradients of every projection and of the input agree with autograd through the reference
    weights = [x, *layer.projections()]
    grad_got = torch.autograd.grad(got.square().sum(), weights)
    grad_ref = torch.autograd.grad(expected.square().sum(), weights)
    for a, b in zip(grad_got, grad_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_residual_on_and_off() -> None:
    torch.manual_seed(0)
    with_res = InteractingLayer(4, 2, 3, use_residual=True)
    without = InteractingLayer(4, 2, 3, use_residual=False)
    assert with_res.W_res is not None and without.W_res is None
    assert "W_res" not in dict(without.named_parameters()) and len(without.projections()) == 3
    with torch.no_grad():
        for name in ("W_q", "W_k", "W_v"):
            getattr(without, name).copy_(getattr(with_res, name))
        x = torch.randn(6, 5, 4)
        attention_only = without(x)
        assert torch.allclose(attention_only, naive_layer(without, x)[0], atol=1e-6)
        assert not torch.allclose(with_res(x), attention_only)  # the residual term W_res e_m is added (eq. 8)
        with_res.W_res.zero_()
        assert torch.allclose(with_res(x), attention_only, atol=1e-6)


def test_head_structure_per_layer_and_config_round_trip(tiny_synthetic) -> None:
    """Each layer reads its own head count; a per-layer tuple (as a pruned model needs) survives JSON."""
    shape = data_shape(tiny_synthetic)
    config = build_config("autoint", {"n_layers": 3, "n_heads": (3, 1, 2), "d_head": 4, "hidden": (8,)})
    model = AutoInt(shape, config)
    assert model.heads_per_layer == (3, 1, 2)
    in_dims = [config.embed_dim, 12, 4]
    for layer, heads, in_dim in zip(model.layers, (3, 1, 2), in_dims, strict=True):
        assert isinstance(layer, InteractingLayer) and (layer.n_heads, layer.d_head) == (heads, 4)
        for weight in layer.projections():
            assert weight.shape == (in_dim, heads * 4)
        assert layer.head_slice(heads - 1) == slice((heads - 1) * 4, heads * 4)
    assert model.head.in_features == model.n_fields * 2 * 4 + 8
    restored = build_config("autoint", json.loads(json.dumps(model.config_dict())))
    again = AutoInt(shape, restored)
    again.load_state_dict(model.state_dict())
    assert again.heads_per_layer == (3, 1, 2)
    with pytest.raises(Exception, match="n_heads lists 2 layers"):
        AutoInt(shape, AutoIntConfig(n_layers=3, n_heads=(2, 2)))


def test_attention_reg_is_the_l2_of_every_projection(tiny_synthetic) -> None:
    shape = data_shape(tiny_synthetic)
    users, items = torch.tensor([0, 1]), torch.tensor([2, 3])
    torch.manual_seed(0)
    plain = AutoInt(shape, build_config("autoint", {"n_layers": 2, "n_heads": (2, 1), "d_head": 4,
                                                     "attention_reg": 0.0}))
    assert plain.regularization(users, items).item() == 0.0
    regularised = AutoInt(shape, build_config("autoint", {"n_layers": 2, "n_heads": (2, 1), "d_head": 4,
                                                           "attention_reg": 0.5}))
    regularised.load_state_dict(plain.state_dict())
    expected = 0.5 * sum(float(w.detach().pow(2).sum()) for layer in plain.layers
                         for w in (layer.W_q, layer.W_k, layer.W_v, layer.W_res))
    assert regularised.regularization(users, items).item() == pytest.approx(expected, rel=1e-6)


def test_head_mask_scales_each_heads_output_channels() -> None:
    """Masking head h removes exactly its attention output: its channels fall back to ReLU(W_res e_m)."""
    torch.manual_seed(0)
    layer = InteractingLayer(4, 2, 3)
    x = torch.randn(5, 6, 4)
    with torch.no_grad():
        full = layer(x)
        layer.head_mask = torch.tensor([0.0, 1.0])
        masked = layer(x)
    residual_only = torch.relu(x @ layer.W_res).detach()
    assert torch.allclose(masked[..., layer.head_slice(0)], residual_only[..., :3], atol=1e-6)
    assert torch.allclose(masked[..., layer.head_slice(1)], full[..., layer.head_slice(1)])
    # the mask's gradient is the head-importance signal: non-zero for a head that contributes
    layer.head_mask = torch.ones(2, requires_grad=True)
    layer(x).sum().backward()
    assert layer.head_mask.grad.shape == (2,) and (layer.head_mask.grad != 0).all()


def test_inference_blocks_and_vmap_match_batched_forward() -> None:
    """Blocked inference (no grad) and per-sample ``torch.func.vmap`` (Fisher) equal one batched pass."""
    torch.manual_seed(0)
    model = AutoInt(DataShape(10, 12), AutoIntConfig(embed_dim=4, n_layers=2, d_head=2)).eval()
    fields = torch.randn(2 * INFERENCE_BLOCK + 3, model.n_fields, 4)
    whole = model.interact(fields).detach()
    with torch.no_grad():
        assert torch.allclose(model.interact(fields), whole, atol=1e-6)
        per_sample = torch.func.vmap(lambda f: model.interact(f[None])[0])(fields[:7])
    assert torch.allclose(per_sample, whole[:7], atol=1e-6)


def test_score_equals_per_pair_forward(tiny_synthetic) -> None:
    torch.manual_seed(0)
    model = AutoInt(data_shape(tiny_synthetic), AutoIntConfig(hidden=(8,))).eval()
    users, n_items = torch.tensor([2, 9]), tiny_synthetic.n_items
    with torch.no_grad():
        scores = model.score(users)
        logits = model(users.repeat_interleave(n_items), torch.arange(n_items).repeat(len(users))).logit
    assert torch.allclose(scores, logits.view(len(users), n_items), atol=1e-5)


def test_tiny_training_beats_popularity(tiny_synthetic) -> None:
    pop = train_run(RunSpec(model="pop", task="both"), progress=False, dataset=tiny_synthetic)
    train = TrainConfig(**{**AutoInt.train_defaults, "epochs": 30, "patience": 30})
    run = train_run(RunSpec(model="autoint", task="both", train=train), progress=False, dataset=tiny_synthetic)
    assert run.metrics["valid"]["ndcg@10"] > pop.metrics["valid"]["ndcg@10"], (run.metrics["valid"], pop.metrics)
    assert run.metrics["valid"]["rmse"] < pop.metrics["valid"]["rmse"] + 0.05
