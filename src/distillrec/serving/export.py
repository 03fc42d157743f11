"""``distillrec export``: write a run's model as a standalone ONNX or TorchScript artifact, then prove it.

An export folder holds

* ``score.onnx`` + ``rating.onnx`` (ONNX: one entry point per graph) or ``model.pt`` (TorchScript: ``forward`` and
  ``predict_rating`` methods of one module): ``users int64 [B] -> scores float32 [B, n_items]`` and
  ``(users int64 [N], items int64 [N]) -> ratings float32 [N]``, over contiguous indices;
* ``ids.json`` (original user and item ids, titles: index ``i`` is ``items[i]``), copied from the run;
* ``manifest.json``, written last (so its presence marks a checked artifact): format, files, shapes, whether the
  score graph takes any batch or exactly one user (see ``serving.graphs``), and the check's result.

The check is part of the export, not an option: the artifact is loaded back with the runtime that will serve it
(ONNX Runtime, ``torch.jit.load``) and its scores and ratings must equal the PyTorch model's within
``TOLERANCE`` (absolute and relative) on spread-out users and seeded random pairs; otherwise the files are removed
and the export fails with one line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import distillrec
from distillrec.errors import DistillrecError
from distillrec.io import read_json, write_json
from distillrec.models.base import Recommender
from distillrec.runs import Run
from distillrec.serving.graphs import RatingGraph, ScoringGraph, build_graph

FORMATS = ("onnx", "torchscript")
FILES = {"onnx": ("score.onnx", "rating.onnx"), "torchscript": ("model.pt",)}
TOLERANCE = 1e-5
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExportReport:
    """What ``export_run`` wrote and how closely the artifact reproduces the model."""

    folder: str
    format: str
    model: str
    files: tuple[str, ...]
    dynamic_batch: bool
    checked_users: int
    checked_pairs: int
    max_score_diff: float
    max_rating_diff: float
    tolerance: float = TOLERANCE

    def summary(self) -> str:
        batch = "any batch of users" if self.dynamic_batch else "one user per call"
        return (f"exported {self.model} as {self.format} to {self.folder} ({', '.join(self.files)}; {batch}); "
                f"check: max |score diff| {self.max_score_diff:.2e} over {self.checked_users} users, "
                f"max |rating diff| {self.max_rating_diff:.2e} over {self.checked_pairs} pairs "
                f"(tolerance {self.tolerance:g})")


def export_run(run: Run, fmt: str, out: Path, check_users: int = 32, check_pairs: int = 256) -> ExportReport:
    """Export ``run.model`` to ``out`` in ``fmt`` and check it against the PyTorch model; one-line errors."""
    if fmt not in FORMATS:
        raise DistillrecError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if check_users < 1 or check_pairs < 1:
        raise DistillrecError(f"--check-users and --check-pairs must be at least 1, got {check_users}, {check_pairs}")
    if fmt == "onnx":
        _require_onnx()
    out = Path(out)
    model = run.model
    graph = build_graph(model, fmt)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an old manifest must not vouch for new files
    written = [out / name for name in FILES[fmt]]
    try:
        (_write_onnx if fmt == "onnx" else _write_torchscript)(graph, written, model.model_name)
        exported = ExportedModel(out, fmt, graph.dynamic_batch)
        users, pair_users, items = _check_inputs(model.n_users, model.n_items, check_users, check_pairs)
        score_diff = _max_diff(exported.score(users), _reference(model, model.score, users), "scores", model, fmt)
        if graph.dynamic_batch:  # traced at a batch of two: a single user must work as well
            _max_diff(exported.score(users[:1]), _reference(model, model.score, users[:1]), "scores", model, fmt)
        rating_diff = _max_diff(exported.predict_rating(pair_users, items),
                                _reference(model, model.predict_rating, pair_users, items), "ratings", model, fmt)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    report = ExportReport(str(out), fmt, model.model_name, tuple(FILES[fmt]), graph.dynamic_batch, len(users),
                          len(items), score_diff, rating_diff)
    write_json(out / "ids.json", {"users": run.user_ids, "items": run.item_ids, "titles": run.titles})
    write_json(out / MANIFEST, _manifest(run, report))
    return report


class ExportedModel:
    """An export folder loaded with its runtime: ``score`` and ``predict_rating`` on torch tensors (CPU).

    A graph of one user per call is looped over the batch, so callers never see the difference.
    """

    def __init__(self, folder: Path, fmt: str, dynamic_batch: bool) -> None:
        self.folder, self.format, self.dynamic_batch = Path(folder), fmt, dynamic_batch
        if fmt == "onnx":
            self._score_session = _onnx_session(self.folder / "score.onnx")
            self._rating_session = _onnx_session(self.folder / "rating.onnx")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated from torch 2.10 on
                self._module = torch.jit.load(str(self.folder / "model.pt"), map_location="cpu")

    @classmethod
    def load(cls, folder: Path) -> ExportedModel:
        """Open a checked export folder (one with ``manifest.json``)."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise DistillrecError(f"{folder}: not a checked export folder (no {MANIFEST})")
        manifest = read_json(path)
        return cls(Path(folder), manifest["format"], manifest["score"]["batch"] == "any")

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """int64 ``[B]`` -> float32 ``[B, n_items]``."""
        if not self.dynamic_batch and len(users) != 1:
            return torch.cat([self.score(users[i:i + 1]) for i in range(len(users))])
        if self.format == "onnx":
            return torch.from_numpy(self._score_session.run(None, {"users": users.cpu().numpy()})[0])
        with torch.inference_mode():
            return self._module(users.cpu())

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """int64 ``[N]``, int64 ``[N]`` -> float32 ``[N]``."""
        if self.format == "onnx":
            feed = {"users": users.cpu().numpy(), "items": items.cpu().numpy()}
            return torch.from_numpy(self._rating_session.run(None, feed)[0])
        with torch.inference_mode():
            return self._module.predict_rating(users.cpu(), items.cpu())


