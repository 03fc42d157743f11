"""DeepFM: the FM term against the pairwise sum it abbreviates, and the ml-100k accuracy bands."""

from __future__ import annotations

import itertools

import pytest
import torch

from distillrec.models.deepfm import DeepFM, DeepFMConfig
from distillrec.runs import RunSpec, data_shape, train_run
from distillrec.training.trainer import TrainConfig


def test_fm_term_is_the_sum_of_pairwise_inner_products(tiny_synthetic) -> None:
    torch.manual_seed(0)
    model = DeepFM(data_shape(tiny_synthetic), DeepFMConfig(embed_dim=4, hidden=(8,), dropout=0.0)).eval()
    n_fields = model.n_fields
    fields = torch.randn(5, n_fields, 4)
    pairwise = torch.stack([sum((row[a] * row[b]).sum() for a, b in itertools.combinations(range(n_fields), 2))
                            for row in fields])
    with torch.no_grad():
        out = model.interact(fields)
    assert out.shape == (5, 8 + 1)
    torch.testing.assert_close(out[:, -1], pairwise, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, :-1], model.mlp(fields.flatten(1)))


@pytest.mark.slow
def test_ml100k_p_rank_ndcg_band(ml100k) -> None:
    run = train_run(RunSpec(model="deepfm", protocol="p-rank", task="both", seed=0,
                            train=TrainConfig(**DeepFM.train_defaults)), progress=False, dataset=ml100k)
    test = run.metrics["test"]
    assert 0.28 <= test["ndcg@10"] <= 0.40, test  # seed 0: 0.298 (RecBole's BPR: 0.293)
    assert test["success_rate"] == 1.0


@pytest.mark.slow
def test_ml100k_p_rating_rmse(ml100k) -> None:
    run = train_run(RunSpec(model="deepfm", protocol="p-rating", fold=1, task="rating", seed=0,
                            train=TrainConfig(**DeepFM.train_defaults)), progress=False, dataset=ml100k)
    test = run.metrics["test"]
    assert test["rmse"] <= 0.95, test
    assert test["rated_pairs"] == 20_000
