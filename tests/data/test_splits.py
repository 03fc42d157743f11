"""The two protocols: exact RecBole ratio arithmetic, disjointness, determinism, canonical u1 files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distillrec.data.splits import make_split, ratio_split_per_user
from distillrec.errors import DataError


def test_ratio_split_counts_follow_recbole_floor_rule() -> None:
    # user 0: 25 rows -> valid = test = floor(2.5) = 2, train = 21; user 1: 9 rows -> 0/0/9; user 2: 10 -> 1/1/8
    users = np.repeat([0, 1, 2], [25, 9, 10])
    train, valid, test = ratio_split_per_user(users, seed=3)
    for user, (n_train, n_valid, n_test) in {0: (21, 2, 2), 1: (9, 0, 0), 2: (8, 1, 1)}.items():
        assert (users[train] == user).sum() == n_train
        assert (users[valid] == user).sum() == n_valid
        assert (users[test] == user).sum() == n_test


def test_ratio_split_is_a_partition_and_deterministic() -> None:
    users = np.random.default_rng(0).integers(0, 50, size=3000)
    parts = ratio_split_per_user(users, seed=7)
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(len(users)))
    again = ratio_split_per_user(users, seed=7)
    other = ratio_split_per_user(users, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[2], other[2])


def test_p_rank_on_ml100k(ml100k) -> None:
    split = make_split(ml100k, "p-rank", seed=0)
    counts = np.bincount(ml100k.users, minlength=ml100k.n_users)
    test_counts = np.bincount(ml100k.users[split.test], minlength=ml100k.n_users)
    assert np.array_equal(test_counts, np.floor(0.1 * counts).astype(int))
    assert len(split.train) + len(split.valid) + len(split.test) == 100_000
    assert (np.bincount(ml100k.users[split.train], minlength=ml100k.n_users) > 0).all()


def test_p_rating_u1_matches_grouplens_files(ml100k, ml100k_root) -> None:
    split = make_split(ml100k, "p-rating", seed=0, fold=1)
    test_file = pd.read_csv(ml100k_root / "ml-100k" / "u1.test", sep="\t", header=None)
    assert len(split.test) == len(test_file) == 20_000
    got = set(zip(ml100k.user_ids[ml100k.users[split.test]], ml100k.item_ids[ml100k.items[split.test]],
                  strict=True))
    want = set(zip(test_file[0].astype(str), test_file[1].astype(str), strict=True))
    assert got == want
    assert len(split.valid) == 8_000 and len(split.train) == 72_000
    assert not set(split.valid) & set(split.test) and not set(split.train) & set(split.valid)


def test_p_rating_validation_never_touches_test(tiny_synthetic) -> None:
    split = make_split(tiny_synthetic, "p-rating", seed=1)
    assert len(split.test) == round(0.2 * tiny_synthetic.n_interactions)
    assert len(split.valid) == (tiny_synthetic.n_interactions - len(split.test)) // 10
    assert not np.intersect1d(split.test, np.concatenate([split.train, split.valid])).size


def test_bad_protocol_and_fold_are_one_line_errors(tiny_synthetic) -> None:
    with pytest.raises(DataError, match="unknown protocol"):
        make_split(tiny_synthetic, "p-other")
    with pytest.raises(DataError, match="fold"):
        make_split(tiny_synthetic, "p-rating", fold=2)
