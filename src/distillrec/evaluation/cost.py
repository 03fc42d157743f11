"""Cost figures for the benchmark tables (``PROTOCOL.md``, "Cost figures").

Absolute times depend on the machine, so every table also states :func:`machine_info`; ratios measured in the same
run are what the protocol prefers.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from distillrec.evaluation.ranking import ScoreFn, full_ranking


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements; shared (tied) parameters count once. Buffers are not included."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_buffers(module: torch.nn.Module) -> int:
    """Number of buffer elements (e.g. batch-norm statistics, masks): stored in the model file, not trained."""
    return sum(b.numel() for b in module.buffers())


def file_bytes(path: str | os.PathLike[str]) -> int:
    """Size on disk of a saved model (the protocol's "model bytes" is the safetensors file)."""
    return Path(path).stat().st_size


def latency_ms(fn: Callable[[], object], n: int = 1000, warmup: int = 20) -> dict[str, float]:
    """Per-call latency of ``fn()`` in milliseconds over ``n`` timed calls after ``warmup`` untimed ones.

    Returns ``{"p50", "p99", "mean", "min", "max", "n"}``; percentiles use linear interpolation (numpy's default).
    ``fn`` must finish its own work before returning (e.g. synchronise or copy to the CPU on a GPU), since only
    the wall time of the call is measured. The protocol's request latency is one user, top-10, batch 1.
    """
    if n < 1 or warmup < 0:
        raise ValueError(f"need n >= 1 and warmup >= 0, got n={n}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        start = clock()
        fn()
        times[i] = clock() - start
    ms = times / 1e6
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()),
            "min": float(ms.min()), "max": float(ms.max()), "n": n}


def users_per_second(score_fn: ScoreFn, users: torch.Tensor, batch_size: int = 1024, k: int = 10) -> float:
    """Full-ranking throughput: users scored against all items and cut to top ``k``, per second.

    Runs :func:`~distillrec.evaluation.ranking.full_ranking` (inference mode, no exclusions) once on the first batch
    untimed, to pay one-off costs, then times one pass over ``users`` (int64 ``[U]``).
    """
    if len(users) == 0:
        raise ValueError("users must not be empty")
    full_ranking(score_fn, users[:batch_size], None, k, batch_size)
    start = time.perf_counter_ns()
    full_ranking(score_fn, users, None, k, batch_size)
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    return len(users) / max(elapsed_s, 1e-9)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None where that is unavailable."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return None
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or None


def machine_info() -> dict[str, object]:
    """The machine line every cost table states: CPU model, cores, torch threads, versions and date."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "available_cores": available,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