def _write_onnx(graph: ScoringGraph, paths: list[Path], name: str) -> None:
    """Two dynamo exports; constants stay inside each file (``external_data=False``) so a file stands alone."""
    users, pairs = _examples(graph)
    batch = {"users": {0: torch.export.Dim("batch")}} if graph.dynamic_batch else None
    n_pairs = torch.export.Dim("pairs")
    jobs = [(graph, (users,), ["users"], ["scores"], batch),
            (RatingGraph(graph).eval(), pairs, ["users", "items"], ["ratings"],
             {"users": {0: n_pairs}, "items": {0: n_pairs}})]
    for path, (module, args, inputs, outputs, dynamic) in zip(paths, jobs, strict=True):
        with _exporting(name, "onnx"):
            program = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                        dynamic_shapes=dynamic, external_data=False)
            program.save(str(path), external_data=False)


def _write_torchscript(graph: ScoringGraph, paths: list[Path], name: str) -> None:
    """One traced module with both methods (traces record shapes symbolically, so batch sizes generalise)."""
    users, pairs = _examples(graph)
    with _exporting(name, "torchscript"):
        traced = torch.jit.trace_module(graph, {"forward": (users,), "predict_rating": pairs}, check_trace=False)
        traced.save(str(paths[0]))


def _examples(graph: ScoringGraph) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Example inputs: two users for a batch-generic graph (exporters specialise sizes 0 and 1), else one."""
    model = graph.model
    n = 2 if graph.dynamic_batch else 1
    users = torch.arange(n) % model.n_users
    pairs = (torch.arange(3) % model.n_users, torch.arange(3) % model.n_items)
    return users, pairs


@contextlib.contextmanager
def _exporting(name: str, fmt: str) -> Iterator[None]:
    """Quiet the exporters' progress output, and turn their failures into one line naming the model.

    Autograd stays on while tracing: inference-only shortcuts keyed on ``len()`` (AutoInt's blockwise attention
    under ``no_grad``) would otherwise pin the number of pairs to the example's.
    """
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.enable_grad():
            warnings.simplefilter("ignore")
            yield
    except DistillrecError:
        raise
    except Exception as exc:
        raise DistillrecError(f"{name} cannot be exported to {fmt}: {_root_cause(exc)}") from exc
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's type and first line: the exporters wrap the real reason in long generic text."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"[:300]


def _require_onnx() -> None:
    try:  # the serve extra is optional: the rest of the library works without it
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise DistillrecError(f"ONNX export needs the serve extra: pip install -e '.[serve]' ({exc})") from None


def _onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _check_inputs(n_users: int, n_items: int, n_check_users: int,
                  n_pairs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Users spread over the id range (first and last included); pairs drawn with a fixed seed."""
    users = torch.linspace(0, n_users - 1, max(1, min(n_check_users, n_users))).round().long().unique()
    generator = torch.Generator().manual_seed(0)
    pair_users = torch.randint(n_users, (n_pairs,), generator=generator)
    items = torch.randint(n_items, (n_pairs,), generator=generator)
    return users, pair_users, items


