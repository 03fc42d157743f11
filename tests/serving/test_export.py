"""``distillrec export``: ONNX and TorchScript artifacts reproduce the PyTorch scores and ratings to 1e-5."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from distillrec.cli.main import main
from distillrec.ensemble.weighted import Ensemble
from distillrec.errors import DistillrecError
from distillrec.runs import Run, RunSpec, load_run, save_run
from distillrec.serving.export import ExportedModel, export_run

ort = pytest.importorskip("onnxruntime", reason="the serve extra (pip install -e '.[serve]') is not installed")
onnx = pytest.importorskip("onnx")


def _scores(run: Run, users: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return run.model.score(users).float()


def _ratings(run: Run, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return run.model.predict_rating(users, items).float()


def _pairs(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    users = torch.arange(run.model.n_users)
    return users, (users * 7 + 3) % run.model.n_items


@pytest.fixture(scope="module")
def student(serving_runs) -> Run:
    return load_run(serving_runs["lightweight_model"])


def test_onnx_student_matches_pytorch_with_item_vectors_as_a_constant(student, tmp_path) -> None:
    report = export_run(student, "onnx", tmp_path)
    assert report.dynamic_batch and report.max_score_diff <= 1e-5 and report.max_rating_diff <= 1e-5
    users = torch.arange(student.model.n_users)  # every user in one call: the batch axis is dynamic
    session = ort.InferenceSession(str(tmp_path / "score.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"users": users.numpy()})[0]
    np.testing.assert_allclose(got, _scores(student, users).numpy(), rtol=1e-5, atol=1e-5)
    rating = ort.InferenceSession(str(tmp_path / "rating.onnx"), providers=["CPUExecutionProvider"])
    pair_users, items = _pairs(student)
    got = rating.run(None, {"users": pair_users.numpy(), "items": items.numpy()})[0]
    np.testing.assert_allclose(got, _ratings(student, pair_users, items).numpy(), rtol=1e-5, atol=1e-5)
    # the item tower is not in the score graph: its output for every item is one of the graph's constants
    graph = onnx.load(str(tmp_path / "score.onnx")).graph
    assert [i.name for i in graph.input] == ["users"]
    with torch.no_grad():
        vectors = student.model.item_vectors(torch.arange(student.model.n_items)).numpy()
    constants = [onnx.numpy_helper.to_array(t) for t in graph.initializer]
    assert any((c.shape == vectors.T.shape and np.allclose(c, vectors.T, atol=1e-6))  # stored as V^T [K, I]
               or (c.shape == vectors.shape and np.allclose(c, vectors, atol=1e-6)) for c in constants)
    assert not any(c.shape[0] == student.model.n_items for c in constants if c.ndim == 2 and c.shape[1] > 2), \
        "an item-side table made it into the score graph"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["score"]["batch"] == "any" and manifest["n_items"] == student.model.n_items
    assert json.loads((tmp_path / "ids.json").read_text())["items"] == student.item_ids


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_student_matches_pytorch(student, tmp_path) -> None:
    export_run(student, "torchscript", tmp_path)
    module = torch.jit.load(str(tmp_path / "model.pt"))
    users = torch.arange(student.model.n_users)
    pair_users, items = _pairs(student)
    with torch.inference_mode():
        torch.testing.assert_close(module(users), _scores(student, users), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(module(users[7:8]), _scores(student, users[7:8]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(module.predict_rating(pair_users, items), _ratings(student, pair_users, items),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_svd_export_keeps_the_cold_user_fallback(serving_runs, tmp_path, fmt) -> None:
    """SVD's ``if cold.any()`` branch must survive the trace: a user without history scores by popularity."""
    run = load_run(serving_runs["svd"])
    run.model.has_history[5] = False  # as if user 5 had no training rows (traced with users 0 and 1, warm)
    export_run(run, fmt, tmp_path)
    exported = ExportedModel.load(tmp_path)
    users = torch.arange(run.model.n_users)
    got = exported.score(users)
    torch.testing.assert_close(got, _scores(run, users), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[5], run.model.item_popularity)
    assert not torch.allclose(got[6], run.model.item_popularity)
    pair_users, items = _pairs(run)
    torch.testing.assert_close(exported.predict_rating(pair_users, items), _ratings(run, pair_users, items),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_feature_model_exports_score_one_user_per_call(serving_runs, tmp_path, fmt) -> None:
    run = load_run(serving_runs["autoint"])
    report = export_run(run, fmt, tmp_path, check_users=8)
    assert not report.dynamic_batch
    assert json.loads((tmp_path / "manifest.json").read_text())["score"]["batch"] == 1
    exported = ExportedModel.load(tmp_path)
    users = torch.tensor([0, 17, 64, run.model.n_users - 1])
    torch.testing.assert_close(exported.score(users), _scores(run, users), rtol=1e-5, atol=1e-5)
    pair_users, items = _pairs(run)  # the rating graph takes any number of pairs
    torch.testing.assert_close(exported.predict_rating(pair_users, items), _ratings(run, pair_users, items),
                               rtol=1e-5, atol=1e-5)


def test_the_check_rejects_an_artifact_that_differs(student, tmp_path, monkeypatch) -> None:
    exact = ExportedModel.score
    monkeypatch.setattr(ExportedModel, "score", lambda self, users: exact(self, users) + 1e-3)
    with pytest.raises(DistillrecError, match=r"differ from the PyTorch model's by up to 0\.001"):
        export_run(student, "torchscript", tmp_path)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "manifest.json").exists()


