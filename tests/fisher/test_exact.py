"""The exact estimator against a brute-force per-sample loop: parameter diagonals and every group type."""

from __future__ import annotations

import pytest
import torch

# registers the models wherever models/__init__ does not import them yet
import distillrec.models.neumf
import distillrec.models.widedeep  # noqa: F401
from distillrec.data.splits import make_split
from distillrec.ensemble.weighted import Ensemble
from distillrec.errors import DistillrecError
from distillrec.fisher.empirical import ESTIMATOR_NOTES, FisherEstimator, SampleBatch, compute_fisher
from distillrec.fisher.groups import GROUP_KINDS, discover, field_rows
from distillrec.fisher.losses import FusionStats, Objective, ensemble_pairs
from distillrec.fisher.reference import reference_fisher
from distillrec.fisher.targets import resolve_targets
from distillrec.registry import create_model
from distillrec.runs import data_shape, train_data
from distillrec.training.tasks import sample_negatives

#: small configurations: every group type appears, and float64 brute force stays fast
SMALL = {
    "autoint": {"embed_dim": 4, "d_head": 2, "n_layers": 2, "n_heads": (3, 2), "hidden": (5,)},
    "xdeepfm": {"embed_dim": 4, "cin_layers": (6, 4), "mlp_hidden": (8,)},
    "dcnv2": {"embed_dim": 4, "hidden": (8,), "n_cross": 2},
    "dcnv2_mix": {"embed_dim": 4, "hidden": (8,), "n_cross": 2, "low_rank": 3, "n_experts": 2, "structure": "stacked"},
    "svd": {"rank": 5, "mf_dim": 4},
    "neumf": {"gmf_dim": 4, "mlp_dim": 4, "hidden": (6, 3)},
    "widedeep_cross": {"embed_dim": 4, "hidden": (8,), "cross": True},  # one_hot: vmap falls back to a loop
    "pop": {},
}
TASKS = ("ranking", "rating", "ensemble")


@pytest.fixture(scope="module")
def data(tiny_synthetic):
    return train_data(tiny_synthetic, make_split(tiny_synthetic, "p-rank", seed=0))


def _model(name: str, dataset, data, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name.split("_")[0], data_shape(dataset), SMALL[name])
    model.prepare(data)
    for param in model.parameters():  # trained-like scales: zero-initialised heads would hide terms
        torch.nn.init.normal_(param, std=0.3)
    return model


def _ensemble(dataset, data) -> Ensemble:
    members = [_model(n, dataset, data, i) for i, n in enumerate(("svd", "xdeepfm", "autoint", "pop"))]
    return Ensemble.from_members(members, ["ranking", "rating", "balance", "balance"], [0.4, 0.4, 0.2, 0.1])


def _batch(data, n: int = 5, n_negatives: int = 2) -> SampleBatch:
    users = data.users[:n]
    negatives = sample_negatives(users, data.matrix, n_negatives, torch.Generator().manual_seed(0))
    return SampleBatch(users, data.items[:n], data.ratings[:n].double(), negatives)


def _close(got: torch.Tensor, want: torch.Tensor, scale: float) -> bool:
    """Equal to 1e-6 relative; entries that are zero up to rounding compare against the task's scale."""
    return float((got - want).abs().max()) <= 1e-6 * max(float(want.abs().max()), 1e-9 * scale, 1e-300)


def _check(model, data, stats=None) -> set[str]:
    """Exact == brute force for every focus task; returns the group kinds that were checked."""
    model = model.double().eval()
    selection = resolve_targets("all", model, discover(model))
    batch = _batch(data)
    kinds = set()
    for task in TASKS:
        objective = Objective(task, n_negatives=2, stats=stats)
        engine = FisherEstimator(model, objective, selection)
        diagonals, groups = engine.sums(batch)
        reference = reference_fisher(model, objective, selection, batch)
        want_diag = {k: v * len(batch) for k, v in reference.diagonals.items()}  # sums, as the engine returns
        assert set(diagonals) == set(want_diag) == set(selection.params)
        scale = max([float(v.abs().max()) for v in want_diag.values()] + [0.0])
        for name, value in diagonals.items():
            assert _close(value, want_diag[name], scale), (task, name)
        assert set(groups) == set(reference.groups) and groups
        for name, value in groups.items():
            assert _close(value, reference.groups[name], float(reference.groups[name].abs().max())), (task, name)
            kinds.add(engine.families[name].kind)
    return kinds


