"""The in-process recommender behind the HTTP API: original ids in and out, cold start, input limits.

Everything that does not depend on the request is prepared at load time: id lookups, the seen-item lists
(``InteractionMatrix`` rows, excluded by index), the popularity ranking for unknown users and, where a model
allows it, the scores' factors (``serving.precompute``). A request then costs one score call for its users, a
masked top-K and the id mapping. Every public method runs under ``torch.inference_mode`` and is safe to call from
several threads at once (nothing is written after ``__init__``).

Cold start: an unknown user gets the items most often seen in the run's own data (its ``seen`` matrix, the items
excluded at test time), flagged ``cold_start``. Rating predictions need a known user and a known item: serving
knows nothing about a new user beyond the id, so either unknown is a :class:`NotFoundError` naming the ids.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

import distillrec
from distillrec.errors import DistillrecError
from distillrec.evaluation.ranking import topk_excluding
from distillrec.runs import Run
from distillrec.serving.precompute import precomputed_scorer


class RequestError(DistillrecError):
    """A well-formed request whose values are out of bounds (k, batch sizes): HTTP 422."""


class NotFoundError(DistillrecError):
    """An id the run does not know where one is required (rating predictions): HTTP 404."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one request; ``k`` is further bounded by the number of items."""

    max_k: int = 1000
    max_users: int = 256  # users per batch recommendation
    max_pairs: int = 10_000  # (user, item) pairs per rating request
    max_body_bytes: int = 1 << 20
    max_id_length: int = 256


@dataclass(frozen=True)
class Item:
    rank: int
    item: str
    score: float | None  # None only for a non-finite score, which JSON cannot carry
    title: str | None


@dataclass(frozen=True)
class UserRecommendations:
    user: str
    cold_start: bool
    items: list[Item]


@dataclass(frozen=True)
class Prediction:
    user: str
    item: str
    rating: float | None
    title: str | None


