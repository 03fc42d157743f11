"""Full ranking: exclusion, tie-breaking, batching and an end-to-end case worked out by hand."""

from __future__ import annotations

import pytest
import torch

from distillrec.data.interactions import InteractionMatrix
from distillrec.evaluation.ranking import (
    evaluate_ranking,
    full_ranking,
    success_rate,
    topk_excluding,
)

INF = float("inf")
NAN = float("nan")
NO_EXCLUSION = torch.empty(0, dtype=torch.int64)

# Hand-made case: 4 users x 6 items.
SCORES = torch.tensor([
    [0.9, 0.1, 0.8, 0.3, 0.7, 0.2],  # u0: item 0 excluded -> top 3 = [2, 4, 3]
    [0.5, 0.5, 0.4, 0.5, 0.0, 0.9],  # u1: item 5 excluded, three-way tie at 0.5 -> [0, 1, 3]
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # u2: items 4, 5 excluded -> [3, 2, 1]; no truth item, not evaluated
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # u3: nothing excluded, all tied -> [0, 1, 2]
])
TRAIN = InteractionMatrix.from_pairs([0, 1, 2, 2], [0, 5, 4, 5], n_users=4, n_items=6)
TEST = InteractionMatrix.from_pairs([0, 0, 1, 3], [4, 1, 3, 0], n_users=4, n_items=6)
# 37 users x 25 items, 3 distinct items per user
TRAIN_BIG = InteractionMatrix.from_pairs(torch.arange(37).repeat(3), (torch.arange(111) * 7) % 25, 37, 25)


def score_table(table: torch.Tensor, calls: list[int] | None = None):
    """A score_fn that looks users up in a fixed table and records the batch sizes it was asked for."""
    def score_fn(users: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(len(users))
        return table[users]
    return score_fn


def test_topk_excluding_hand_case() -> None:
    rows, cols = TRAIN.rows(torch.arange(4))
    top = topk_excluding(SCORES, rows, cols, k=3)
    assert top.tolist() == [[2, 4, 3], [0, 1, 3], [3, 2, 1], [0, 1, 2]]


def test_ties_break_by_lower_item_id() -> None:
    n = 200
    scores = torch.zeros(3, n)
    scores[1, 150:] = 1.0  # 50 items tied at the top, 150 tied below
    scores[2, ::7] = 2.0  # ties at the top spaced out
    scores[2, 3] = 3.0
    top = topk_excluding(scores, NO_EXCLUSION, NO_EXCLUSION, k=10)
    assert top[0].tolist() == list(range(10))
    assert top[1].tolist() == list(range(150, 160))
    assert top[2].tolist() == [3, 0, 7, 14, 21, 28, 35, 42, 49, 56]
    # ties straddling the cut: items 1..4 tie at 5.0, only two fit after item 9
    scores = torch.tensor([[0.0, 5.0, 5.0, 5.0, 5.0, 1.0, 1.0, 1.0, 1.0, 9.0]])
    assert topk_excluding(scores, NO_EXCLUSION, NO_EXCLUSION, k=3).tolist() == [[9, 1, 2]]
    assert topk_excluding(scores.flip(1), NO_EXCLUSION, NO_EXCLUSION, k=3).tolist() == [[0, 5, 6]]


def test_ties_match_stable_sort_on_random_data() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (64, 300), generator=gen).float()
    scores[::3] = torch.rand(22, 300, generator=gen)
    expected = scores.sort(dim=1, descending=True, stable=True).indices[:, :20]
    assert torch.equal(topk_excluding(scores, NO_EXCLUSION, NO_EXCLUSION, k=20), expected)


def test_exclusion_never_leaks() -> None:
    gen = torch.Generator().manual_seed(1)
    n_users, n_items = 50, 40
    users = torch.randint(0, n_users, (900,), generator=gen)
    items = torch.randint(0, n_items, (900,), generator=gen)
    seen = InteractionMatrix.from_pairs(users, items, n_users, n_items)
    scores = torch.randn(n_users, n_items, generator=gen)
    scores[users, items] = INF  # adversarial: excluded items score highest
    scores[:, ::5] = NAN
    top = full_ranking(score_table(scores), torch.arange(n_users), seen, k=n_items, batch_size=7)
    real = top >= 0
    rows = torch.arange(n_users).unsqueeze(1).expand_as(top)
    assert not seen.contains(rows[real], top[real]).any()
    assert not (top[real] % 5 == 0).any()  # NaN-scored items are never recommended
    usable = ~seen.to_dense() & ~scores.isnan()
    assert torch.equal(real.sum(1), usable.sum(1))  # every usable item is listed, nothing else


