"""Serving benchmark: one user's top-10 over all items, in process (PyTorch, ONNX Runtime) and over HTTP.

For each run folder on the command line (SVD, AutoInt, the ensemble and the student, where they exist):

* in process, p50/p99 over ``--requests`` calls, users taken in a seeded order: the serving path
  (``ServingRecommender.recommend``: precomputed factors where the model has them, seen items excluded, original
  ids and titles), the model's own ``score`` plus the masked top-10, and the ONNX export's scores (ONNX Runtime)
  plus the same top-10, where the model exports;
* over HTTP, ``distillrec serve`` started by this script as a subprocess on 127.0.0.1 (loopback only) and loaded by
  ``wrk`` where it is installed (one thread, a fixed duration per level), otherwise by
  a bounded async generator (httpx) at each ``--concurrency`` level: at most ``--http-requests`` requests and at
  most ``--time-limit`` seconds per level, so it always stops by itself; requests per second, p50, p99 and errors.
  The server is stopped at the end, also on errors or Ctrl-C.

Writes the ``serving`` section of BENCHMARKS.md; ``--no-write`` (alias ``--dry-run``) only prints. Run:
``python benchmarks/serving.py runs/bench/<svd run> runs/bench/<autoint run> <ensemble run> <student run>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch

from _common import ROOT, machine_line, markdown_table, write_section
from distillrec.errors import DistillrecError
from distillrec.evaluation.cost import latency_ms
from distillrec.evaluation.ranking import topk_excluding
from distillrec.runs import Run, load_run
from distillrec.serving.export import ExportedModel, export_run
from distillrec.serving.recommender import ServingRecommender

K = 10
READY_SECONDS = 120


def user_cycle(n_users: int) -> itertools.cycle:
    return itertools.cycle(np.random.default_rng(0).permutation(n_users).tolist())


def in_process(run: Run, requests: int) -> dict[str, Any]:
    """Latencies of the serving path, of ``model.score`` + top-10 and of ONNX Runtime + top-10."""
    recommender = ServingRecommender(run)
    ids, index = user_cycle(len(run.user_ids)), user_cycle(len(run.user_ids))
    seen = recommender.seen
    result: dict[str, Any] = {"serving": latency_ms(lambda: recommender.recommend([run.user_ids[next(ids)]], K),
                                                    n=requests)}

    def ranked(score_fn: Any) -> None:
        users = torch.tensor([next(index)])
        with torch.inference_mode():
            rows, cols = seen.rows(users)
            topk_excluding(score_fn(users), rows, cols, K)

    result["torch"] = latency_ms(lambda: ranked(run.model.score), n=requests)
    with tempfile.TemporaryDirectory() as folder:
        try:
            export_run(run, "onnx", Path(folder))
            exported = ExportedModel.load(Path(folder))
            result["onnx"] = latency_ms(lambda: ranked(exported.score), n=requests)
        except DistillrecError as exc:
            result["onnx"], result["onnx_note"] = None, str(exc)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run_dir: Path, port: int, workers: int, threads: int | None, log: Path) -> subprocess.Popen:
    """``distillrec serve`` in its own process group (so stopping it also stops uvicorn's workers)."""
    command = [sys.executable, "-m", "distillrec.cli.main", "serve", str(run_dir), "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    if threads:
        command += ["--threads", str(threads)]
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server (uvicorn stops its workers, which it would restart if they were signalled themselves);
    if it has not exited after 15 s, its whole process group is killed."""
    if process.poll() is not None:
        return
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_ready(base: str, process: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not ready after {READY_SECONDS} s")


async def load(base: str, users: list[str], concurrency: int, total: int, time_limit: float) -> dict[str, Any]:
    """``concurrency`` clients share a budget of ``total`` GET /recommend requests and a deadline."""
    import httpx

    latencies: list[float] = []
    counters = {"issued": 0, "errors": 0}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        deadline = time.perf_counter() + time_limit

        async def client_loop() -> None:
            while counters["issued"] < total and time.perf_counter() < deadline:
                user = users[counters["issued"] % len(users)]
                counters["issued"] += 1
                start = time.perf_counter_ns()
                try:
                    response = await client.get("/recommend", params={"user": user, "k": K})
                    failed = response.status_code != 200
                except httpx.HTTPError:
                    failed = True
                latencies.append((time.perf_counter_ns() - start) / 1e6)
                counters["errors"] += failed

        start = time.perf_counter()
        # each request times out after 10 s, so this bound is only a guard against a hung connection pool
        await asyncio.wait_for(asyncio.gather(*(client_loop() for _ in range(concurrency))), time_limit + 30)
        seconds = time.perf_counter() - start
    ms = np.array(latencies) if latencies else np.array([float("nan")])
    return {"concurrency": concurrency, "requests": len(latencies), "seconds": seconds,
            "rps": len(latencies) / seconds, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "errors": counters["errors"]}


WRK_SCRIPT = """
users = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/recommend?k=%d&user=" .. users[(counter %% #users) + 1])
end
"""
WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def load_wrk(base: str, users: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    """``wrk`` (one thread, ``concurrency`` keep-alive connections, users in turn) for ``seconds``: a C load
    generator leaves the server most of the second core, where a Python client would take it."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (", ".join(f'"{quote(u, safe="")}"' for u in users), K))
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", script.name, base], capture_output=True, text=True, check=True,
                             timeout=seconds + 60).stdout
    finally:
        os.unlink(script.name)

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()
        return float(value) * WRK_UNITS[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return {"concurrency": concurrency, "requests": requests, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)",
            out).group(1)), "p50": latency("50"), "p99": latency("99"), "errors": errors}


