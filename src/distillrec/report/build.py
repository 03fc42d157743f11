"""The pipeline's report: ``OUT/report.md`` and ``OUT/report.html`` from the finished stages' files.

Everything shown is read back from the run folders (nothing is recomputed), so a report rebuilt later shows the
same numbers. The report's own figures go to ``OUT/report_files/`` (written to a temporary folder and renamed
into place); Fisher and trajectory figures are linked (Markdown) or inlined (HTML) where the stages wrote them.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

import distillrec
from distillrec.evaluation.cost import machine_info
from distillrec.fisher.report import summary_text
from distillrec.io import read_json, write_text
from distillrec.pipeline.config import PipelineConfig
from distillrec.pipeline.run import load_results, stage_seconds
from distillrec.pipeline.stages import StageStore, install
from distillrec.report.plots import plot_ensemble_weights, plot_quality_latency, plot_training_curves
from distillrec.report.render import Code, Image, Section, Table, Text, render_html, render_markdown
from distillrec.report.tables import cell, effective_weights, entries, summary_rows, times
from distillrec.zoo import comparison_rows

FISHER_PLOTS = (("fisher_layers.png", "Fisher information per layer (share of each focus task's total)"),
                ("fisher_fields.png", "Fisher information per feature field"),
                ("fisher_heads.png", "Fisher information per attention head"),
                ("fisher_pruning.png", "How few groups hold most of the Fisher mass"))


def write_report(out: Path, config: PipelineConfig) -> Path:
    """Draw the figures, then write report.md and report.html atomically; returns the HTML path."""
    out = Path(out)
    results = load_results(out)
    rows = entries(results)
    ensemble_config = read_json(out / "ensemble" / "config.json")["model_config"]
    weights = effective_weights(ensemble_config)
    tmp = StageStore(out).temp_folder("report")
    plot_quality_latency(rows, tmp / "quality_latency.png")
    plot_training_curves(_training_logs(out, results["zoo"]), tmp / "training_curves.png")
    plot_ensemble_weights(weights, ensemble_config["fusion"], tmp / "ensemble_weights.png")
    files = install(tmp, out / "report_files")
    title = (f"distillrec pipeline: {config.data.name}, {config.protocol}, seed {config.seed} "
             f"({config.limits} limits)")
    sections = [_summary(results, config), _plots(files), _ensemble(results["ensemble"], weights, files),
                _fisher(out), _distillation(out, results["student"]), _full_table(rows), _run_info(out, config)]
    write_text(out / "report.md", render_markdown(title, sections, out))
    write_text(out / "report.html", render_html(title, sections))
    return out / "report.html"


def _training_logs(out: Path, zoo: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    logs = {}
    for run in zoo:
        path = out / "runs" / run["run"] / "train_log.jsonl"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        logs[run["model"]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return logs


def _summary(results: dict[str, Any], config: PipelineConfig) -> Section:
    headers, rows = summary_rows(results)
    student = results["student"]["distillation"]
    notes = (f"Test split of {config.protocol} on {config.data.name} (seed {config.seed}). Latency: one user, top-10 "
             "over all items, batch 1, p99 over the run's requests, each model timed when it was trained; the "
             "student's speed-up is against the teacher timed in the same run as the student. "
             f"Student: {config.distill.student}, pruning ratio {student['pruning_ratio']} in {student['steps']} "
             f"steps ({student['importance']} importance).")
    return Section("Comparison", [Table(headers, rows), Text(notes)])


def _plots(files: Path) -> Section:
    return Section("Quality against latency, and training", [
        Image(files / "quality_latency.png", "Test NDCG@10 against single-request p99 latency; ringed: the Pareto "
                                             "front (no other model is both faster and better)"),
        Image(files / "training_curves.png", "Valid metrics per epoch of each zoo run (train_log.jsonl)")])


def _ensemble(metrics: dict[str, Any], weights: list[dict[str, Any]], files: Path) -> Section:
    learned = metrics.get("learned") or {}
    how = ("weights learned on validation data (ranking: grid search on valid NDCG@10; rating: NNLS)"
           if learned else "weights given in the config, renormalised within each side")
    table = Table(["member", "task", "given weight", "ranking weight", "rating weight", "member test NDCG@10",
                   "member test RMSE"],
                  [[w["model"], w["task"], w["weight"], w["ranking_weight"], w["rating_weight"],
                    m["test"].get("ndcg@10"), m["test"].get("rmse")]
                   for w, m in zip(weights, metrics["members"], strict=True)])
    return Section("Ensemble teacher", [Text(f"Fusion: {metrics['fusion']}; {how}."), table,
                                        Image(files / "ensemble_weights.png", "Weights the ensemble applies")])


def _fisher(out: Path) -> Section:
    folder = out / "fisher"
    report = read_json(folder / "fisher_report.json")
    blocks: list = [Image(folder / name, caption) for name, caption in FISHER_PLOTS if (folder / name).is_file()]
    return Section("Fisher information of the teacher", [*blocks, Code(summary_text(report))])


def _distillation(out: Path, student: dict[str, Any]) -> Section:
    folder = out / "student"
    text = (folder / "trajectory.jsonl").read_text(encoding="utf-8")
    steps = [json.loads(line) for line in text.splitlines() if line.strip()]
    table = Table(["step", "params", "prunable params", "valid NDCG@10", "valid RMSE", "epochs"],
                  [[s["step"], s["params"], s["prunable_params"], s["valid_ndcg@10"], s["valid_rmse"], s["epochs"]]
                   for s in steps])
    summary = student["distillation"]
    text = (f"The student keeps {cell(summary['retained_ndcg@10'])} of the teacher's test NDCG@10 with a "
            f"{times(summary['latency_p99_speedup']) or '-'} lower p99 latency; largest relative |masked - shrunk| "
            f"difference after surgery {summary['max_masked_difference']:.1e}. The trajectory counts parameters; "
            "the comparison's params, like every run's metrics, also count buffers.")
    return Section("Distillation and pruning", [Image(folder / "trajectory.png", "Pruning trajectory"), table,
                                                Text(text)])


def _full_table(rows: list[dict[str, Any]]) -> Section:
    headers, table = comparison_rows(rows)
    return Section("All metrics (test split)", [Table(headers, table)])


def _run_info(out: Path, config: PipelineConfig) -> Section:
    versions = Table(["package", "version"], [["distillrec", distillrec.__version__], ["torch", torch.__version__],
                                               ["python", platform.python_version()]])
    machine = Table(["machine", "value"], [[k, v] for k, v in machine_info().items()])
    seconds = Table(["stage", "seconds (last run)"], [[s, v] for s, v in stage_seconds(out).items()
                                                          if s != "report"])
    return Section("Run", [Text(f"Seed {config.seed}; output folder {out}."), versions, machine, seconds,
                           Code(json.dumps(config.to_dict(), indent=2, default=str))])
