"""Batched full ranking (P-RANK): score every item, drop seen items, keep the top K.

A ranked list has a fixed width ``k``; a slot that holds no real recommendation (the user has fewer than ``k``
items left that are neither excluded nor scored -inf/NaN) holds the item id ``-1``. Excluded items therefore never
appear, and the metrics count ``-1`` as a miss, which is what RecBole's full ranking amounts to.

Ties are broken by lower item id, so results do not depend on the backend, the thread count or the batch size.
(The protocol does not pin ties down; RecBole's ``torch.topk`` leaves them to the backend.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from distillrec.data.interactions import InteractionMatrix
from distillrec.evaluation.metrics import item_coverage, ranking_metrics

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
NEG_INF = float("-inf")


def _stable_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` of each row, ties by lower column index: ``(values [B, k], indices [B, k])``; needs ``k <= n``.

    ``torch.topk`` picks an arbitrary subset of the items tied at the k-th score, and a full stable sort is an
    order of magnitude slower, so: take ``topk`` (one more than needed, to detect ties at the cut), redo the
    selection (O(n) per row) only for rows whose k-th score ties with an item left out, then order the k
    winners by (score desc, id asc).
    """
    n = scores.shape[1]
    values, indices = scores.topk(min(k + 1, n), dim=1)
    kth = values[:, k - 1]
    # The tie at the k-th score spills outside the chosen set iff the (k+1)-th score equals it. A -inf k-th score
    # is harmless: those slots become -1 and every score above -inf is already chosen.
    spill = (values[:, -1] == kth) & (kth != NEG_INF) & (k < n)
    values, indices = values[:, :k], indices[:, :k]
    rows = spill.nonzero().squeeze(1)
    if rows.numel():
        block = scores[rows] if len(rows) < len(scores) else scores
        above, tied = block > kth[rows, None], block == kth[rows, None]
        n_tied_needed = k - above.sum(1, keepdim=True, dtype=torch.int32)
        chosen = above | (tied & (tied.cumsum(1, dtype=torch.int32) <= n_tied_needed))  # exactly k per row
        indices[rows] = chosen.nonzero()[:, 1].reshape(-1, k)  # row-major, so ascending ids within a row
        values[rows] = block.gather(1, indices[rows])
    by_id = indices.argsort(dim=1)
    indices, values = indices.gather(1, by_id), values.gather(1, by_id)
    values, by_score = values.sort(dim=1, descending=True, stable=True)
    return values, indices.gather(1, by_score)


