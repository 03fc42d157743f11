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


def test_hash_follows_the_data_files_contents_not_their_place(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DISTILLREC_DATA", raising=False)
    for copy in ("a", "b"):
        (tmp_path / copy / "ml-100k").mkdir(parents=True)
        (tmp_path / copy / "ml-100k" / "u.data").write_text("1\t1\t5\t881250949\n")
    in_a, in_b = (RunSpec(model="svd", data=DataSpec("ml-100k", data_dir=str(tmp_path / c))) for c in "ab")
    assert spec_hash(in_a) == spec_hash(in_b)
    monkeypatch.setenv("DISTILLREC_DATA", str(tmp_path / "b"))
    assert spec_hash(RunSpec(model="svd", data=DataSpec("ml-100k"))) == spec_hash(in_a)  # found through the env
    (tmp_path / "b" / "ml-100k" / "u.data").write_text("1\t1\t4\t881250949\n1\t2\t3\t881250950\n")
    assert spec_hash(in_a) != spec_hash(in_b)


def test_a_file_edited_in_place_is_a_new_run(tmp_path) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("user,item,rating\n1,1,5\n")
    spec = RunSpec(model="svd", data=DataSpec("csv", path=str(ratings)))
    before = spec_hash(spec)
    ratings.write_text("user,item,rating\n1,1,5\n1,2,3\n")
    after = spec_hash(spec)
    assert after != before
    ratings.rename(tmp_path / "moved.csv")  # the same contents elsewhere, under another name: the same run
    assert spec_hash(RunSpec(model="svd", data=DataSpec("csv", path=str(tmp_path / "moved.csv")))) == after


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
