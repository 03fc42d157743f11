"""``distillrec serve``: flags reach uvicorn, workers build the app from the environment, bad runs fail in one line."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("fastapi", reason="the serve extra (pip install -e '.[serve]') is not installed")
pytest.importorskip("uvicorn")
with warnings.catch_warnings():  # starlette >= 1.x nudges towards httpx2; httpx is what the serve extra installs
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import uvicorn

from distillrec.cli.main import build_parser, main
from distillrec.serving import app as serving_app


def test_serve_passes_its_flags_to_uvicorn(serving_runs, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append((target, kwargs)))
    for name in (serving_app.ENV_RUN, serving_app.ENV_DEVICE, serving_app.ENV_THREADS):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", str(serving_runs["svd"]), "--port", "8123", "--workers", "3", "--log_level", "warning",
                 "--threads", "1"]) == 0
    [(target, kwargs)] = calls
    assert target == "distillrec.serving.app:app_from_env" and kwargs["factory"] is True
    assert kwargs == {"factory": True, "host": "127.0.0.1", "port": 8123, "workers": 3, "log_level": "warning"}
    # what each worker process then does: build the app from the environment the command set
    client = TestClient(serving_app.app_from_env())
    assert client.get("/health").json() == {"status": "ok", "model": "svd"}


def test_serve_flags_take_both_spellings() -> None:
    parser = build_parser()
    a = parser.parse_args(["serve", "run", "--log-level", "debug"])
    b = parser.parse_args(["serve", "run", "--log_level", "debug"])
    assert a.log_level == b.log_level == "debug" and a.host == "127.0.0.1" and a.port == 8000 and a.workers == 1


def test_serve_on_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path, capsys) -> None:
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"distillrec: error: {tmp_path}: not a finished run folder (no metrics.json)"