@pytest.mark.filterwarnings("ignore:the teacher's forward does not support")
@pytest.mark.parametrize("name", ["autoint", "xdeepfm", "dcnv2", "dcnv2_mix", "svd", "neumf", "widedeep_cross"])
def test_exact_equals_brute_force(name, tiny_synthetic, data) -> None:
    kinds = _check(_model(name, tiny_synthetic, data), data)
    expected = {"autoint": {"attention_head", "mlp_neuron"}, "xdeepfm": {"cin_map", "mlp_neuron"},
                "dcnv2": {"cross_unit"}, "dcnv2_mix": {"cross_unit"}, "svd": {"svd_factor", "svd_component"},
                "neumf": {"embedding_dim", "mlp_neuron"}, "widedeep_cross": {"embedding_dim", "mlp_neuron"}}[name]
    assert expected | {"layer", "field"} <= kinds


def test_exact_equals_brute_force_for_the_ensemble(tiny_synthetic, data) -> None:
    ensemble = _ensemble(tiny_synthetic, data).double()
    kinds = _check(ensemble, data, FusionStats.compute(ensemble))
    assert set(GROUP_KINDS) - {"cross_unit"} <= kinds  # every kind the members have, and ensemble-wide fields


def test_fused_pair_outputs_are_the_ensembles(tiny_synthetic, data) -> None:
    """Fixed fusion statistics reproduce the ensemble's own rating and z-scored ranking score exactly."""
    ensemble = _ensemble(tiny_synthetic, data).eval()
    users, items = torch.tensor([3, 3, 7, 20]), torch.tensor([5, 9, 11, 0])
    rating, score = ensemble_pairs(ensemble, FusionStats.compute(ensemble), users, items)
    out = ensemble(users, items)
    torch.testing.assert_close(rating, out.rating)
    torch.testing.assert_close(score, out.logit)


def test_field_rows_rebuild_the_embedding(tiny_synthetic, data) -> None:
    """The rows a lookup probe records are exactly what ``FieldEmbedding`` reads (guards against drift)."""
    model = _model("autoint", tiny_synthetic, data)
    users, items = data.users[:7], data.items[:7]
    tables = list(model.embedding.tables.values())
    parts = [rows @ table.weight if rows.is_floating_point() else table.weight[rows]
             for rows, table in zip(field_rows(model.embedding, (users, items)), tables, strict=True)]
    torch.testing.assert_close(torch.stack(parts, dim=1), model.embedding(users, items))


def test_batch_estimator_is_the_squared_batch_gradient_and_labelled(tiny_synthetic, data) -> None:
    model = _model("autoint", tiny_synthetic, data).double().eval()
    selection = resolve_targets("all", model, discover(model))
    batch = _batch(data, n=8, n_negatives=1)
    objective = Objective("ranking", n_negatives=1)
    approx, _ = FisherEstimator(model, objective, selection, "batch").sums(batch)
    exact, _ = FisherEstimator(model, objective, selection, "exact").sums(batch)
    loss = torch.stack([objective(model, *(t[n] for t in batch.tensors()))[0] for n in range(len(batch))]).sum()
    params = dict(model.named_parameters())
    for name, g in zip(params, torch.autograd.grad(loss, list(params.values())), strict=True):
        torch.testing.assert_close(approx[name], g.pow(2))
    assert any(not torch.allclose(approx[n], exact[n]) for n in params)
    results = compute_fisher(model, data, ("ranking",), selection, "batch", batch_size=8, max_samples=16,
                             progress=False)
    assert results["ranking"].estimator == "batch" and "APPROXIMATION" in ESTIMATOR_NOTES["batch"]


def test_large_batches_are_split_without_changing_the_result(tiny_synthetic, data) -> None:
    model = _model("xdeepfm", tiny_synthetic, data).double().eval()
    selection = resolve_targets("all", model, discover(model))
    batch = _batch(data, n=6)
    objective = Objective("ranking", n_negatives=2)
    whole = FisherEstimator(model, objective, selection).sums(batch)
    split = FisherEstimator(model, objective, selection, element_budget=1).sums(batch)  # one sample at a time
    for a, b in zip(whole, split, strict=True):
        for name in a:
            torch.testing.assert_close(a[name], b[name])


def test_graph_models_are_refused(tiny_synthetic, data) -> None:
    import distillrec.models.lightgcn  # noqa: F401

    model = create_model("lightgcn", data_shape(tiny_synthetic))
    selection = resolve_targets("all", model, discover(model))
    with pytest.raises(DistillrecError, match="not available for lightgcn"):
        FisherEstimator(model, Objective("ranking"), selection)
