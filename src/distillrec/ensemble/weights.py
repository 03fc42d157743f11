"""Ensemble member lists and weights: parsing the seed's flags, and learning weights on validation data.

Learned weights only ever see the *valid* part of the split: non-negative least squares on the members'
validation rating predictions for the rating side, and a grid search over the weight simplex on
validation NDCG@10 for the ranking side (with the fusion, z-score or rank, chosen the same way).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import nnls

from distillrec.data.interactions import InteractionMatrix
from distillrec.ensemble.weighted import FUSIONS, MEMBER_TASKS, normalise
from distillrec.errors import DistillrecError
from distillrec.evaluation.ranking import evaluate_ranking
from distillrec.registry import model_class

DEFAULT_ALGORITHMS = ("svd", "xdeepfm", "autoint")
DEFAULT_WEIGHTS = (0.4, 0.4, 0.2)
DEFAULT_TASKS = ("ranking", "rating", "balance")
GRID_STEP = 0.05
MAX_SEARCH_USERS = 5000


@dataclass(frozen=True)
class MemberSpec:
    model: str
    task: str
    weight: float | None  # None: learned ("auto")


def parse_members(algorithms: str, weights: str, tasks: str) -> list[MemberSpec]:
    """The seed's ``--algorithms a,b,c --weights 0.4,0.4,0.2|auto --tasks ranking,rating,balance``."""
    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise DistillrecError("--algorithms: give at least one model, e.g. svd,xdeepfm,autoint")
    for name in names:
        model_class(name)  # one-line error listing the known models
    if len(task_list) != len(names):
        raise DistillrecError(f"--tasks has {len(task_list)} entries but --algorithms has {len(names)}")
    for task in task_list:
        if task not in MEMBER_TASKS:
            raise DistillrecError(f"--tasks: unknown task {task!r}; choose from {', '.join(MEMBER_TASKS)}")
    if weights.strip() == "auto":
        parsed: list[float | None] = [None] * len(names)
    else:
        parsed = [_weight(w) for w in weights.split(",")]
        if len(parsed) != len(names):
            raise DistillrecError(f"--weights has {len(parsed)} entries but --algorithms has {len(names)}")
    members = [MemberSpec(n, t, w) for n, t, w in zip(names, task_list, parsed, strict=True)]
    for side in ("ranking", "rating"):
        feeding = [m for m in members if m.task in (side, "balance")]
        if not feeding:
            raise DistillrecError(f"--tasks: no member feeds the {side} side (use {side} or balance)")
        if all(m.weight is not None for m in feeding) and sum(m.weight for m in feeding) <= 0:
            raise DistillrecError(f"--weights: the members feeding {side} all have weight 0")
    return members


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DistillrecError(f"--weights: {text.strip()!r} is not a number (or use --weights auto)") from None
    if not np.isfinite(value) or value < 0:
        raise DistillrecError(f"--weights: weights must be finite and non-negative, got {text.strip()!r}")
    return value


def renormalise(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    if total <= 0:
        raise DistillrecError("weights sum to zero")
    return [float(w) / total for w in weights]


def learn_rating_weights(predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """NNLS weights ``[M]`` with ``predictions [n, M] @ w ~ target [n]`` (validation ratings only)."""
    weights, _ = nnls(np.asarray(predictions, dtype=np.float64), np.asarray(target, dtype=np.float64))
    if weights.sum() <= 0:
        raise DistillrecError("could not learn rating weights: NNLS gave all zeros")
    return weights


def simplex_grid(n: int, step: float = GRID_STEP) -> list[tuple[float, ...]]:
    """All weight vectors of ``n`` non-negative multiples of ``step`` summing to 1."""
    units = round(1 / step)
    return [tuple(c / units for c in combo) for combo in itertools.product(range(units + 1), repeat=n)
            if sum(combo) == units]


@torch.inference_mode()
def learn_ranking_weights(member_scores: Sequence[callable], truth: InteractionMatrix, exclude: InteractionMatrix,
                          seed: int = 0) -> tuple[tuple[float, ...], str, float]:
    """Grid search of weights and fusion on validation NDCG@10: ``(weights, fusion, best ndcg)``."""
    users = torch.nonzero(truth.counts() > 0).squeeze(1)
    if len(users) > MAX_SEARCH_USERS:
        generator = torch.Generator().manual_seed(seed)
        users = users[torch.randperm(len(users), generator=generator)[:MAX_SEARCH_USERS]].sort().values
    raw = [torch.cat([fn(users[s:s + 1024]).float() for s in range(0, len(users), 1024)]) for fn in member_scores]
    sub_truth = _rows(truth, users)
    sub_exclude = _rows(exclude, users)
    best = (-1.0, (), "zscore")
    for fusion in FUSIONS:
        scaled = torch.stack([normalise(r, fusion) for r in raw])  # [M, U, I]
        for weights in simplex_grid(len(raw)):
            fused = torch.tensordot(torch.tensor(weights), scaled, dims=1)
            report = evaluate_ranking(lambda u, fused=fused: fused[u], sub_truth, sub_exclude, ks=(10,))
            ndcg = report.metrics["ndcg@10"]
            if ndcg > best[0] + 1e-12:
                best = (ndcg, weights, fusion)
    return best[1], best[2], best[0]


def _rows(matrix: InteractionMatrix, users: torch.Tensor) -> InteractionMatrix:
    """The sub-matrix of the given users, re-indexed 0..len(users)-1."""
    row, col = matrix.rows(users)
    return InteractionMatrix.from_pairs(row, col, len(users), matrix.n_items)
