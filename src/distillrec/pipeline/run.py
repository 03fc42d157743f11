"""``run_pipeline``: the seed's whole plan (zoo, ensemble, Fisher, distillation, report) as cached stages.

Each stage calls the same library function as its separate command, with the same specs: ``zoo_spec`` +
``get_or_train`` for the zoo (the runs store is ``OUT/runs``), ``build_ensemble`` for the teacher,
``resolve_teacher`` + ``run_fisher`` and ``distill`` on the teacher's saved run folder. Without caps
(``limits: full``, the default off the synthetic set) the numbers are those of ``distillrec zoo``,
``ensemble``, ``fisher`` and ``distill`` with the same seed.

Layout of ``OUT``: ``runs/`` (one folder per zoo model and per rating-only ensemble member), ``zoo/`` (zoo.json,
zoo.md), ``ensemble/`` (the teacher's run folder), ``fisher/`` (fisher_report.json and plots), ``student/`` (the
distilled student's run folder with trajectory.jsonl/png), ``report_files/``, ``report.md``, ``report.html``,
``pipeline_config.json`` and ``.stages/`` (the finished-markers, see :mod:`distillrec.pipeline.stages`).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import distillrec
from distillrec.distillation.prune_distill import distill
from distillrec.ensemble.build import build_ensemble
from distillrec.errors import DistillrecError
from distillrec.fisher.pipeline import resolve_teacher, run_fisher
from distillrec.io import read_json, write_json, write_text
from distillrec.pipeline.config import STAGES, PipelineConfig
from distillrec.pipeline.stages import StageStore, file_digest, install, stage_key
from distillrec.report.tables import cell, times
from distillrec.runs import Run, RunSpec
from distillrec.store import get_or_train, resolved_spec, run_folder
from distillrec.zoo import comparison_rows, markdown, zoo_spec

#: which stages' outputs each stage reads (``--force`` redoes a stage and everything downstream of it)
DEPENDS: dict[str, tuple[str, ...]] = {"zoo": (), "ensemble": ("zoo",), "fisher": ("ensemble",),
                                       "distill": ("ensemble",), "report": ("zoo", "ensemble", "fisher", "distill")}
RUN_FILES = ("config.json", "model.safetensors")  # what a trained run computes from


@dataclass
class Context:
    """What the stages share: the config, the output folder and the digests of finished stages."""

    config: PipelineConfig
    out: Path
    progress: bool = True
    forced: frozenset[str] = frozenset()
    digests: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.out / "runs"

    def specs(self) -> dict[str, RunSpec]:
        """Each zoo model's run spec: the zoo's, with epochs capped when ``zoo.max_epochs`` asks."""
        c = self.config
        specs = {}
        for model in c.zoo_models():
            spec = zoo_spec(model, c.data, c.protocol, c.seed, c.fold, c.device)
            cap = c.zoo.epoch_cap(model)
            if cap is not None and spec.train.epochs > cap:
                spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=cap))
            specs[model] = spec
        return specs

    def teacher(self) -> Run:
        c = self.config
        return resolve_teacher("ensemble", str(self.out / "ensemble"), c.data, c.protocol, c.seed, c.fold,
                               self.root, c.device, progress=self.progress)


@dataclass(frozen=True)
class Stage:
    """One cached step: what it depends on (settings, inputs), what it leaves (outputs) and how to make it."""

    name: str
    settings: Callable[[Context], Any]
    inputs: Callable[[Context], dict[str, str]]
    outputs: Callable[[Context], list[Path]]
    run: Callable[[Context], str]
    digest: Callable[[Context], Any]


@contextmanager
def staged(ctx: Context, stage: str, final: Path) -> Iterator[Path]:
    """A temporary folder for the stage's outputs, renamed onto ``final`` only when the stage succeeded."""
    tmp = StageStore(ctx.out).temp_folder(stage)
    try:
        yield tmp
        install(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_digest(folder: Path) -> str:
    return file_digest(folder / name for name in RUN_FILES)


# --- zoo -------------------------------------------------------------------------------------------------------

def _zoo(ctx: Context) -> str:
    dataset = ctx.config.data.load()
    results = []
    for model, spec in tqdm(ctx.specs().items(), desc="zoo", disable=not ctx.progress):
        if "zoo" in ctx.forced:
            shutil.rmtree(run_folder(spec, ctx.root), ignore_errors=True)
        run, reused = get_or_train(spec, ctx.root, dataset=dataset, progress=ctx.progress)
        results.append({**run.metrics, "run": run.folder.name, "reused": reused, "model": model})
    headers, rows = comparison_rows(results)
    with staged(ctx, "zoo", ctx.out / "zoo") as tmp:
        write_json(tmp / "zoo.json", {"headers": headers, "rows": rows, "runs": results})
        write_text(tmp / "zoo.md", markdown(headers, rows) + "\n")
    reused = sum(r["reused"] for r in results)
    return f"{len(results)} models ({len(results) - reused} trained, {reused} reused from {ctx.root})"


def _zoo_outputs(ctx: Context) -> list[Path]:
    return [ctx.out / "zoo" / "zoo.json", *(run_folder(s, ctx.root) / "metrics.json" for s in ctx.specs().values())]


def _zoo_digest(ctx: Context) -> dict[str, str]:
    return {model: _run_digest(run_folder(spec, ctx.root)) for model, spec in ctx.specs().items()}


# --- ensemble --------------------------------------------------------------------------------------------------

def _ensemble(ctx: Context) -> str:
    c = ctx.config
    specs = ctx.specs()
    with staged(ctx, "ensemble", ctx.out / "ensemble") as tmp:
        run = build_ensemble(c.ensemble.members(), c.data, c.protocol, c.seed, c.fold, c.ensemble.fusion, ctx.root,
                             tmp, progress=ctx.progress, device=c.device,
                             specs=[specs[m] for m in c.ensemble.algorithms])
    test = run.metrics["test"]
    return f"{'+'.join(c.ensemble.algorithms)} ({run.model.config.fusion} fusion): test NDCG@10 " \
           f"{test['ndcg@10']:.4f}, RMSE {test.get('rmse', float('nan')):.4f}"


def _ensemble_settings(ctx: Context) -> dict[str, Any]:
    c = ctx.config
    return {"ensemble": dataclasses.asdict(c.ensemble), "data": dataclasses.asdict(c.data), "protocol": c.protocol,
            "fold": c.fold, "seed": c.seed, "device": c.device}


def _ensemble_inputs(ctx: Context) -> dict[str, str]:
    return {f"zoo.{m}": ctx.digests["zoo"][m] for m in ctx.config.ensemble.algorithms}


# --- fisher and distillation -----------------------------------------------------------------------------------

def _fisher(ctx: Context) -> str:
    teacher = ctx.teacher()
    with staged(ctx, "fisher", ctx.out / "fisher") as tmp:
        report = run_fisher(teacher, ctx.config.fisher, tmp, progress=ctx.progress, echo=False)
    seconds = report.get("timing", {}).get("fisher_seconds")
    samples = next(iter(report["tasks"].values()))["n_samples"]
    return f"{report.get('selected_parameters')} parameter tensors over {samples} samples " \
           f"({', '.join(report['tasks'])}; {seconds} s)"


def _distill(ctx: Context) -> str:
    teacher = ctx.teacher()
    with staged(ctx, "distill", ctx.out / "student") as tmp:
        student = distill(teacher, ctx.config.distill, tmp, progress=ctx.progress)
    summary = student.metrics["distillation"]
    return f"{student.metrics['cost']['params']:,} parameters, test NDCG@10 {student.metrics['test']['ndcg@10']:.4f} " \
           f"(keeps {cell(summary['retained_ndcg@10'])} of the teacher's), p99 " \
           f"{times(summary['latency_p99_speedup']) or '-'} lower"


def _teacher_input(ctx: Context) -> dict[str, str]:
    return {"ensemble": ctx.digests["ensemble"]}


# --- report ----------------------------------------------------------------------------------------------------

def _report(ctx: Context) -> str:
    from distillrec.report.build import write_report  # matplotlib loads only when the report is built

    return str(write_report(ctx.out, ctx.config))


def _report_inputs(ctx: Context) -> dict[str, str]:
    zoo = ctx.digests["zoo"]
    return {**{f"zoo.{m}": d for m, d in zoo.items()}, **{s: ctx.digests[s] for s in ("ensemble", "fisher", "distill")}}


STAGE_DEFS = (
    Stage("zoo", lambda ctx: {m: resolved_spec(s) for m, s in ctx.specs().items()}, lambda ctx: {}, _zoo_outputs,
          _zoo, _zoo_digest),
    Stage("ensemble", _ensemble_settings, _ensemble_inputs, lambda ctx: [ctx.out / "ensemble" / "metrics.json"],
          _ensemble, lambda ctx: _run_digest(ctx.out / "ensemble")),
    Stage("fisher", lambda ctx: dataclasses.asdict(ctx.config.fisher), _teacher_input,
          lambda ctx: [ctx.out / "fisher" / "fisher_report.json"], _fisher,
          lambda ctx: file_digest([ctx.out / "fisher" / "fisher.safetensors"])),
    Stage("distill", lambda ctx: dataclasses.asdict(ctx.config.distill), _teacher_input,
          lambda ctx: [ctx.out / "student" / "metrics.json"], _distill, lambda ctx: _run_digest(ctx.out / "student")),
    Stage("report", lambda ctx: {"config": ctx.config.to_dict(), "version": distillrec.__version__}, _report_inputs,
          lambda ctx: [ctx.out / "report.html", ctx.out / "report.md"], _report,
          lambda ctx: file_digest([ctx.out / "report.md"])),
)


def downstream(stages: Iterable[str]) -> frozenset[str]:
    """The given stages and every stage that reads their outputs, directly or not."""
    chosen = set(stages)
    unknown = chosen - set(STAGES)
    if unknown:
        raise DistillrecError(f"--force: unknown stage {sorted(unknown)[0]!r}; stages: {', '.join(STAGES)}")
    changed = True
    while changed:
        grown = chosen | {s for s, deps in DEPENDS.items() if chosen.intersection(deps)}
        changed, chosen = grown != chosen, grown
    return frozenset(chosen)


@dataclass
class StageOutcome:
    name: str
    status: str  # "done" or "skipped"
    seconds: float
    detail: str = ""


def run_pipeline(config: PipelineConfig, out: Path, force: Iterable[str] = (), progress: bool = True,
                 echo: Callable[[str], None] = print) -> list[StageOutcome]:
    """Run (or skip, when unchanged) every stage in order; prints one line per stage and returns the outcomes."""
    ctx = Context(config, Path(out), progress, downstream(force))
    store = StageStore(ctx.out)
    store.clean_temp()
    write_json(ctx.out / "pipeline_config.json", config.to_dict())
    outcomes = []
    for index, stage in enumerate(STAGE_DEFS, 1):
        start = time.perf_counter()
        label = f"[{index}/{len(STAGE_DEFS)}] {stage.name:<8}"
        inputs = stage.inputs(ctx)
        key = stage_key(stage.name, stage.settings(ctx), inputs)
        marker = None if stage.name in ctx.forced else store.finished(stage.name, key, stage.outputs(ctx))
        if marker is not None:
            ctx.digests[stage.name] = marker["digest"]
            outcomes.append(StageOutcome(stage.name, "skipped", time.perf_counter() - start))
            echo(f"{label} unchanged, skipped ({outcomes[-1].seconds:.1f} s)")
            continue
        echo(f"{label} running")
        store.start(stage.name)
        detail = stage.run(ctx)
        ctx.digests[stage.name] = stage.digest(ctx)
        seconds = time.perf_counter() - start
        store.finish(stage.name, key, inputs, ctx.digests[stage.name], seconds)
        outcomes.append(StageOutcome(stage.name, "done", seconds, detail))
        echo(f"{label} done in {seconds:.1f} s: {detail}")
    return outcomes


def stage_seconds(out: Path) -> dict[str, float | None]:
    """Seconds each stage took when it last ran (from its marker)."""
    store = StageStore(Path(out))
    return {s: (store.marker(s) or {}).get("seconds") for s in STAGES}


def load_results(out: Path) -> dict[str, Any]:
    """The finished pipeline's metrics: zoo runs, ensemble and student (what the summary and report show)."""
    out = Path(out)
    return {"zoo": read_json(out / "zoo" / "zoo.json")["runs"],
            "ensemble": read_json(out / "ensemble" / "metrics.json"),
            "student": read_json(out / "student" / "metrics.json")}
