"""Importance, schedule and surgery of the serving student, each against a plainly computed reference."""

from __future__ import annotations

import json

import pytest
import torch

from distillrec.data.splits import make_split
from distillrec.models.lightweight import LightweightConfig, LightweightModel
from distillrec.pruning.groups import families, group_costs, prunable_parameters, widths_after, widths_of
from distillrec.pruning.importance import Scores, fisher_scores, magnitude_scores, random_scores
from distillrec.pruning.schedule import select, step_targets
from distillrec.pruning.surgery import masked, max_masked_difference, shrink
from distillrec.registry import build_config
from distillrec.runs import data_shape, train_data
from distillrec.training.tasks import Batch


def _student(dataset, **overrides) -> LightweightModel:
    torch.manual_seed(0)
    config = LightweightConfig(**{"embed_dim": 6, "user_hidden": (5,), "item_hidden": (4, 3), "out_dim": 4,
                                  **overrides})
    model = LightweightModel(data_shape(dataset), config)
    model.prepare(train_data(dataset, make_split(dataset, "p-rank", seed=0)))
    with torch.no_grad():  # O(1) weights and biases everywhere, so every removed tensor slice matters
        for parameter in model.parameters():
            parameter.normal_(std=0.5)
    return model.eval()


def test_masked_difference_is_relative_to_the_output_scale(tiny_synthetic) -> None:
    """A ranking-bias shift of 0.5 on shrunk scores that reach ~100 is a gap of 0.5 / 100, not 0.5."""
    model = _student(tiny_synthetic)
    with torch.no_grad():
        model.item_bias.weight[:, 1] += 100.0
    removed = _removal(model)
    small, _ = shrink(model, removed)
    users, items = torch.arange(tiny_synthetic.n_users), torch.arange(tiny_synthetic.n_users) % tiny_synthetic.n_items
    with torch.no_grad():
        small.item_bias.weight[:, 1] += 0.5
    with masked(model, removed):
        scale = float(model.score(users).abs().max())
    assert scale > 50
    assert max_masked_difference(model, removed, small, users, items) == pytest.approx(0.5 / scale, rel=1e-3)


def _removal(model: LightweightModel, seed: int = 0) -> dict[str, set[int]]:
    """Remove a random non-empty, non-total subset of units from every family."""
    generator = torch.Generator().manual_seed(seed)
    removed = {}
    for family in families(model):
        count = int(torch.randint(1, family.size, (1,), generator=generator)) if family.size > 1 else 0
        removed[family.name] = set(torch.randperm(family.size, generator=generator)[:count].tolist())
    return removed


def _counted_prunable(model: LightweightModel) -> int:
    towers = sum(p.numel() for t in (model.user_tower, model.item_tower) for p in t.parameters())
    tables = sum(p.numel() for p in model.embedding.parameters())
    return tables + towers + model.rating_scale_weight.numel()


@pytest.mark.parametrize("overrides", [{}, {"user_hidden": (), "item_hidden": ()}])
def test_shrunk_student_equals_masked_one(tiny_synthetic, overrides) -> None:
    model = _student(tiny_synthetic, **overrides)
    removed = _removal(model)
    small, kept_latent = shrink(model, removed)
    users, items = torch.arange(tiny_synthetic.n_users), torch.arange(tiny_synthetic.n_users) % tiny_synthetic.n_items
    assert max_masked_difference(model, removed, small, users, items) <= 1e-5
    with masked(model, removed):
        assert torch.allclose(small.score(users), model.score(users), atol=1e-5)
    assert model.gates is None, "the mask is lifted afterwards"
    assert len(kept_latent) == small.config.out_dim == model.config.out_dim - len(removed["latent"])
    # the shrunk model holds strictly fewer parameters, and exactly the count the plan predicts
    expected = widths_after(widths_of(model), families(model), removed).prunable()
    assert prunable_parameters(small) == _counted_prunable(small) == expected < prunable_parameters(model)


