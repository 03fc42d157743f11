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
