"""The CLI end to end on a small synthetic set: train, evaluate, recommend, split, datasets, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from distillrec.cli.main import main

SMALL = ["--dataset", "synthetic", "--synthetic", "n_users=150,n_items=220,n_interactions=5000"]


def test_dash_and_underscore_spellings_are_the_same_flag(tmp_path: Path) -> None:
    from distillrec.cli.main import build_parser

    parser = build_parser()
    a = parser.parse_args(["train", "--rating_scale", "1,5", "--no-progress"])
    b = parser.parse_args(["train", "--rating-scale", "1,5", "--no_progress"])
    assert a.rating_scale == b.rating_scale == "1,5" and a.no_progress and b.no_progress


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "svd"
    code = main(["train", "--model", "svd", *SMALL, "--protocol", "p-rank", "--task", "both", "--seed", "0",
                 "--out", str(out), "--set", "epochs=2", "--no-progress"])
    assert code == 0
    return out


def test_train_writes_a_complete_run(trained_run: Path) -> None:
    for name in ("config.json", "model.safetensors", "ids.json", "seen.safetensors", "metrics.json",
                 "train_log.jsonl"):
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["protocol"] == "p-rank" and metrics["dataset"] == "synthetic" and metrics["seed"] == 0
    for part in ("valid", "test"):
        for key in ("recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10", "coverage@10", "success_rate",
                    "rmse", "mae"):
            assert key in metrics[part], (part, key)
    for key in ("params", "bytes", "train_seconds", "users_per_second", "latency_p50_ms", "latency_p99_ms"):
        assert key in metrics["cost"], key
    assert metrics["test"]["success_rate"] == 1.0
    config = json.loads((trained_run / "config.json").read_text())
    assert config["spec"]["train"]["epochs"] == 2  # the resolved config is saved in the run


def test_evaluate_reproduces_metrics_and_writes_topk(trained_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "top.csv"
    assert main(["evaluate", str(trained_run), "--topk-out", str(out)]) == 0
    frame = pd.read_csv(out, dtype=str)
    assert list(frame.columns) == ["user", "rank", "item"]
    assert (frame.groupby("user").size() == 20).all()
    saved = json.loads((trained_run / "metrics.json").read_text())
    printed = capsys.readouterr().out
    assert f"{saved['test']['ndcg@10']:.4f}" in printed


def test_recommend_known_and_unknown_user(trained_run: Path, capsys) -> None:
    assert main(["recommend", str(trained_run), "--user", "1", "-k", "5", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["items"]) == 5 and payload["cold_start"] is False
    ids = json.loads((trained_run / "ids.json").read_text())
    assert {item["item"] for item in payload["items"]} <= set(ids["items"])
    assert main(["recommend", str(trained_run), "--user", "no-such-user", "-k", "3", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["cold_start"] is True and len(payload["items"]) == 3


def test_recommend_excludes_seen_items(trained_run: Path, capsys) -> None:
    from distillrec.runs import load_run

    run = load_run(trained_run)
    user = run.user_ids[0]
    seen = {run.item_ids[i] for i in run.seen.indices[run.seen.indptr[0]:run.seen.indptr[1]].tolist()}
    main(["recommend", str(trained_run), "--user", user, "-k", "50", "--format", "json"])
    items = {item["item"] for item in json.loads(capsys.readouterr().out)["items"]}
    assert seen and not items & seen


def test_split_writes_three_csvs(tmp_path: Path) -> None:
    assert main(["split", *SMALL, "--protocol", "p-rank", "--seed", "0", "--out", str(tmp_path)]) == 0
    parts = {p: pd.read_csv(tmp_path / f"{p}.csv") for p in ("train", "valid", "test")}
    assert all(list(f.columns) == ["user", "item", "rating", "timestamp"] for f in parts.values())
    from distillrec.data.synthetic import SyntheticConfig, generate_synthetic

    dataset = generate_synthetic(SyntheticConfig(n_users=150, n_items=220, n_interactions=5000))
    assert sum(len(f) for f in parts.values()) == dataset.n_interactions
    assert not set(zip(parts["test"].user, parts["test"].item, strict=True)) & set(
        zip(parts["train"].user, parts["train"].item, strict=True))


def test_datasets_lists_known_names(capsys) -> None:
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("synthetic", "ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m"):
        assert name in out


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--dataset", "csv", "--path", "/nonexistent/ratings.csv"], "/nonexistent/ratings.csv"),
    (["train", "--dataset", "nope"], "nope"),
    (["train", "--model", "nope"], "unknown model"),
    (["train", "--set", "nonsense=1"], "nonsense"),
    (["train", "--model", "xdeepfm", "--set", "embed_reg=abc"], "xdeepfm: embed_reg: expected float, got 'abc'"),
    (["train", "--set", "lr=fast"], "training: lr: expected float"),
    (["train", "--rating-scale", "5,1"], "rating_scale"),
    (["recommend", "/nonexistent/run", "--user", "1"], "not a finished run"),
])
def test_bad_input_is_one_line_without_traceback(argv: list[str], fragment: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "distillrec.cli.main", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0]
