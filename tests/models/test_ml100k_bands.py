"""Accuracy bands on MovieLens-100K (slow): every zoo model, trained with exactly the zoo's settings and seed 0.

The bounds sit about 0.01 outside the seed-0 figures of ``benchmarks/zoo.py`` (BENCHMARKS.md), so a regression fails
while thread-count noise does not; the issue's goals are tracked by the benchmark, not here. The P-RANK ceiling guards
against leakage: no model on this protocol gets near 0.40.
"""

from __future__ import annotations

import pytest

from distillrec.runs import DataSpec, train_run
from distillrec.zoo import zoo_spec

#: test NDCG@10 floor on P-RANK, seed 0, with the seed-0 figure it sits under
P_RANK_NDCG_FLOOR = {
    "svd": 0.30,  # 0.3140
    "neumf": 0.275,  # 0.2831 (RecBole's NeuMF: 0.279)
    "deepfm": 0.285,  # 0.2980 (RecBole's BPR: 0.293)
    "widedeep": 0.28,  # 0.2908
    "dcnv2": 0.275,  # 0.2887
    "xdeepfm": 0.28,  # 0.2894
    "autoint": 0.27,  # 0.2797
    "lightgcn": 0.295,  # 0.3069 (RecBole's LightGCN: 0.305)
}
#: u1.test RMSE ceiling on P-RATING fold 1 (task rating); the issue's goal is 0.95 for every model
U1_RMSE_CEILING = {"svd": 0.94, "neumf": 0.94, "deepfm": 0.945, "widedeep": 0.945, "dcnv2": 0.94, "xdeepfm": 0.945,
                   "autoint": 0.945, "lightgcn": 0.925}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(P_RANK_NDCG_FLOOR))
def test_p_rank_ndcg_band(model: str, ml100k, ml100k_root) -> None:
    run = train_run(zoo_spec(model, DataSpec("ml-100k", data_dir=str(ml100k_root)), "p-rank", 0), progress=False,
                    dataset=ml100k)
    test = run.metrics["test"]
    assert P_RANK_NDCG_FLOOR[model] <= test["ndcg@10"] <= 0.40, test
    assert test["success_rate"] == 1.0
    assert test["rmse"] <= 0.95, test  # the rating head trains alongside (task both) and stays usable


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(U1_RMSE_CEILING))
def test_p_rating_u1_rmse(model: str, ml100k, ml100k_root) -> None:
    run = train_run(zoo_spec(model, DataSpec("ml-100k", data_dir=str(ml100k_root)), "p-rating", 0, fold=1),
                    progress=False, dataset=ml100k)
    test = run.metrics["test"]
    assert test["rmse"] <= U1_RMSE_CEILING[model], test
    assert test["rated_pairs"] == 20_000
