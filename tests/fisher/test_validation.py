"""Field permutation and group masking (``fisher.validation``) on tiny models: they damage exactly what they name."""

from __future__ import annotations

import pytest
import torch

from distillrec.data.splits import make_split
from distillrec.ensemble.weighted import Ensemble
from distillrec.errors import DistillrecError
from distillrec.fisher.empirical import FisherEstimator, compute_fisher
from distillrec.fisher.groups import discover
from distillrec.fisher.losses import Objective
from distillrec.fisher.targets import resolve_targets
from distillrec.fisher.tracing import Tracer
from distillrec.fisher.validation import (
    field_damage,
    field_tensors,
    group_masks,
    permute_field,
    sample_batch,
    sample_losses,
    spearman,
    unit_shapes,
)
from distillrec.registry import create_model
from distillrec.runs import RunSpec, data_shape, train_data, train_run
from distillrec.training.trainer import TrainConfig

SMALL = {"autoint": {"embed_dim": 4, "d_head": 2, "n_layers": 2, "n_heads": (3, 2), "hidden": (5,)},
         "xdeepfm": {"embed_dim": 4, "cin_layers": (6, 4), "mlp_hidden": (8,)},
         "svd": {"rank": 5, "mf_dim": 4}}


@pytest.fixture(scope="module")
def data(tiny_synthetic):
    return train_data(tiny_synthetic, make_split(tiny_synthetic, "p-rank", seed=0))


def _model(name: str, dataset, data, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name, data_shape(dataset), SMALL[name])
    model.prepare(data)
    for param in model.parameters():  # trained-like scales: zero-initialised heads would hide every effect
        torch.nn.init.normal_(param, std=0.3)
    return model.eval()


