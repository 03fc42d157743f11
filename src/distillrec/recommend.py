"""Top-K recommendations for original user ids from a loaded run (shared by the CLI and serving)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillrec.evaluation.ranking import topk_excluding
from distillrec.runs import Run


@dataclass(frozen=True)
class Recommendation:
    rank: int
    item: str
    score: float
    title: str | None


@torch.inference_mode()
def recommend(run: Run, user: str, k: int = 10, exclude_seen: bool = True) -> tuple[list[Recommendation], bool]:
    """The top ``k`` items for original user id ``user``; returns ``(items, cold)``.

    An unknown user gets the most popular items (by training interactions) and ``cold=True``.
    """
    index = {u: i for i, u in enumerate(run.user_ids)}
    k = max(1, min(k, len(run.item_ids)))
    device = next(iter(run.model.buffers()), torch.zeros(())).device
    if user in index:
        uid = torch.tensor([index[user]], device=device)
        scores = run.model.score(uid).float()
        empty = torch.empty(0, dtype=torch.int64, device=device)
        rows, cols = run.seen.to(device).rows(uid) if exclude_seen else (empty, empty)
        cold = False
    else:
        scores = torch.bincount(run.seen.indices, minlength=len(run.item_ids)).float().unsqueeze(0).to(device)
        rows = cols = torch.empty(0, dtype=torch.int64, device=device)
        cold = True
    top = topk_excluding(scores, rows, cols, k)[0]
    values = scores[0, top]
    return [Recommendation(rank + 1, run.item_ids[item], float(value),
                           run.titles[item] if run.titles else None)
            for rank, (item, value) in enumerate(zip(top.tolist(), values.tolist(), strict=True))
            if value != float("-inf")], cold


@torch.inference_mode()
def explain(run: Run, user: str, items: list[str]) -> list[dict[str, float]]:
    """Per-member contributions of an ensemble to each item's ranking score and predicted rating.

    ``rank:<member>`` is the member's weight times its normalised score (they add up to the ensemble's
    score); ``rating:<member>`` is its weight times its rating prediction (they add up to the raw rating).
    """
    from distillrec.ensemble.weighted import Ensemble, normalise

    model = run.model
    if not isinstance(model, Ensemble):
        return []
    index = {u: i for i, u in enumerate(run.user_ids)}
    item_index = {v: i for i, v in enumerate(run.item_ids)}
    if user not in index:
        return []
    uid = torch.tensor([index[user]])
    iids = torch.tensor([item_index[i] for i in items])
    rows: list[dict[str, float]] = [{} for _ in items]
    for i, weight in model.task_weights("ranking"):
        member = model.members[i]
        part = weight * normalise(member.score(uid), model.config.fusion)[0, iids]
        for row, value in zip(rows, part.tolist(), strict=True):
            row[f"rank:{member.model_name}"] = value
    for i, weight in model.task_weights("rating"):
        member = model.members[i]
        part = weight * member.predict_rating(uid.expand(len(iids)), iids)
        for row, value in zip(rows, part.tolist(), strict=True):
            row[f"rating:{member.model_name}"] = value
    return rows