def test_caller_scores_untouched_and_padding() -> None:
    scores = torch.tensor([[NAN, 2.0, -INF, 1.0]])
    before = scores.clone()
    top = topk_excluding(scores, torch.tensor([0]), torch.tensor([1]), k=6)
    assert top.tolist() == [[3, -1, -1, -1, -1, -1]]
    assert torch.equal(scores.isnan(), before.isnan())
    assert torch.equal(scores.nan_to_num(), before.nan_to_num())


def test_batching_does_not_change_results() -> None:
    gen = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 3, (37, 25), generator=gen).float()
    users = torch.randperm(37, generator=gen)
    one = full_ranking(score_table(scores), users, TRAIN_BIG, k=8, batch_size=1000)
    calls: list[int] = []
    many = full_ranking(score_table(scores, calls), users, TRAIN_BIG, k=8, batch_size=1, progress=True)
    assert torch.equal(one, many)
    assert calls == [1] * 37
    assert one.shape == (37, 8) and one.dtype == torch.int64


def test_full_ranking_never_exceeds_batch() -> None:
    calls: list[int] = []
    full_ranking(score_table(torch.rand(10, 5), calls), torch.arange(10), None, k=2, batch_size=4)
    assert calls == [4, 4, 2]
    assert full_ranking(score_table(torch.rand(1, 5)), torch.arange(0), None, k=2).shape == (0, 2)


def test_score_fn_shape_checked() -> None:
    with pytest.raises(ValueError):
        full_ranking(lambda u: torch.zeros(len(u), 5), torch.arange(4), TRAIN, k=2)  # TRAIN has 6 items
    with pytest.raises(ValueError):
        full_ranking(lambda u: torch.zeros(1, 6), torch.arange(4), TRAIN, k=2)


def test_evaluate_ranking_hand_case() -> None:
    report = evaluate_ranking(score_table(SCORES), TEST, TRAIN, ks=(1, 3), batch_size=2, n_users_total=5)
    assert report.users.tolist() == [0, 1, 3]  # u2 has no test item
    assert report.topk.tolist() == [[2, 4, 3], [0, 1, 3], [0, 1, 2]]
    assert report.n_evaluated == 3 and report.n_users_total == 5
    # u0: hit at rank 2 of 2 test items; u1: hit at rank 3 of 1; u3: hit at rank 1 of 1
    torch.testing.assert_close(report.per_user["mrr@3"], torch.tensor([1 / 2, 1 / 3, 1.0], dtype=torch.float64))
    torch.testing.assert_close(report.per_user["ndcg@3"],
                               torch.tensor([0.38685280723454163, 0.5, 1.0], dtype=torch.float64))
    expected = {
        "recall@3": (1 / 2 + 1 + 1) / 3, "precision@3": 1 / 3, "hit@3": 1.0, "mrr@3": (1 / 2 + 1 / 3 + 1) / 3,
        "ndcg@3": (0.38685280723454163 + 0.5 + 1) / 3,
        "recall@1": 1 / 3, "precision@1": 1 / 3, "hit@1": 1 / 3, "mrr@1": 1 / 3, "ndcg@1": 1 / 3,
        "coverage@1": 2 / 6, "coverage@3": 5 / 6,  # {2, 0} and {0, 1, 2, 3, 4}
    }
    assert set(report.metrics) == set(expected)
    for name, value in expected.items():
        assert report.metrics[name] == pytest.approx(value, abs=1e-12), name


def test_padding_slot_is_never_a_hit() -> None:
    # u1 has one remaining item, so slot 2 is -1; -1 must not alias u0's last item (5) through the flat keys.
    scores = torch.zeros(2, 6)
    exclude = InteractionMatrix.from_pairs([1] * 5, [0, 1, 2, 3, 4], n_users=2, n_items=6)
    truth = InteractionMatrix.from_pairs([0, 1], [5, 0], n_users=2, n_items=6)
    report = evaluate_ranking(score_table(scores), truth, exclude, ks=(2,))
    assert report.topk.tolist() == [[0, 1], [5, -1]]
    assert report.metrics["hit@2"] == 0.0


def test_success_rate() -> None:
    # k=5 over 6 items: u0, u1 have 5 items left, u2 only 4 (two excluded), u3 has all 6, u4 is cold (no row)
    table = torch.cat([SCORES, torch.rand(1, 6)])
    assert success_rate(score_table(table), 5, TRAIN, k=5, batch_size=2) == pytest.approx(4 / 5)
    assert success_rate(score_table(table), 5, TRAIN, k=4, batch_size=3) == 1.0
    assert success_rate(score_table(table), 5, None, k=6, batch_size=3) == 1.0
    assert success_rate(score_table(table), 5, None, k=7, batch_size=3) == 0.0
    broken = table.clone()
    broken[0, 3] = NAN  # u0 down to 4 usable items
    broken[3, 1] = INF  # a non-finite score is not a real recommendation either
    assert success_rate(score_table(broken), 5, TRAIN, k=5, batch_size=1) == pytest.approx(2 / 5)
