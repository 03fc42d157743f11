"""Report, plots and the ``distillrec fisher`` command on a briefly trained AutoInt run."""

from __future__ import annotations

import argparse
import json

import pytest
from safetensors import safe_open

from distillrec.cli import fisher as fisher_cli
from distillrec.ensemble.weighted import Ensemble
from distillrec.errors import DistillrecError
from distillrec.fisher.pipeline import FisherConfig, ensemble_folder, resolve_teacher, run_fisher
from distillrec.fisher.report import prune_curve, summary_text
from distillrec.runs import DataSpec, RunSpec, save_run, train_run
from distillrec.training.trainer import TrainConfig

SMALL = DataSpec(name="synthetic", synthetic={"n_users": 120, "n_items": 200, "n_interactions": 4000, "seed": 0})
AUTOINT = {"embed_dim": 4, "d_head": 2, "n_layers": 2, "hidden": (6,)}
PNGS = ("fisher_layers.png", "fisher_fields.png", "fisher_heads.png", "fisher_pruning.png")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "autoint"
    spec = RunSpec(model="autoint", data=SMALL, model_config=AUTOINT, train=TrainConfig(epochs=1, batch_size=512))
    train_run(spec, out=folder, progress=False)
    return folder


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    fisher_cli.add_parser(parser.add_subparsers())
    return fisher_cli.run(parser.parse_args(["fisher", *argv]))


def test_seed_command_on_a_run_writes_report_and_plots(teacher, tmp_path, capsys) -> None:
    out = tmp_path / "fisher"
    assert _cli("--teacher", str(teacher), "--target_layers", "attention,interaction,output", "--focus_tasks",
                "ranking,rating", "--max_samples", "96", "--batch-size", "64", "--out", str(out),
                "--no_progress") == 0
    printed = capsys.readouterr().out
    assert "[ranking]" in printed and "layers, most:" in printed and "90% of the Fisher mass" in printed
    report = json.loads((out / "fisher_report.json").read_text())
    assert report["estimator"] == "exact" and report["teacher"]["model"] == "autoint"
    assert json.loads((out / "fisher_config.json").read_text())["focus_tasks"] == ["ranking", "rating"]
    for task in ("ranking", "rating"):
        body = report["tasks"][task]
        assert body["n_samples"] == 96
        assert sum(r["share"] for r in body["layers"]) == pytest.approx(1.0)
        assert {r["layer"] for r in body["layers"]} == {"layers.0", "layers.1", "head"}
        assert len(body["fields"]) == 8 and sum(r["share"] for r in body["fields"]) == pytest.approx(1.0)
        assert body["groups"]["attention_head/layers.0"]["kind"] == "attention_head"
        assert 0 < body["pruning"]["attention_head"]["fraction_for_mass"] <= 1
    assert set(report["comparison"]["spearman"]) == {"ranking~rating"}
    for name in PNGS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with safe_open(str(out / "fisher.safetensors"), "pt") as f:
        assert f.metadata()["estimator"] == "exact"
        assert f.get_tensor("ranking/param/layers.0.W_q").shape == (4, 4)
        assert f.get_tensor("ranking/group/attention_head/layers.1").shape == (2,)


def test_batch_estimator_is_labelled_everywhere(teacher, tmp_path, capsys) -> None:
    from distillrec.runs import load_run

    out = tmp_path / "batch"
    report = run_fisher(load_run(teacher), FisherConfig(focus_tasks=("ensemble",), estimator="batch",
                                                        max_samples=64, batch_size=32), out, progress=False)
    assert "BATCH APPROXIMATION" in capsys.readouterr().out
    assert report["estimator"] == "batch" and "APPROXIMATION" in report["estimator_note"]
    with safe_open(str(out / "fisher.safetensors"), "pt") as f:
        assert f.metadata()["estimator"] == "batch" and "APPROXIMATION" in f.metadata()["estimator_note"]
    assert "BATCH APPROXIMATION" in summary_text(report)


@pytest.mark.parametrize("argv, message", [
    (("--focus_tasks", "ranking,sorting"), "unknown task 'sorting'"),
    (("--focus_tasks", "ranking,ranking"), "give each task once"),
    (("--batch_size", "0"), "must be positive"),
    (("--teacher", "/nonexistent/run"), "not a finished run folder"),
    (("--teacher_type", "nosuch"), "unknown model 'nosuch'"),
])
def test_bad_flags_are_one_line_errors(argv, message, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DISTILLREC_RUNS", str(tmp_path))
    with pytest.raises(DistillrecError, match=message) as info:
        _cli(*argv, "--no_progress")
    assert "\n" not in str(info.value)


def test_unknown_target_layer_is_a_one_line_error(teacher, tmp_path) -> None:
    with pytest.raises(DistillrecError, match="'cin' matches no layer") as info:
        _cli("--teacher", str(teacher), "--target_layers", "cin", "--out", str(tmp_path), "--no_progress")
    assert "\n" not in str(info.value)


def test_another_ensemble_in_the_default_folder_is_not_reused(teacher, tmp_path) -> None:
    from distillrec.runs import load_run

    member = load_run(teacher)
    ensemble = Ensemble.from_members([member.model], ["balance"], [1.0])
    folder = ensemble_folder(SMALL, "p-rank", 0, None, tmp_path)
    save_run(member.__class__(RunSpec(model="ensemble", data=SMALL), ensemble, {"test": {}}, member.user_ids,
                              member.item_ids, None, member.seen), folder)
    with pytest.raises(DistillrecError, match="holds another ensemble"):
        resolve_teacher("ensemble", None, SMALL, root=tmp_path)


def test_prune_curve_counts_groups_for_the_mass() -> None:
    curve = prune_curve([8.0, 1.0, 0.5, 0.5])
    assert curve["groups_for_mass"] == 2 and curve["fraction_for_mass"] == 0.5
    assert curve["curve"][0] == [0.0, 0.0] and curve["curve"][-1] == [1.0, 1.0]
    assert prune_curve([0.0, 0.0])["fraction_for_mass"] is None


def test_default_ensemble_is_current_only_with_the_rating_member_trained_for_ratings(tmp_path) -> None:
    from types import SimpleNamespace

    from distillrec.ensemble.build import member_spec
    from distillrec.fisher.pipeline import _members_current
    from distillrec.store import run_folder
    from distillrec.zoo import zoo_spec

    models, tasks = ("svd", "xdeepfm", "autoint"), ("ranking", "rating", "balance")
    zoo = [run_folder(zoo_spec(m, SMALL, "p-rank", 0), tmp_path) for m in models]
    trained = [run_folder(member_spec(zoo_spec(m, SMALL, "p-rank", 0), t), tmp_path)
               for m, t in zip(models, tasks, strict=True)]
    assert trained[0] == zoo[0] and trained[2] == zoo[2] and trained[1] != zoo[1]

    def built_from(folders):
        config = SimpleNamespace(models=models, tasks=tasks, member_runs=[str(f) for f in folders])
        return SimpleNamespace(model=SimpleNamespace(config=config))

    assert _members_current(built_from(trained), SMALL, "p-rank", 0, None, tmp_path)
    assert not _members_current(built_from(zoo), SMALL, "p-rank", 0, None, tmp_path)