def _perm(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def test_permuting_a_side_field_changes_only_that_field(tiny_synthetic, data) -> None:
    model = _model("autoint", tiny_synthetic, data)
    users, items = torch.arange(tiny_synthetic.n_users), torch.arange(tiny_synthetic.n_items)
    for label in ("user.gender", "item.genres", "user_id", "item_id"):
        user_side = label.startswith("user")
        ids = users if user_side else items
        perm = _perm(len(ids))
        for layer in (model.embedding, model.linear):
            embed = layer.user_embeddings if user_side else layer.item_embeddings
            before = embed(ids)
            with permute_field(model, label, perm):
                during = embed(ids)
            index = [n for n in layer.field_names if n.startswith("user" if user_side else "item")].index(label)
            others = [f for f in range(before.shape[1]) if f != index]
            assert torch.equal(during[:, index], before[perm, index]), label
            assert not torch.equal(during[:, index], before[:, index]), label
            assert torch.equal(during[:, others], before[:, others]), label
            assert torch.equal(embed(ids), before), "restored on exit"


def test_permuting_an_id_field_moves_every_per_entity_row_of_svd(tiny_synthetic, data) -> None:
    model = _model("svd", tiny_synthetic, data)
    users, items = torch.arange(tiny_synthetic.n_users), torch.arange(tiny_synthetic.n_items)
    pairs = (users, users % tiny_synthetic.n_items)
    scores, ratings = model.score(users), model.predict_rating(*pairs)
    perm = _perm(len(users))
    moved = model.predict_rating(perm, pairs[1])  # user u rated as user perm[u] would be
    with permute_field(model, "user_id", perm):
        assert torch.allclose(model.score(users), scores[perm])
        assert torch.allclose(model.predict_rating(*pairs), moved)
    perm = _perm(len(items), 1)
    with permute_field(model, "item_id", perm):
        assert torch.allclose(model.score(users), scores[:, perm])
    assert torch.equal(model.score(users), scores) and torch.equal(model.predict_rating(*pairs), ratings)
    assert {tuple(t.shape) for t in field_tensors(model, "user_id")} == {
        tuple(model.user_factors.shape), tuple(model.has_history.shape), (len(users), 4), (len(users), 1)}


def test_the_ensemble_permutes_every_member_that_has_the_field(tiny_synthetic, data) -> None:
    members = [_model("svd", tiny_synthetic, data), _model("autoint", tiny_synthetic, data, 1)]
    ensemble = Ensemble.from_members(members, ["ranking", "balance"], [0.5, 0.5])
    svd, autoint = ensemble.members
    users = torch.arange(tiny_synthetic.n_users)
    scores, svd_scores = ensemble.score(users), svd.score(users)
    ids = autoint.embedding.table("user_id").weight.detach().clone()
    perm = _perm(len(users))
    with permute_field(ensemble, "user_id", perm):  # the same permutation in both members
        torch.testing.assert_close(svd.score(users), svd_scores[perm])
        assert torch.equal(autoint.embedding.table("user_id").weight, ids[perm])
    with permute_field(ensemble, "item.genres", _perm(tiny_synthetic.n_items)):
        assert torch.equal(svd.score(users), svd_scores)  # SVD has no genres
        assert not torch.allclose(ensemble.score(users), scores)
    torch.testing.assert_close(ensemble.score(users), scores, rtol=0, atol=0)
    with pytest.raises(DistillrecError, match="no field"), permute_field(svd, "user.gender", perm):
        pass


def _traced(model, probes, masks, *args):
    tracer = Tracer(probes)
    with tracer, torch.no_grad():
        tracer.start("mask", mask=masks)
        return model(*args)


def test_masking_a_group_zeroes_exactly_its_units(tiny_synthetic, data) -> None:
    model = _model("autoint", tiny_synthetic, data)
    structure = discover(model)
    probes = list(structure.probes.values())
    batch = sample_batch(data, 8)
    units = unit_shapes(model, probes, [Objective("ranking")], batch)
    pairs = (batch.users, batch.items)
    seen: list[torch.Tensor] = []
    hook = model.layers[0].register_forward_hook(lambda m, a, out: seen.append(out.clone()))
    try:
        masks = group_masks(structure.families["attention_head/layers.0"], 1, units)
        assert set(masks) == {"layers.0"}
        with torch.no_grad():
            model(*pairs)
        _traced(model, probes, masks, *pairs)
    finally:
        hook.remove()
    plain, masked = seen
    channels = model.layers[0].head_slice(1)
    assert (masked[..., channels] == 0).all() and plain[..., channels].abs().sum() > 0
    keep = torch.ones(plain.shape[-1], dtype=torch.bool)
    keep[channels] = False
    assert torch.equal(masked[..., keep], plain[..., keep])

    field = structure.families["field"]
    masks = group_masks(field, field.labels.index("item.genres"), units)
    assert set(masks) == {"embedding", "linear"}  # the embedding and the first-order term, like the Fisher's mask
    index = model.embedding.field_names.index("item.genres")
    assert (masks["embedding"][index] == 0).all() and masks["embedding"].sum() == masks["embedding"].numel() - 4


def test_masking_a_neuron_equals_removing_it(tiny_synthetic, data) -> None:
    """The masked loss is the loss of the model whose neuron's weights are zeroed (an independent definition)."""
    model = _model("autoint", tiny_synthetic, data)
    structure = discover(model)
    probes = list(structure.probes.values())
    batch = sample_batch(data, 64)
    objective = Objective("ranking")
    masks = group_masks(structure.families["mlp_neuron/mlp.0"], 2, unit_shapes(model, probes, [objective], batch))
    masked = sample_losses(model, objective, batch, probes, masks)
    with torch.no_grad():
        model.mlp[0].weight[2] = 0.0
        model.mlp[0].bias[2] = 0.0
    torch.testing.assert_close(masked, sample_losses(model, objective, batch))


def test_cin_maps_are_masked_and_scored_per_map(tiny_synthetic, data) -> None:
    """CIN holds maps first (``[H, N * D]``): the probe must present maps, not positions, as units."""
    model = _model("xdeepfm", tiny_synthetic, data)
    structure = discover(model)
    probes = list(structure.probes.values())
    batch = sample_batch(data, 6, n_negatives=2)
    selection = resolve_targets("all", model, structure)
    for task in ("ranking", "rating"):
        _, groups = FisherEstimator(model, Objective(task, 2), selection).sums(batch)
        for k in (0, 1):
            assert groups[f"cin_map/cin.layers.{k}"].shape == (model.cin.layers[k].out_features,)
    units = unit_shapes(model, probes, [Objective("ranking")], batch)
    masks = group_masks(structure.families["cin_map/cin.layers.0"], 3, units)
    seen: list[torch.Tensor] = []
    hook = model.cin.act.register_forward_hook(lambda m, a, out: seen.append(out.clone()))
    try:
        with torch.no_grad():
            model(batch.users, batch.items)
        _traced(model, probes, masks, batch.users, batch.items)
    finally:
        hook.remove()
    plain, masked = seen[0], seen[2]  # first call (layer 0) of each forward
    assert (masked[3] == 0).all() and plain[3].abs().sum() > 0
    assert torch.equal(masked[[0, 1, 2, 4, 5]], plain[[0, 1, 2, 4, 5]])


@pytest.fixture
def one_thread():
    """Small-batch training on a shared 2-core machine is many times slower with 2 threads than with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_field_without_information_does_no_damage_and_has_no_fisher(tiny_synthetic, data, one_thread) -> None:
    """Trained AutoInt with one field's tables zeroed: permuting it changes nothing, its Fisher is zero, and the
    item id (what a ranking model lives on) does real damage."""
    run = train_run(RunSpec(model="autoint", model_config=SMALL["autoint"], train=TrainConfig(epochs=2)),
                    progress=False, dataset=tiny_synthetic, latency_requests=20)
    model = run.model
    with torch.no_grad():
        for layer in (model.embedding, model.linear):
            layer.table("user.occupation").weight.zero_()
    split = make_split(tiny_synthetic, "p-rank", seed=0)
    labels = ["item_id", "user.occupation"]
    damage = field_damage(model, tiny_synthetic, split, labels, repeats=2)
    dead, item = damage["fields"]["user.occupation"], damage["fields"]["item_id"]
    assert dead["ndcg_drop"] == 0.0 and dead["rmse_rise"] == 0.0
    assert item["ndcg_drop"] > 0.01 and item["rmse_rise"] > 0.0
    selection = resolve_targets("output", model, discover(model))
    fisher = compute_fisher(model, data, ("ranking",), selection, max_samples=256, progress=False)
    scores = fisher["ranking"].groups["field"]
    names = model.embedding.field_names
    assert scores[names.index("user.occupation")] == 0.0 < scores[names.index("item_id")]


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None
