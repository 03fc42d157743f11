"""``distillrec serve RUN``: the HTTP API (FastAPI + uvicorn) over a trained run; docs at ``/docs``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from distillrec.cli.common import add_flag
from distillrec.errors import DistillrecError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve recommendations of a trained run over HTTP")
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by train/ensemble/distill")
    add_flag(parser, "host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    add_flag(parser, "port", type=int, default=8000)
    add_flag(parser, "workers", type=int, default=1, help="worker processes, each holding its own copy of the model")
    add_flag(parser, "threads", type=int, default=None, help="torch threads per worker (default: torch's choice)")
    add_flag(parser, "device", default="cpu", choices=["cpu", "cuda", "auto"])
    add_flag(parser, "log_level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    folder = Path(args.run_dir)
    if not (folder / "metrics.json").is_file():  # fail here, in one line, not in every worker
        raise DistillrecError(f"{folder}: not a finished run folder (no metrics.json)")
    if args.workers < 1 or not 0 <= args.port <= 65535:
        raise DistillrecError("--workers must be at least 1 and --port between 0 and 65535")
    try:  # the serve extra is optional: the rest of the CLI works without it
        import uvicorn

        from distillrec.serving.app import ENV_DEVICE, ENV_RUN, ENV_THREADS
    except ImportError as exc:
        raise DistillrecError(f"serving needs the serve extra: pip install -e '.[serve]' ({exc})") from None

    os.environ[ENV_RUN] = str(folder.resolve())
    os.environ[ENV_DEVICE] = args.device
    if args.threads:
        os.environ[ENV_THREADS] = str(args.threads)
    uvicorn.run("distillrec.serving.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level)
    return 0