def _topk_with_scores(scores: torch.Tensor, exclude_rows: torch.Tensor, exclude_cols: torch.Tensor,
                      k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk_excluding` that also returns the masked scores of the chosen slots (-inf where ``-1``)."""
    if scores.dim() != 2 or k < 1:
        raise ValueError(f"need scores [B, n_items] and k >= 1, got {tuple(scores.shape)} and k={k}")
    s = scores if scores.is_floating_point() else scores.to(torch.float64)
    s = torch.nan_to_num(s, nan=NEG_INF, posinf=float("inf"), neginf=NEG_INF)  # a copy: caller's scores untouched
    if exclude_rows.numel():
        s[exclude_rows.to(s.device), exclude_cols.to(s.device)] = NEG_INF
    n_rows, n_items = s.shape
    kk = min(k, n_items)
    values, indices = _stable_topk(s, kk) if kk else (s[:, :0], s[:, :0].long())
    indices = indices.masked_fill(values == NEG_INF, -1)
    if kk < k:
        values = torch.cat([values, values.new_full((n_rows, k - kk), NEG_INF)], 1)
        indices = torch.cat([indices, indices.new_full((n_rows, k - kk), -1)], 1)
    return values, indices


def topk_excluding(scores: torch.Tensor, exclude_rows: torch.Tensor, exclude_cols: torch.Tensor,
                   k: int) -> torch.Tensor:
    """Top ``k`` items per row after masking the coordinates ``(exclude_rows[m], exclude_cols[m])``.

    Args:
        scores: float ``[B, n_items]``; NaN counts as -inf. Not modified.
        exclude_rows, exclude_cols: int64 ``[m]`` coordinates into ``scores``, e.g. ``InteractionMatrix.rows``.
        k: list length; may exceed ``n_items`` (the tail is then padding).

    Returns:
        int64 ``[B, k]`` item ids, best first, ties by lower id; ``-1`` marks slots with no real recommendation
        (fewer than ``k`` items with a score above -inf that are not excluded).
    """
    return _topk_with_scores(scores, exclude_rows, exclude_cols, k)[1]


def _exclusions(exclude: InteractionMatrix, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``exclude.rows(batch)``, where users beyond ``exclude.n_users`` (e.g. cold users) simply have no entries."""
    known = batch < exclude.n_users
    if bool(known.all()):
        return exclude.rows(batch)
    rows, cols = exclude.rows(batch[known])
    return known.nonzero().squeeze(1).to(rows.device)[rows], cols


def _ranked_batches(score_fn: ScoreFn, users: torch.Tensor, exclude: InteractionMatrix | None, k: int,
                    batch_size: int, progress: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(values [b, k], items [b, k])`` per batch of ``users``; call inside ``torch.inference_mode``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, len(users), batch_size)
    for start in tqdm(starts, desc="ranking", unit="batch", disable=not progress):
        batch = users[start:start + batch_size]
        scores = score_fn(batch)
        if scores.dim() != 2 or scores.shape[0] != len(batch):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for {len(batch)} users")
        if exclude is None:
            rows = cols = torch.empty(0, dtype=torch.int64)
        else:
            if scores.shape[1] != exclude.n_items:
                raise ValueError(f"score_fn returned {scores.shape[1]} items, exclusions have {exclude.n_items}")
            rows, cols = _exclusions(exclude, batch)
        ranked = _topk_with_scores(scores, rows, cols, k)
        del scores  # free the block before the next score_fn call
        yield ranked


def full_ranking(score_fn: ScoreFn, users: torch.Tensor, exclude: InteractionMatrix | None, k: int,
                 batch_size: int = 1024, progress: bool = False) -> torch.Tensor:
    """Top-``k`` lists for ``users`` (int64 ``[U]``), scoring ``batch_size`` users at a time.

    ``score_fn(user_batch [b]) -> [b, n_items]`` sees the batch on ``users``' device; only per-batch
    ``[b, n_items]`` blocks exist, never a users x items matrix. Returns int64 ``[U, k]`` on the CPU, ``-1`` padded
    (see :func:`topk_excluding`).
    """
    with torch.inference_mode():
        parts = [items.cpu() for _, items in _ranked_batches(score_fn, users, exclude, k, batch_size, progress)]
    return torch.cat(parts) if parts else torch.empty(0, k, dtype=torch.int64)


@dataclass
class RankingReport:
    """Result of :func:`evaluate_ranking`.

    ``metrics`` holds the mean over evaluated users of every per-user metric (``"ndcg@10"``, ...) plus
    ``"coverage@k"`` (ItemCoverage@k, a catalogue-level figure). ``per_user`` holds float64 ``[U_eval]`` tensors
    aligned with ``users`` (int64 ``[U_eval]``), and ``topk`` the int64 ``[U_eval, max(ks)]`` lists.
    ``n_users_total`` is the number of users in the data set, for reporting how many were evaluated.
    """

    metrics: dict[str, float]
    per_user: dict[str, torch.Tensor]
    topk: torch.Tensor
    users: torch.Tensor
    ks: tuple[int, ...] = (5, 10, 20)
    n_users_total: int = 0

    @property
    def n_evaluated(self) -> int:
        return len(self.users)


def _hits(truth: InteractionMatrix, users: torch.Tensor, topk: torch.Tensor) -> torch.Tensor:
    """bool ``[U, K]``: is ``topk[u, r]`` a truth item of ``users[u]``? Padding (-1) is never a hit."""
    flat_users = users.repeat_interleave(topk.shape[1])
    flat_items = topk.reshape(-1)
    found = truth.contains(flat_users, flat_items.clamp(min=0)).cpu()  # clamp: -1 would alias user u-1's items
    return (found & (flat_items >= 0)).reshape(topk.shape)


def evaluate_ranking(score_fn: ScoreFn, truth: InteractionMatrix, exclude: InteractionMatrix | None,
                     ks: Sequence[int] = (5, 10, 20), batch_size: int = 1024,
                     n_users_total: int | None = None) -> RankingReport:
    """P-RANK full-ranking evaluation of every user with at least one ``truth`` item.

    ``exclude`` holds the items to drop before ranking (train, plus valid at test time). ``n_users_total``
    defaults to ``truth.n_users``; it only feeds the report. ``score_fn`` gets int64 user ids on the CPU.
    """
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if exclude is not None and exclude.n_items != truth.n_items:
        raise ValueError(f"truth has {truth.n_items} items but exclude has {exclude.n_items}")
    n_total = truth.n_users if n_users_total is None else n_users_total
    if n_total < truth.n_users:
        raise ValueError(f"n_users_total={n_total} is below the {truth.n_users} users in truth")
    counts = truth.counts().cpu()
    users = torch.nonzero(counts > 0).squeeze(1)
    topk = full_ranking(score_fn, users, exclude, ks[-1], batch_size)
    per_user = ranking_metrics(_hits(truth, users, topk), counts[users], ks)
    metrics = {name: values.mean().item() if len(users) else float("nan") for name, values in per_user.items()}
    for k in ks:
        metrics[f"coverage@{k}"] = item_coverage(topk, truth.n_items, k) if len(users) else 0.0
    return RankingReport(metrics=metrics, per_user=per_user, topk=topk, users=users, ks=ks, n_users_total=n_total)


def success_rate(score_fn: ScoreFn, n_users: int, exclude: InteractionMatrix | None, k: int,
                 batch_size: int = 1024) -> float:
    """Share of all users ``0..n_users-1`` (cold ones included) who get a full list of ``k`` recommendations.

    A slot counts when its item is not excluded and its score is finite (NaN and +-inf do not count); items in
    a list are distinct by construction.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    full = 0
    with torch.inference_mode():
        for values, items in _ranked_batches(score_fn, torch.arange(n_users), exclude, k, batch_size):
            full += int(((items >= 0) & values.isfinite()).all(1).sum())
    return full / n_users