def test_removing_a_whole_field_drops_its_table(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    field = next(f for f in families(model) if f.field == "user.gender")
    small, _ = shrink(model, {field.name: set(range(field.size))})
    assert "user.gender" not in small.embedding.field_names
    assert not any("gender" in name for name, _ in small.named_buffers())
    users = torch.arange(20)
    assert max_masked_difference(model, {field.name: set(range(field.size))}, small, users, users) <= 1e-5


def test_a_dropped_field_stays_dropped_in_later_steps(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    gender = next(f for f in families(model) if f.field == "user.gender")
    once, _ = shrink(model, {gender.name: set(range(gender.size))})
    twice, _ = shrink(once, {"latent": {0}})
    assert "user.gender" not in twice.embedding.field_names and twice.config.field_dims["user.gender"] == 0
    users = torch.arange(20)
    assert max_masked_difference(once, {"latent": {0}}, twice, users, users) <= 1e-5


def test_shrunk_student_rebuilds_from_its_json_config(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    small, _ = shrink(model, _removal(model, seed=3))
    config = json.loads(json.dumps(small.config_dict()))  # what config.json stores
    rebuilt = LightweightModel(small.shape, build_config("lightweight_model", config))
    rebuilt.load_state_dict(small.state_dict())
    users = torch.arange(30)
    assert torch.equal(rebuilt.eval().score(users), small.score(users))


def test_prunable_count_matches_the_tensors(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    assert prunable_parameters(model) == _counted_prunable(model)


def test_costs_are_what_removal_saves(tiny_synthetic) -> None:
    """Removing one group alone saves exactly its cost."""
    model = _student(tiny_synthetic)
    fams = families(model)
    costs = group_costs(model, fams)
    before = prunable_parameters(model)
    for family in fams:
        small, _ = shrink(model, {family.name: {0}})
        assert before - prunable_parameters(small) == int(costs[family.name][0]), family.name


def _per_sample_loss(model: LightweightModel, batch: Batch) -> torch.Tensor:
    """A loss touching both towers, the ranking and the rating output: squared error plus a pairwise term."""
    items = torch.stack([batch.items, (batch.items + 7) % model.n_items], dim=1)
    rating, logit = model.outputs(batch.users, items)
    return (rating[:, 0] - batch.ratings).pow(2) + torch.nn.functional.softplus(logit[:, 1] - logit[:, 0])


def test_fisher_equals_brute_force_per_sample_loop(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    data = train_data(tiny_synthetic, make_split(tiny_synthetic, "p-rank", seed=0))
    batches = [Batch(data.users[s:s + 16], data.items[s:s + 16], data.ratings[s:s + 16]) for s in (0, 16)]
    scores = fisher_scores(model, _per_sample_loss, batches)
    fams = families(model)
    expected = {f.name: torch.zeros(f.size, dtype=torch.float64) for f in fams}
    for batch in batches:
        for n in range(len(batch.users)):  # one sample, one backward, one shared mask per family
            one = Batch(batch.users[n:n + 1], batch.items[n:n + 1], batch.ratings[n:n + 1])
            masks = {f.name: torch.ones(f.size, requires_grad=True) for f in fams}
            model.gates = masks
            loss = _per_sample_loss(model, one).sum()
            grads = torch.autograd.grad(loss, list(masks.values()), allow_unused=True)
            model.gates = None
            for f, g in zip(fams, grads, strict=True):
                expected[f.name] += 0 if g is None else g.double().pow(2)
    for name, value in expected.items():
        assert torch.allclose(scores[name], value, rtol=1e-6, atol=1e-12), name
        assert value.sum() > 0, f"{name}: the test must exercise every family"
    for f in fams:  # a whole field: the sum of its dimensions' Fisher (no cancellation across dimensions)
        if f.kind == "embedding_dim":
            assert scores.fields[f.field] == pytest.approx(float(expected[f.name].sum()), rel=1e-6)
    assert model.gates is None


def test_magnitude_is_the_squared_norm_of_what_a_group_removes(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    scores = magnitude_scores(model)
    before = sum(p.detach().double().pow(2).sum() for p in model.parameters())
    for family in families(model):
        small, _ = shrink(model, {family.name: {1}})
        after = sum(p.detach().double().pow(2).sum() for p in small.parameters())
        assert float(scores[family.name][1]) == pytest.approx(float(before - after), rel=1e-4), family.name


def test_random_scores_are_seeded(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    first, again, other = random_scores(model, 1), random_scores(model, 1), random_scores(model, 2)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_step_targets_follow_the_cubic_schedule() -> None:
    targets = step_targets(1000, 0.5, 4)
    assert targets[-1] == 500
    assert all(a > b for a, b in zip([1000, *targets], targets, strict=False))
    removed = [a - b for a, b in zip([1000, *targets], targets, strict=False)]
    assert removed == sorted(removed, reverse=True), "early steps remove the most"
    with pytest.raises(Exception, match="pruning_ratio"):
        step_targets(1000, 1.0, 3)


def test_select_reaches_the_target_and_prefers_low_importance_per_parameter(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    fams = families(model)
    units = {f.name: torch.ones(f.size, dtype=torch.float64) for f in fams}
    units["latent"] = torch.tensor([1.0, 1e-9, 1.0, 1.0], dtype=torch.float64)  # one latent dim is worthless
    scores = Scores(units, {f.field: 1.0 for f in fams if f.kind == "embedding_dim"})
    start = prunable_parameters(model)
    plan = select(model, scores, start - 1)
    assert plan.removed == {"latent": {1}}
    target = start // 3
    plan = select(model, scores, target)
    small, _ = shrink(model, plan.removed)
    assert prunable_parameters(small) == plan.remaining <= target
    assert small.config.out_dim >= 1 and min(small.config.user_hidden + small.config.item_hidden) >= 1
    assert small.embedding.user_specs and small.embedding.item_specs


def test_select_passes_over_a_field_that_overshoots_the_target(tiny_synthetic) -> None:
    model = _student(tiny_synthetic)
    fams = families(model)
    costs = group_costs(model, fams)
    fields = [f for f in fams if f.kind == "embedding_dim"]
    biggest = max(fields, key=lambda f: float(costs[f.name].sum()))
    units = {f.name: torch.ones(f.size, dtype=torch.float64) for f in fams}
    scores = Scores(units, {f.field: 1e-9 if f is biggest else 1.0 for f in fields})  # the cheapest per parameter
    start = prunable_parameters(model)
    plan = select(model, scores, start - 1)
    assert biggest.field not in plan.fields_dropped
    assert (start - 1) * 0.98 <= plan.remaining <= start - 1
    without = widths_after(widths_of(model), fams, {f.name: set(range(f.size)) if f is biggest else set()
                                                     for f in fams}).prunable()
    plan = select(model, scores, without + 1)
    assert plan.fields_dropped == [biggest.field] and plan.remaining == without, "taken when the target asks for it"


def test_list_scoring_paths_agree(tiny_synthetic, monkeypatch) -> None:
    """``outputs`` reads one product over distinct items, or gathers their vectors, or runs per entry (gates)."""
    import distillrec.models.lightweight as lightweight

    model = _student(tiny_synthetic)
    generator = torch.Generator().manual_seed(3)
    users = torch.randint(model.n_users, (7,), generator=generator)
    items = torch.randint(model.n_items, (7, 9), generator=generator)
    dense = model.outputs(users, items)
    monkeypatch.setattr(lightweight, "DENSE_LIST_FACTOR", 0)
    gathered = model.outputs(users, items)
    model.gates = {"item.hidden0": torch.ones(len(users), model.item_tower.layers[0].out_features)}
    per_entry = model.outputs(users, items)
    model.gates = None
    one_by_one = model(users.repeat_interleave(items.shape[1]), items.reshape(-1))
    for rating, logit in (gathered, per_entry):
        torch.testing.assert_close(rating, dense[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logit, dense[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one_by_one.rating.view_as(items), dense[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one_by_one.logit.view_as(items), dense[1], rtol=1e-5, atol=1e-5)
