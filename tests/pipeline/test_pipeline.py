"""``distillrec pipeline`` end to end on a tiny synthetic config: stages, caching, resumption, report, errors."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distillrec.io import read_json
from distillrec.pipeline.config import STAGES

ZOO = ("svd", "xdeepfm", "autoint", "pop")


def stage_lines(printed: str) -> dict[str, str]:
    """Stage -> its last progress line ('done in ...' or 'unchanged, skipped ...')."""
    lines = {}
    for line in printed.splitlines():
        match = re.match(r"\[\d/5\] (\w+)\s+(.*)", line)
        if match and not match.group(2).startswith("running"):
            lines[match.group(1)] = match.group(2)
    return lines


def statuses(printed: str) -> dict[str, str]:
    return {s: "done" if line.startswith("done") else "skipped" for s, line in stage_lines(printed).items()}


def run_mtimes(out: Path) -> dict[str, float]:
    """Every trained run in the store: the zoo's, and the ensemble's rating member (trained for ratings only)."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}


def test_every_stage_runs_and_the_summary_is_printed(finished) -> None:
    out, printed = finished
    assert statuses(printed) == dict.fromkeys(STAGES, "done")
    assert all(re.match(r"done in \d+\.\d s", line) for line in stage_lines(printed).values())
    table = printed[printed.index("test split:"):]
    rows = {line.split()[0]: line for line in table.splitlines()[3:] if line and not line.startswith("pipeline")}
    assert list(rows) == [*ZOO, "ensemble", "student"]
    student = read_json(out / "student" / "metrics.json")
    assert f"{student['test']['ndcg@10']:.4f}" in rows["student"]
    assert f"{student['distillation']['retained_ndcg@10']:.4f}" in rows["student"]
    assert f"{student['distillation']['latency_p99_speedup']:.2f}x" in rows["student"]
    assert printed.rstrip().endswith(f"report: {out / 'report.html'} (and {out / 'report.md'})")


def test_stages_use_the_library_layout_and_the_resolved_config(finished) -> None:
    out, _ = finished
    config = read_json(out / "pipeline_config.json")
    assert config["limits"] == "quick" and config["zoo"]["max_epochs"] == 2  # the file beats the preset
    assert config["ensemble"]["algorithms"] == ["svd", "xdeepfm", "autoint"]
    assert config["distill"]["pruning_ratio"] == 0.5 and config["distill"]["seed"] == config["fisher"]["seed"] == 0
    runs = {read_json(p / "config.json")["spec"]["model"]: read_json(p / "config.json")["spec"]
            for p in (out / "runs").iterdir()}
    assert sorted(runs) == sorted(ZOO)
    assert all(spec["train"]["epochs"] == 2 for spec in runs.values())
    ensemble = read_json(out / "ensemble" / "metrics.json")
    assert [m["model"] for m in ensemble["members"]] == ["svd", "xdeepfm", "autoint"]
    assert all(Path(m["run"]).parent == out / "runs" for m in ensemble["members"])
    student = read_json(out / "student" / "metrics.json")
    assert student["teacher"]["test"] == ensemble["test"] and student["distillation"]["steps"] == 2
    fisher = read_json(out / "fisher" / "fisher_report.json")
    assert set(fisher["tasks"]) == {"ranking", "rating"} and fisher["tasks"]["ranking"]["n_samples"] == 256


