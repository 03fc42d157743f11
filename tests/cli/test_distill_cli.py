"""``distillrec distill``: the seed's flags as written, both spellings, one-line errors, the evaluated run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distillrec.cli.main import build_parser, main

SMALL = ["--dataset", "synthetic", "--synthetic", "n_users=120,n_items=200,n_interactions=4000"]
FAST = ["--epochs", "2", "--recover_epochs", "1", "--pruning_steps", "2", "--fisher_samples", "256", "--n_top", "5",
        "--no-progress"]


def test_seed_flags_parse_in_both_spellings() -> None:
    parser = build_parser()
    seed = parser.parse_args(["distill", "--teacher", "ensemble", "--student", "lightweight_model",
                              "--pruning_ratio", "0.5", "--distill_tasks", "ranking,rating,feature"])
    dashed = parser.parse_args(["distill", "--teacher", "ensemble", "--student", "lightweight_model",
                                "--pruning-ratio", "0.5", "--distill-tasks", "ranking,rating,feature"])
    assert vars(seed) == vars(dashed)
    assert seed.distill_weights == "0.4,0.4,0.2" and seed.pruning_ratio == 0.5


@pytest.mark.parametrize(("flags", "message"), [
    (["--distill_tasks", "ranking,style"], "--distill_tasks"),
    (["--distill_weights", "0.4,x,0.2"], "--distill_weights"),
    (["--distill_weights", "0.4,0.4"], "--distill_weights"),
    (["--pruning_ratio", "1.2"], "--pruning_ratio"),
    (["--student", "transformer9000"], "unknown model"),
    (["--truth_weight", "2"], "--truth_weight"),
])
def test_bad_flags_are_one_line_errors_before_any_training(flags, message, tmp_path, capsys) -> None:
    code = main(["distill", *SMALL, "--teacher", "autoint", "--runs_dir", str(tmp_path), *flags, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir()), "no teacher is trained for a command that cannot run"


def _distilled(tmp_path: Path, name: str, *flags: str) -> tuple[Path, dict]:
    """Run ``distillrec distill`` on the small set into ``tmp_path/name``; its folder and metrics."""
    torch.set_num_threads(1)
    out = tmp_path / name
    assert main(["distill", *SMALL, "--runs_dir", str(tmp_path / "runs"), "--out", str(out), *flags, *FAST]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_single_model_teacher_by_name(tmp_path: Path, capsys) -> None:
    out, metrics = _distilled(tmp_path, "student", "--teacher", "autoint", "--pruning_ratio", "0.5",
                              "--set", "embed_dim=8")
    assert metrics["teacher"]["model"] == "autoint" and metrics["distillation"]["pruning_ratio"] == 0.5
    assert metrics["distillation"]["final_prunable"] <= metrics["distillation"]["start_prunable"] / 2
    config = json.loads((out / "distill_config.json").read_text())
    assert config["student_config"] == {"embed_dim": 8}
    printed = capsys.readouterr().out
    assert "student saved to" in printed and "of its NDCG@10" in printed
    assert main(["evaluate", str(out)]) == 0, "the student is a run like any other"


def test_dense_distillation_into_another_architecture(tmp_path: Path) -> None:
    _, metrics = _distilled(tmp_path, "deepfm", "--teacher", "svd", "--student", "deepfm", "--pruning_ratio", "0")
    assert metrics["model"] == "deepfm" and metrics["distillation"]["start_prunable"] is None


def test_pruning_another_architecture_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    code = main(["distill", *SMALL, "--teacher", "svd", "--runs_dir", str(tmp_path / "runs"), "--student", "deepfm",
                 "--pruning_ratio", "0.5", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "lightweight_model" in err and len(err.strip().splitlines()) == 1
