"""The HTTP API (FastAPI): ``/recommend``, ``/predict``, ``/health``, ``/model``, docs at ``/docs``.

``create_app(recommender)`` builds the app around a :class:`ServingRecommender`; ``app_from_env`` is the factory
uvicorn's worker processes call (``distillrec serve`` passes the run folder in the environment, since workers are
started from an import string). Handlers are plain functions, so FastAPI runs them in its thread pool and a slow
model call never blocks the event loop; only ``GET /recommend`` of a model with precomputed factors (a ~0.1 ms
product and top-K) answers on the event loop, where the thread-pool hop would cost more than the call. Every
error, 4xx or 5xx, is a JSON body ``{"detail": ...}``.
"""

from __future__ import annotations

import functools
import os

import torch
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import distillrec
from distillrec.errors import DistillrecError
from distillrec.runs import load_run
from distillrec.serving.recommender import NotFoundError, RequestError, ServingRecommender, UserRecommendations
from distillrec.serving.schemas import (
    BatchRecommendations,
    Error,
    Health,
    ModelInfo,
    Predictions,
    PredictRequest,
    Recommendations,
    RecommendRequest,
)

ENV_RUN, ENV_DEVICE, ENV_THREADS = "DISTILLREC_SERVE_RUN", "DISTILLREC_SERVE_DEVICE", "DISTILLREC_SERVE_THREADS"
ERRORS = {404: {"model": Error}, 413: {"model": Error}, 422: {"model": Error}}


def create_app(recommender: ServingRecommender) -> FastAPI:
    """The API for one loaded run (see the module docstring)."""
    name = recommender.model.model_name
    info = recommender.describe()
    app = FastAPI(title=f"distillrec: {name}", version=distillrec.__version__,
                  description="Top-K recommendations and rating predictions from a trained distillrec run, with "
                              "original ids. Unknown users get the most popular items, flagged `cold_start`.")
    app.add_middleware(BodyLimit, max_bytes=recommender.limits.max_body_bytes)
    _add_error_handlers(app)

    @app.get("/health", response_model=Health)
    def health() -> dict:
        return {"status": "ok", "model": name}

    @app.get("/model", response_model=ModelInfo)
    def model_info() -> dict:
        return info

    inline = recommender.precomputed  # a small product and a top-K: cheaper than the thread-pool hop

    @app.get("/recommend", response_model=Recommendations, responses=ERRORS)
    async def recommend_one(user: str = Query(min_length=1, max_length=recommender.limits.max_id_length),
                            k: int = Query(10, description=f"1 to {recommender.max_k}"),
                            exclude_seen: bool = True) -> JSONResponse:
        call = functools.partial(recommender.recommend, [user], k, exclude_seen)
        result = call() if inline else await run_in_threadpool(call)
        # built from exactly the schema's fields, so FastAPI's second validation pass is skipped
        return JSONResponse(_recommendations(result[0], k))

    @app.post("/recommend", response_model=BatchRecommendations, responses=ERRORS)
    def recommend_batch(request: RecommendRequest) -> dict:
        results = recommender.recommend([str(u) for u in request.users], request.k, request.exclude_seen)
        return {"model": name, "results": [_recommendations(r, request.k) for r in results]}

    @app.post("/predict", response_model=Predictions, responses=ERRORS)
    def predict(request: PredictRequest) -> dict:
        predictions = recommender.predict([(str(p.user), str(p.item)) for p in request.pairs])
        return {"model": name, "predictions": [p.__dict__ for p in predictions]}

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory: the run folder (and device, threads) come from ``DISTILLREC_SERVE_*`` variables."""
    folder = os.environ.get(ENV_RUN)
    if not folder:
        raise DistillrecError(f"{ENV_RUN} is not set: start the server with `distillrec serve RUN`")
    if os.environ.get(ENV_THREADS):
        torch.set_num_threads(int(os.environ[ENV_THREADS]))
    return create_app(ServingRecommender(load_run(folder, device=os.environ.get(ENV_DEVICE, "cpu"))))


def _recommendations(result: UserRecommendations, k: int) -> dict:
    return {"user": result.user, "cold_start": result.cold_start, "k": k,
            "items": [item.__dict__ for item in result.items]}


def _add_error_handlers(app: FastAPI) -> None:
    """Library errors map to 404/422 with their one-line message; anything unexpected is a JSON 500."""

    @app.exception_handler(NotFoundError)
    def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(RequestError)
    def bad_values(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    def internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before any handler parses it.

    A declared ``Content-Length`` is checked up front; a chunked body is read up to the limit, then replayed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)