def _reference(model: Recommender, fn: Any, *args: torch.Tensor) -> torch.Tensor:
    """The PyTorch model's output on its own device, back on the CPU."""
    device = next(iter(model.buffers()), next(iter(model.parameters()), torch.zeros(()))).device
    with torch.inference_mode():
        return fn(*(a.to(device) for a in args)).float().cpu()


def _max_diff(got: torch.Tensor, want: torch.Tensor, what: str, model: Recommender, fmt: str) -> float:
    """Largest absolute difference; a one-line error when any entry is outside the tolerance."""
    if got.shape != want.shape:
        raise DistillrecError(f"{model.model_name}: exported {fmt} {what} have shape {tuple(got.shape)}, "
                              f"expected {tuple(want.shape)}")
    got = got.float()
    diff = (got - want).abs()
    close = torch.isclose(got, want, rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True)
    if not bool(close.all()):
        raise DistillrecError(f"{model.model_name}: exported {fmt} {what} differ from the PyTorch model's by up to "
                              f"{float(diff[~close].max()):.3g} (tolerance {TOLERANCE:g}); the artifact was removed")
    return float(diff.nan_to_num(0.0).max()) if diff.numel() else 0.0


def _manifest(run: Run, report: ExportReport) -> dict[str, Any]:
    model = run.model
    batch = "any" if report.dynamic_batch else 1
    if report.format == "onnx":
        score = {"file": "score.onnx", "inputs": {"users": "int64 [B]"}, "outputs": {"scores": "float32 [B, I]"}}
        rating = {"file": "rating.onnx", "inputs": {"users": "int64 [N]", "items": "int64 [N]"},
                  "outputs": {"ratings": "float32 [N]"}}
    else:
        score = {"file": "model.pt", "method": "forward", "inputs": {"users": "int64 [B]"},
                 "outputs": {"scores": "float32 [B, I]"}}
        rating = {"file": "model.pt", "method": "predict_rating", "inputs": {"users": "int64 [N]",
                                                                           "items": "int64 [N]"},
                  "outputs": {"ratings": "float32 [N]"}}
    check = {k: v for k, v in asdict(report).items() if k.startswith(("checked", "max", "tolerance"))}
    return {"format": report.format, "model": model.model_name, "rank_by": model.rank_by,
            "n_users": model.n_users, "n_items": model.n_items, "rating_scale": list(model.shape.rating_scale),
            "score": {**score, "batch": batch}, "rating": rating, "ids": "ids.json", "check": check,
            "run": str(run.folder) if run.folder else None, "distillrec_version": distillrec.__version__,
            "torch_version": torch.__version__}
