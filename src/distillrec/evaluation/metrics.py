"""Accuracy metrics as pure tensor functions (no model knowledge).

Definitions follow ``PROTOCOL.md`` (P-RANK and P-RATING) and therefore RecBole: Recall@K = hits / |test|,
Precision@K = hits / K, Hit@K, MRR@K = 1 / rank of the first hit, and NDCG@K with the ideal DCG taken over
``min(|test|, K)`` positions. Everything is computed in float64 so that means over thousands of users are stable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

RANKING_METRIC_NAMES = ("recall", "precision", "hit", "mrr", "ndcg")


def _discounts(k: int, device: torch.device) -> torch.Tensor:
    """``1 / log2(r + 1)`` for ranks ``r = 1..k`` -> float64 [k]."""
    ranks = torch.arange(1, k + 1, dtype=torch.float64, device=device)
    return 1.0 / torch.log2(ranks + 1.0)


def _check_ks(ks: Sequence[int], max_k: int) -> list[int]:
    out = sorted({int(k) for k in ks})
    if not out or out[0] < 1 or out[-1] > max_k:
        raise ValueError(f"ks must be non-empty integers in [1, {max_k}], got {list(ks)}")
    return out


def ranking_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-user top-K metrics from a hit matrix.

    Args:
        hits: bool ``[B, K]``; ``hits[u, r]`` says whether the item at rank ``r + 1`` of user ``u``'s list is one
            of the user's test items. Padding slots (no recommendation) must be False.
        n_relevant: int64 ``[B]``, the number of test items of each user (|test items of u|).
        ks: cut-offs, each in ``1..K``.

    Returns:
        ``{"recall@k", "precision@k", "hit@k", "mrr@k", "ndcg@k"}`` for every k, each float64 ``[B]``.

    Users with ``n_relevant == 0`` are not evaluated by the protocol (callers filter them out); if one is passed
    anyway, all of its metrics are NaN so that it cannot silently pull a mean down.
    """
    if hits.dim() != 2 or n_relevant.shape != hits.shape[:1]:
        raise ValueError(f"expected hits [B, K] and n_relevant [B], got {tuple(hits.shape)} and "
                         f"{tuple(n_relevant.shape)}")
    max_k = hits.shape[1]
    ks = _check_ks(ks, max_k)
    hit_f = hits.to(torch.float64)
    n_rel = n_relevant.to(device=hits.device, dtype=torch.int64)
    disc = _discounts(max_k, hits.device)
    cum_hits = hit_f.cumsum(1)  # [B, K]: hits within the first r + 1 ranks
    dcg = (hit_f * disc).cumsum(1)  # [B, K]
    ideal = disc.cumsum(0)  # [K]: ideal[j - 1] = IDCG with j relevant items in the list
    has_hit = hits.any(1)
    first_rank = torch.where(has_hit, hits.to(torch.uint8).argmax(1) + 1, max_k + 1)  # argmax: first True
    invalid = n_rel <= 0
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        n_hit = cum_hits[:, k - 1]
        idcg = ideal[n_rel.clamp(1, k) - 1]
        values = {
            "recall": n_hit / n_rel.clamp(min=1).to(torch.float64),
            "precision": n_hit / k,
            "hit": (n_hit > 0).to(torch.float64),
            "mrr": torch.where(first_rank <= k, 1.0 / first_rank.to(torch.float64), 0.0),
            "ndcg": dcg[:, k - 1] / idcg,
        }
        for name in RANKING_METRIC_NAMES:
            out[f"{name}@{k}"] = values[name].masked_fill(invalid, float("nan"))
    return out


def item_coverage(topk_items: torch.Tensor, n_items: int, k: int) -> float:
    """ItemCoverage@k: distinct items in all users' first ``k`` slots / ``n_items``.

    Args:
        topk_items: int64 ``[U, K]`` item ids, ``K >= k``; negative ids are padding (no recommendation) and are
            not counted.
    """
    if topk_items.dim() != 2 or not 1 <= k <= topk_items.shape[1] or n_items < 1:
        raise ValueError(f"need topk_items [U, K>={k}] and n_items >= 1, got {tuple(topk_items.shape)}, {n_items}")
    items = topk_items[:, :k].reshape(-1)
    return torch.unique(items[items >= 0]).numel() / n_items


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape or pred.numel() == 0:
        raise ValueError(f"pred and target must have the same non-empty shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    return pred.to(torch.float64), target.to(device=pred.device, dtype=torch.float64)


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Root mean squared error over all entries (any equal shapes).

    P-RATING clips predictions to [1, 5] first; that is the caller's job, so that this stays a plain metric.
    """
    p, t = _check_pair(pred, target)
    return torch.sqrt(torch.mean((p - t) ** 2)).item()


def mae(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error over all entries (any equal shapes). Callers clip predictions, as for :func:`rmse`."""
    p, t = _check_pair(pred, target)
    return torch.mean(torch.abs(p - t)).item()
