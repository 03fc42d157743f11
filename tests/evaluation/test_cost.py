"""Cost figures: exact counts and sane structure; no wall-clock thresholds."""

from __future__ import annotations

from pathlib import Path

import torch

from distillrec.evaluation.cost import (
    count_buffers,
    count_parameters,
    file_bytes,
    latency_ms,
    machine_info,
    peak_rss_mb,
    users_per_second,
)


def test_count_parameters_linear() -> None:
    assert count_parameters(torch.nn.Linear(10, 3)) == 10 * 3 + 3
    assert count_parameters(torch.nn.Linear(10, 3, bias=False)) == 30


def test_count_parameters_tied_frozen_and_buffers() -> None:
    emb = torch.nn.Embedding(7, 4)
    head = torch.nn.Linear(4, 7, bias=False)
    head.weight = emb.weight  # tied: counted once
    model = torch.nn.Sequential(emb, head, torch.nn.BatchNorm1d(5))
    model[2].weight.requires_grad_(False)
    assert count_parameters(model) == 28 + 5 + 5
    assert count_parameters(model, trainable_only=True) == 28 + 5
    assert count_buffers(model) == 5 + 5 + 1  # running mean, running var, num_batches_tracked
    assert count_buffers(torch.nn.Linear(2, 2)) == 0


def test_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00" * 1234)
    assert file_bytes(path) == 1234
    assert file_bytes(str(path)) == 1234


def test_latency_ms_structure() -> None:
    calls = []
    stats = latency_ms(lambda: calls.append(1), n=50, warmup=5)
    assert len(calls) == 55
    assert set(stats) == {"p50", "p99", "mean", "min", "max", "n"}
    assert stats["n"] == 50
    assert stats["max"] >= stats["p99"] >= stats["p50"] >= stats["min"] >= 0
    assert stats["max"] >= stats["mean"] >= stats["min"]


def test_users_per_second() -> None:
    table = torch.rand(30, 12)
    seen: list[int] = []

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        seen.append(len(users))
        assert torch.is_inference_mode_enabled()
        return table[users]

    rate = users_per_second(score_fn, torch.arange(30), batch_size=8, k=5)
    assert rate > 0
    assert seen == [8, 8, 8, 8, 6]  # one untimed warm-up batch, then every user once


def test_peak_rss_and_machine_info() -> None:
    assert peak_rss_mb() > 1.0  # a Python process with torch loaded uses well over 1 MiB
    info = machine_info()
    for key in ("cpu_model", "logical_cores", "physical_cores", "available_cores", "torch_threads", "torch_version",
                "python_version", "platform", "cuda_device", "date"):
        assert key in info
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["torch_version"] == torch.__version__
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert isinstance(info["logical_cores"], int) and info["logical_cores"] >= 1