def over_http(run_dir: Path, users: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        process = start_server(run_dir, port, args.workers, args.threads, log)
        try:
            wait_ready(base, process, log)
            asyncio.run(load(base, users, 4, min(200, args.http_requests), args.time_limit))  # warm-up
            if args.load_generator == "wrk":
                return [load_wrk(base, users, level, args.wrk_seconds) for level in args.concurrency]
            return [asyncio.run(load(base, users, level, args.http_requests, args.time_limit))
                    for level in args.concurrency]
        finally:
            stop_server(process)


def ms_pair(stats: dict[str, float] | None) -> str:
    return "n/a" if stats is None else f"{stats['p50']:.3f} / {stats['p99']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (missing ones are skipped with a note)")
    parser.add_argument("--requests", type=int, default=1000, help="in-process requests per path (protocol: 1,000)")
    parser.add_argument("--http-requests", type=int, default=5000, help="HTTP requests per concurrency level, at most")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per concurrency level, at most")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[16, 64])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch (and ONNX Runtime) threads, in process and per server worker")
    parser.add_argument("--load-generator", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx",
                        help="wrk where installed (apt install wrk), else the bounded httpx client")
    parser.add_argument("--wrk-seconds", type=float, default=15.0, help="seconds per concurrency level with wrk")
    parser.add_argument("--no-write", "--dry-run", dest="no_write", action="store_true",
                        help="print the tables, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    local_rows, http_rows, notes = [], [], []
    for folder in args.runs:
        if not (folder / "metrics.json").is_file():
            notes.append(f"- `{folder}`: no finished run there, skipped.")
            continue
        run = load_run(folder)
        name = run.spec.model
        local = in_process(run, args.requests)
        if local.get("onnx_note"):
            notes.append(f"- {name}: no ONNX Runtime figure: {local['onnx_note']}")
        params = run.metrics.get("cost", {}).get("params") or sum(
            t.numel() for t in (*run.model.parameters(), *run.model.buffers()))
        local_rows.append([name, params, ms_pair(local["serving"]), ms_pair(local["torch"]), ms_pair(local["onnx"])])
        print(local_rows[-1], flush=True)
        for level in over_http(folder, run.user_ids, args):
            http_rows.append([name, level["concurrency"], level["requests"], f"{level['rps']:.0f}",
                              f"{level['p50']:.2f}", f"{level['p99']:.2f}", level["errors"]])
            print(http_rows[-1], flush=True)
    try:
        shown = [str(Path(f).resolve().relative_to(ROOT)) for f in args.runs]
    except ValueError:
        shown = [str(f) for f in args.runs]
    body = "\n\n".join([
        "## Serving: one user's top-10 over all items (`benchmarks/serving.py`)",
        machine_line(),
        f"Runs: {', '.join(f'`{s}`' for s in shown)}. In process: p50 / p99 ms over {args.requests} requests "
        "(serving path = precomputed factors where the model has them, seen items excluded, original ids).",
        markdown_table(["model", "params", "serving path", "PyTorch score + top-10", "ONNX Runtime + top-10"],
                       local_rows),
        f"Over HTTP on 127.0.0.1 (`distillrec serve`, {args.workers} worker(s)), GET /recommend?k=10, users in "
        "turn; " + (f"load by `wrk -t1` for {args.wrk_seconds:g} s per level" if args.load_generator == "wrk" else
                   f"load by the httpx client, at most {args.http_requests} requests and {args.time_limit:g} s per "
                   "level") + "; the load generator shares the machine.",
        markdown_table(["model", "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors"], http_rows),
        *notes,
    ])
    if args.no_write:
        print(body)
    else:
        write_section("serving", body)
        print(body)


if __name__ == "__main__":
    main()
