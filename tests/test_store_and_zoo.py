"""Runs store reuse/keying and the zoo's comparison logic."""

from __future__ import annotations

import pytest

from distillrec.errors import DistillrecError
from distillrec.runs import DataSpec, RunSpec
from distillrec.store import get_or_train, run_folder, spec_hash
from distillrec.training.trainer import TrainConfig
from distillrec.zoo import best_for, comparison_rows, parse_models

SMALL = DataSpec(name="synthetic", synthetic={"n_users": 100, "n_items": 150, "n_interactions": 3000})


def test_hash_ignores_spelled_out_defaults_but_not_changes() -> None:
    base = RunSpec(model="svd", data=SMALL)
    assert spec_hash(base) == spec_hash(RunSpec(model="svd", data=SMALL, model_config={"rank": 20}))
    assert spec_hash(base) != spec_hash(RunSpec(model="svd", data=SMALL, model_config={"rank": 21}))
    assert spec_hash(base) != spec_hash(RunSpec(model="svd", data=SMALL, seed=1))
    assert spec_hash(base) != spec_hash(RunSpec(model="svd", data=SMALL, train=TrainConfig(lr=0.5)))


def test_second_call_reuses_the_stored_run(tmp_path) -> None:
    spec = RunSpec(model="pop", data=SMALL)
    first, reused_first = get_or_train(spec, tmp_path, progress=False)
    second, reused_second = get_or_train(spec, tmp_path, progress=False)
    assert (reused_first, reused_second) == (False, True)
    assert second.metrics["test"] == first.metrics["test"]
    assert run_folder(spec, tmp_path).name.startswith("pop-synthetic-p-rank-seed0-")
    assert [p.name for p in tmp_path.iterdir()] == [run_folder(spec, tmp_path).name]  # no temp folders left


def test_parse_models() -> None:
    assert "svd" in parse_models("all")
    assert parse_models("svd, pop") == ["svd", "pop"]
    with pytest.raises(DistillrecError, match="unknown model 'nope'"):
        parse_models("svd,nope")


def _result(model: str, ndcg: float, rmse: float | None, p99: float) -> dict:
    test = {"ndcg@10": ndcg, **({"rmse": rmse} if rmse is not None else {})}
    return {"model": model, "test": test, "cost": {"latency_p99_ms": p99}}


def test_best_for_labels() -> None:
    results = [_result("a", 0.30, 0.95, 5.0), _result("b", 0.25, 0.90, 1.0), _result("c", 0.29, 0.91, 3.0),
               _result("d", 0.10, None, 0.5)]
    labels = best_for(results)
    assert labels == {"a": ["ranking"], "b": ["rating"], "c": ["balance"], "d": ["real-time"]}
    headers, rows = comparison_rows([{**r, "test": {**r["test"]}} for r in results])
    assert headers[0] == "model" and headers[-1] == "best for" and rows[2][-1] == "balance"
