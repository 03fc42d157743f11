"""Ranking and rating metrics against values worked out by hand (PROTOCOL.md, P-RANK / P-RATING)."""

from __future__ import annotations

import math

import pytest
import torch

from distillrec.evaluation.metrics import item_coverage, mae, ranking_metrics, rmse

# Discounts 1 / log2(r + 1) used in the comments: r=1 -> 1, r=2 -> 0.6309297535714575, r=3 -> 0.5,
# r=5 -> 0.38685280723454163.


def _hits(*rows: str) -> torch.Tensor:
    """'.x..x' -> [False, True, False, False, True]."""
    return torch.tensor([[c == "x" for c in row] for row in rows])


def _check(out: dict[str, torch.Tensor], expected: dict[str, list[float]]) -> None:
    for name, values in expected.items():
        torch.testing.assert_close(out[name], torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-12,
                                   equal_nan=True, msg=name)


def test_hand_computed_users() -> None:
    hits = _hits(
        ".x..x",  # A: 3 test items, hits at ranks 2 and 5
        "x....",  # B: 1 test item (fewer than K), hit at rank 1
        "..x..",  # C: 2 test items, hit at rank 3
        ".....",  # D: 4 test items, no hit
        "xxxxx",  # E: 10 test items, all 5 slots hit
    )
    n_relevant = torch.tensor([3, 1, 2, 4, 10])
    out = ranking_metrics(hits, n_relevant, ks=(1, 2, 5))
    _check(out, {
        "recall@5": [2 / 3, 1.0, 0.5, 0.0, 0.5],
        "precision@5": [0.4, 0.2, 0.2, 0.0, 1.0],
        "hit@5": [1.0, 1.0, 1.0, 0.0, 1.0],
        "mrr@5": [0.5, 1.0, 1 / 3, 0.0, 1.0],
        # A: (1/log2 3 + 1/log2 6) / (1 + 1/log2 3 + 1/2); C: (1/2) / (1 + 1/log2 3); E: IDCG over 5, not 10
        "ndcg@5": [0.4776237035032179, 1.0, 0.3065735963827292, 0.0, 1.0],
        "recall@2": [1 / 3, 1.0, 0.0, 0.0, 0.2],
        "precision@2": [0.5, 0.5, 0.0, 0.0, 1.0],
        "hit@2": [1.0, 1.0, 0.0, 0.0, 1.0],
        "mrr@2": [0.5, 1.0, 0.0, 0.0, 1.0],
        "ndcg@2": [0.38685280723454163, 1.0, 0.0, 0.0, 1.0],  # A: (1/log2 3) / (1 + 1/log2 3)
        "recall@1": [0.0, 1.0, 0.0, 0.0, 0.1],
        "precision@1": [0.0, 1.0, 0.0, 0.0, 1.0],
        "mrr@1": [0.0, 1.0, 0.0, 0.0, 1.0],
        "ndcg@1": [0.0, 1.0, 0.0, 0.0, 1.0],
    })
    assert set(out) == {f"{m}@{k}" for m in ("recall", "precision", "hit", "mrr", "ndcg") for k in (1, 2, 5)}


def test_user_without_test_items_is_nan() -> None:
    out = ranking_metrics(_hits("....", "x..."), torch.tensor([0, 1]), ks=(4,))
    for values in out.values():
        assert math.isnan(values[0].item())
        assert not math.isnan(values[1].item())


def test_bad_cutoffs_rejected() -> None:
    with pytest.raises(ValueError):
        ranking_metrics(_hits("x.."), torch.tensor([1]), ks=(5,))
    with pytest.raises(ValueError):
        ranking_metrics(_hits("x.."), torch.tensor([1]), ks=(0,))
    with pytest.raises(ValueError):
        ranking_metrics(_hits("x.."), torch.tensor([1, 2]), ks=(1,))


def test_empty_batch() -> None:
    out = ranking_metrics(torch.zeros(0, 3, dtype=torch.bool), torch.zeros(0, dtype=torch.int64), ks=(3,))
    assert out["ndcg@3"].shape == (0,)


def test_item_coverage() -> None:
    topk = torch.tensor([[0, 1, 2], [1, 3, 4], [0, 1, -1]])
    assert item_coverage(topk, n_items=10, k=1) == pytest.approx(2 / 10)  # {0, 1}
    assert item_coverage(topk, n_items=10, k=2) == pytest.approx(3 / 10)  # {0, 1, 3}
    assert item_coverage(topk, n_items=10, k=3) == pytest.approx(5 / 10)  # {0..4}; -1 is padding
    with pytest.raises(ValueError):
        item_coverage(topk, n_items=10, k=4)


def test_rmse_mae() -> None:
    pred = torch.tensor([1.0, 2.0, 5.0, 4.0])
    target = torch.tensor([1.0, 4.0, 4.0, 4.0])
    # errors 0, -2, 1, 0: RMSE = sqrt(5 / 4), MAE = 3 / 4
    assert rmse(pred, target) == pytest.approx(1.118033988749895)
    assert mae(pred, target) == pytest.approx(0.75)
    assert rmse(target, target) == 0.0
    with pytest.raises(ValueError):
        rmse(pred, target[:3])
    with pytest.raises(ValueError):
        mae(torch.empty(0), torch.empty(0))