def test_report_embeds_every_image(finished) -> None:
    out, _ = finished
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    images = [out / "report_files" / n for n in ("quality_latency.png", "training_curves.png", "ensemble_weights.png")]
    images += [*sorted((out / "fisher").glob("*.png")), out / "student" / "trajectory.png"]
    assert len(sources) == len(images) >= 7
    assert all(s.startswith("data:image/png;base64,") for s in sources)  # nothing to fetch
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert embedded == {p.read_bytes() for p in images}
    assert "http://" not in page and "https://" not in page
    for heading in ("Comparison", "Ensemble teacher", "Fisher information", "Distillation and pruning", "Run"):
        assert f"<h2>{heading}" in page
    markdown = (out / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert len(links) == len(images)
    assert all(not Path(link).is_absolute() and (out / link).is_file() for link in links)
    assert {(out / link).resolve() for link in links} == {p.resolve() for p in images}


def test_rerun_skips_every_stage(finished, tiny_config, cli) -> None:
    out, _ = finished
    before = {p: p.stat().st_mtime_ns for p in [*out.glob("*/metrics.json"), out / "report.html"]}
    start = time.perf_counter()
    code, printed = cli("pipeline", "--config", str(tiny_config), "--out", str(out), "--no-progress")
    assert code == 0
    assert statuses(printed) == dict.fromkeys(STAGES, "skipped")
    assert time.perf_counter() - start < 10
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_a_distill_setting_redoes_only_distill_and_report(finished_copy, tiny_config, cli) -> None:
    out = finished_copy
    zoo, ensemble = run_mtimes(out), (out / "ensemble" / "metrics.json").stat().st_mtime_ns
    code, printed = cli("pipeline", "--config", str(tiny_config), "--out", str(out), "--no-progress",
                            "--set", "distill.pruning_ratio=0.3")
    assert code == 0
    assert statuses(printed) == {"zoo": "skipped", "ensemble": "skipped", "fisher": "skipped", "distill": "done",
                                 "report": "done"}
    assert read_json(out / "student" / "metrics.json")["distillation"]["pruning_ratio"] == 0.3
    assert run_mtimes(out) == zoo and (out / "ensemble" / "metrics.json").stat().st_mtime_ns == ensemble


def test_force_redoes_a_stage_and_what_depends_on_it(finished_copy, tiny_config, cli) -> None:
    out = finished_copy
    student = (out / "student" / "metrics.json").stat().st_mtime_ns
    code, printed = cli("pipeline", "--config", str(tiny_config), "--out", str(out), "--no-progress",
                            "--force", "fisher")
    assert code == 0
    assert statuses(printed) == {"zoo": "skipped", "ensemble": "skipped", "fisher": "done", "distill": "skipped",
                                 "report": "done"}
    assert (out / "student" / "metrics.json").stat().st_mtime_ns == student


def test_killed_during_distillation_resumes_with_the_same_numbers(finished, tiny_config, tmp_path, cli) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "distillrec.cli.main", "pipeline", "--config", str(tiny_config), "--out",
               str(out), "--threads", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".tmp-distill-*")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)  # as hard as a kill gets: no cleanup runs
    finally:
        process.wait()
    assert not (out / "student").exists(), "the kill came after the distillation finished"
    assert (out / ".stages" / "fisher.json").is_file() and not (out / ".stages" / "distill.json").exists()
    zoo = run_mtimes(out)
    code, printed = cli("pipeline", "--config", str(tiny_config), "--out", str(out), "--no-progress")
    assert code == 0
    assert statuses(printed) == {"zoo": "skipped", "ensemble": "skipped", "fisher": "skipped", "distill": "done",
                                 "report": "done"}
    assert run_mtimes(out) == zoo and len(zoo) == len(ZOO) + 1  # nothing was retrained
    assert not list(out.glob(".tmp-*"))
    reference = finished[0]
    for part in ("ensemble", "student"):
        resumed, uninterrupted = (read_json(o / part / "metrics.json") for o in (out, reference))
        assert resumed["test"] == uninterrupted["test"] and resumed["valid"] == uninterrupted["valid"]


@pytest.mark.parametrize(("setting", "message"), [
    ("distill.nope=1", "unknown pipeline setting 'distill.nope'; distill has: student, student_config"),
    ("nope=1", "unknown pipeline setting 'nope'; the top level has: data, protocol"),
    ("distill.pruning_ratio=lots", "distill.pruning_ratio: expected float, got 'lots'"),
    ("fisher.seed=3", "fisher.seed: set the top-level 'seed'"),
    ("ensemble.weights=0.5,0.5", "--weights has 2 entries but --algorithms has 3"),
])
def test_bad_settings_are_one_line_errors(setting, message, tmp_path, capsys, cli) -> None:
    out = tmp_path / "out"
    code, printed = cli("pipeline", "--out", str(out), "--set", setting, "--no-progress")
    err = capsys.readouterr().err
    assert code == 2 and printed == ""
    assert err.count("\n") == 1 and err.startswith("distillrec: error: ") and message in err
    assert not out.exists()  # nothing is trained or written before the config is valid


def test_separate_commands_give_the_pipelines_numbers(finished, tmp_path, cli) -> None:
    """``distill`` and ``fisher`` run on the pipeline's teacher with the same settings give the same numbers."""
    out, _ = finished
    code, _ = cli("distill", "--teacher", str(out / "ensemble"), "--epochs", "2", "--recover_epochs",
                      "1", "--pruning_steps", "2", "--fisher_samples", "256", "--out", str(tmp_path / "student"),
                      "--no-progress")
    assert code == 0
    separate, pipeline = (read_json(p / "metrics.json") for p in (tmp_path / "student", out / "student"))
    assert separate["test"] == pipeline["test"] and separate["valid"] == pipeline["valid"]
    code, _ = cli("fisher", "--teacher", str(out / "ensemble"), "--max_samples", "256", "--out",
                      str(tmp_path / "fisher"), "--no-progress")
    assert code == 0
    separate, pipeline = (json.loads((p / "fisher_report.json").read_text()) for p in (tmp_path / "fisher",
                                                                                       out / "fisher"))
    assert separate["tasks"] == pipeline["tasks"]