def _ensemble(serving_runs, fusion: str) -> Run:
    svd, student = load_run(serving_runs["svd"]), load_run(serving_runs["lightweight_model"])
    model = Ensemble.from_members([svd.model, student.model], ["balance", "balance"], [0.5, 0.5], fusion)
    spec = RunSpec(model="ensemble", model_config=dataclasses.asdict(model.config))
    return dataclasses.replace(svd, spec=spec, model=model, metrics={"model": "ensemble"}, folder=None)


def test_rank_fusion_ensemble_is_a_one_line_error(serving_runs, tmp_path, capsys) -> None:
    run = _ensemble(serving_runs, "rank")
    with pytest.raises(DistillrecError, match="rank fusion cannot be exported to ONNX") as error:
        export_run(run, "onnx", tmp_path / "direct")
    assert "\n" not in str(error.value)
    save_run(run, tmp_path / "ensemble")
    assert main(["export", str(tmp_path / "ensemble"), "--format", "onnx", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distillrec: error: ensemble with rank fusion") and "\n" not in err
    assert not (tmp_path / "cli" / "manifest.json").exists()


def test_zscore_ensemble_exports(serving_runs, tmp_path) -> None:
    run = _ensemble(serving_runs, "zscore")
    report = export_run(run, "torchscript", tmp_path)
    assert report.dynamic_batch  # both members take any batch, so the ensemble does too
    users = torch.arange(run.model.n_users)
    torch.testing.assert_close(ExportedModel.load(tmp_path).score(users), _scores(run, users), rtol=1e-5,
                               atol=1e-5)


def test_export_cli_writes_a_checked_artifact(serving_runs, tmp_path, capsys) -> None:
    out = tmp_path / "artifact"
    assert main(["export", str(serving_runs["lightweight_model"]), "--format", "torchscript", "--out", str(out),
                 "--check-users", "10"]) == 0
    printed = capsys.readouterr().out
    assert "max |score diff|" in printed and "over 10 users" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "torchscript" and manifest["model"] == "lightweight_model"
    assert manifest["check"]["max_score_diff"] <= 1e-5 and manifest["check"]["checked_users"] == 10


def test_unknown_format_is_a_one_line_error(student, tmp_path) -> None:
    with pytest.raises(DistillrecError, match="--format must be one of onnx, torchscript"):
        export_run(student, "tflite", tmp_path)