class ServingRecommender:
    """A loaded run prepared for requests (see the module docstring)."""

    def __init__(self, run: Run, limits: Limits | None = None) -> None:
        self.run = run
        self.limits = limits or Limits()
        self.model = run.model.eval()
        self.device = next(iter(self.model.buffers()), next(iter(self.model.parameters()), torch.zeros(()))).device
        self.n_items = len(run.item_ids)
        self.user_index = {user: i for i, user in enumerate(run.user_ids)}
        self.item_index = {item: i for i, item in enumerate(run.item_ids)}
        self.seen = run.seen.to(self.device)
        with torch.inference_mode():
            self.popularity = torch.bincount(run.seen.indices.cpu(), minlength=self.n_items).float()
            empty = torch.empty(0, dtype=torch.int64)
            self._popular = topk_excluding(self.popularity[None], empty, empty, self.max_k)[0].tolist()
        self._precomputed = precomputed_scorer(self.model)
        self._score = self._precomputed or self.model.score

    @property
    def max_k(self) -> int:
        return min(self.limits.max_k, self.n_items)

    @property
    def precomputed(self) -> bool:
        """True when requests use load-time factors rather than ``model.score``."""
        return self._precomputed is not None

    # -- requests --------------------------------------------------------------------------------------------
    def recommend(self, users: Sequence[str], k: int = 10, exclude_seen: bool = True) -> list[UserRecommendations]:
        """Top ``k`` items for each original user id, best first; unknown users get the popularity list."""
        self._check_count(len(users), self.limits.max_users, "users")
        if not 1 <= k <= self.max_k:
            raise RequestError(f"k must be between 1 and {self.max_k}, got {k}")
        users = [str(user) for user in users]
        self._check_ids(users)
        results: list[UserRecommendations | None] = [None] * len(users)
        known = [(pos, self.user_index[user]) for pos, user in enumerate(users) if user in self.user_index]
        if known:
            positions, index = zip(*known, strict=True)
            for pos, row in zip(positions, self._rank(list(index), k, exclude_seen), strict=True):
                results[pos] = UserRecommendations(users[pos], False, row)
        cold = self._cold_list(k)
        return [result or UserRecommendations(users[pos], True, cold) for pos, result in enumerate(results)]

    def predict(self, pairs: Sequence[tuple[str, str]]) -> list[Prediction]:
        """Rating predictions for ``(user, item)`` pairs of original ids, clipped to the rating scale."""
        self._check_count(len(pairs), self.limits.max_pairs, "pairs")
        pairs = [(str(user), str(item)) for user, item in pairs]
        self._check_ids([id_ for pair in pairs for id_ in pair])
        missing_users = sorted({user for user, _ in pairs if user not in self.user_index})
        missing_items = sorted({item for _, item in pairs if item not in self.item_index})
        if missing_users or missing_items:
            parts = [f"unknown {what}(s) {_listing(ids)}" for what, ids in (("user", missing_users),
                                                                           ("item", missing_items)) if ids]
            raise NotFoundError("; ".join(parts) + " (rating predictions need ids the run was trained on)")
        users = torch.tensor([self.user_index[user] for user, _ in pairs], device=self.device)
        items = torch.tensor([self.item_index[item] for _, item in pairs], device=self.device)
        with torch.inference_mode():
            ratings = self.model.predict_rating(users, items).float().cpu().tolist()
        return [Prediction(user, item, _finite(rating), self._title(self.item_index[item]))
                for (user, item), rating in zip(pairs, ratings, strict=True)]

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` returns: name, version, size, settings, the run's metrics, serving details."""
        metrics = self.run.metrics
        cost = metrics.get("cost", {})
        params = cost.get("params") or sum(t.numel() for t in (*self.model.parameters(), *self.model.buffers()))
        return _json_safe({
            "name": self.model.model_name, "version": metrics.get("version"),
            "run": self.run.folder.name if self.run.folder else None,
            "params": params, "bytes": cost.get("bytes"), "rank_by": self.model.rank_by,
            "task": self.run.spec.task, "dataset": metrics.get("dataset"), "protocol": self.run.spec.protocol,
            "seed": self.run.spec.seed, "n_users": len(self.run.user_ids), "n_items": self.n_items,
            "titles": self.run.titles is not None, "config": self.model.config_dict(),
            "metrics": {part: metrics.get(part) for part in ("valid", "test")},
            "serving": {"precomputed": self.precomputed, "limits": dataclasses.asdict(self.limits),
                        "max_k": self.max_k, "distillrec_version": distillrec.__version__,
                        "torch_threads": torch.get_num_threads(), "device": str(self.device)},
        })

    # -- internals -------------------------------------------------------------------------------------------
    def _rank(self, index: list[int], k: int, exclude_seen: bool) -> list[list[Item]]:
        users = torch.tensor(index, device=self.device)
        with torch.inference_mode():
            scores = self._score(users).float()
            if exclude_seen:
                rows, cols = self.seen.rows(users)
            else:
                rows = cols = torch.empty(0, dtype=torch.int64, device=self.device)
            top = topk_excluding(scores, rows, cols, k)
            values = scores.gather(1, top.clamp(min=0)).cpu().tolist()
            top = top.cpu().tolist()
        # -1 marks a slot with nothing left to recommend (the user has seen almost every item): drop it
        return [[Item(rank + 1, self.run.item_ids[item], _finite(value), self._title(item))
                 for rank, (item, value) in enumerate(zip(items, row_values, strict=True)) if item >= 0]
                for items, row_values in zip(top, values, strict=True)]

    def _cold_list(self, k: int) -> list[Item]:
        return [Item(rank + 1, self.run.item_ids[item], float(self.popularity[item]), self._title(item))
                for rank, item in enumerate(self._popular[:k])]

    def _title(self, item: int) -> str | None:
        return self.run.titles[item] if self.run.titles else None

    def _check_count(self, count: int, limit: int, what: str) -> None:
        if not 1 <= count <= limit:
            raise RequestError(f"a request takes 1 to {limit} {what}, got {count}")

    def _check_ids(self, ids: Sequence[str]) -> None:
        limit = self.limits.max_id_length
        too_long = next((i for i in ids if len(i) > limit or not i), None)
        if too_long is not None:
            raise RequestError(f"ids must be 1 to {limit} characters, got one of {len(too_long)}")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _listing(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None: strict JSON (what the HTTP layer writes) has no spelling for them."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
