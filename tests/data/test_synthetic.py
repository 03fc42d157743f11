"""Tests of the synthetic MovieLens-like generator: determinism, exact counts, conventions and real signal."""

from __future__ import annotations

import re

import numpy as np
import pytest

from distillrec.data.dataset import Dataset, FieldKind
from distillrec.data.synthetic import AGE_BUCKET_EDGES, ERA_EDGES, SyntheticConfig, generate_synthetic
from distillrec.errors import DataError

SMALL = SyntheticConfig(n_users=300, n_items=500, n_interactions=20_000)
MEDIUM = SyntheticConfig(n_users=10_000, n_items=5_000, n_interactions=1_000_000, seed=3)


@pytest.fixture(scope="module")
def default() -> Dataset:
    return generate_synthetic(SyntheticConfig())


@pytest.fixture(scope="module")
def medium() -> Dataset:
    """Many user chunks and an item side of 5k: exercises the chunked sampler at 1M interactions."""
    return generate_synthetic(MEDIUM)


def _arrays(ds: Dataset) -> list[np.ndarray]:
    columns = [ds.users, ds.items, ds.ratings, ds.timestamps, ds.item_titles]
    return [*columns, *ds.user_features.values.values(), *ds.item_features.values.values()]


def _check_interactions(ds: Dataset, config: SyntheticConfig) -> None:
    """Invariants every generated dataset must satisfy."""
    assert ds.name == "synthetic"
    assert abs(ds.n_interactions - config.n_interactions) <= 0.01 * config.n_interactions
    assert ds.users.dtype == np.int64 and ds.items.dtype == np.int64 and ds.timestamps.dtype == np.int64
    assert ds.ratings.dtype == np.float32
    assert list(ds.user_ids[:3]) == ["1", "2", "3"] and ds.user_ids[-1] == str(config.n_users)
    assert ds.item_ids[-1] == str(config.n_items)
    user_counts = np.bincount(ds.users, minlength=ds.n_users)
    assert len(user_counts) == config.n_users and user_counts.min() >= config.min_ratings_per_user
    assert np.bincount(ds.items, minlength=ds.n_items).min() >= 1  # every item id is used
    assert len(np.unique(ds.users * ds.n_items + ds.items)) == ds.n_interactions  # no duplicate pairs
    assert set(np.unique(ds.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.2 <= ds.ratings.mean() <= 3.8
    assert np.all(np.diff(ds.users) >= 0)  # rows grouped by user ...
    same_user = ds.users[1:] == ds.users[:-1]
    assert np.all(np.diff(ds.timestamps)[same_user] >= 0)  # ... in time order


def test_same_seed_same_data_and_other_seed_differs() -> None:
    first, second = generate_synthetic(SMALL), generate_synthetic(SMALL)
    for a, b in zip(_arrays(first), _arrays(second), strict=True):
        np.testing.assert_array_equal(a, b)
    other = generate_synthetic(SyntheticConfig(n_users=300, n_items=500, n_interactions=20_000, seed=1))
    assert not np.array_equal(first.items, other.items)
    assert not np.array_equal(first.user_features.values["occupation"], other.user_features.values["occupation"])


def test_default_is_movielens_shaped(default: Dataset) -> None:
    config = SyntheticConfig()
    _check_interactions(default, config)
    assert (default.n_users, default.n_items, default.n_interactions) == (1000, 1700, 100_000)
    shares = np.bincount(default.ratings.astype(np.int64), minlength=6)[1:] / default.n_interactions
    assert shares[0] < 0.1 and shares[2] + shares[3] > 0.5  # few 1s, most ratings 3-4
    counts = np.bincount(default.users)
    assert np.median(counts) < counts.mean() < counts.max() / 3  # heavy-tailed activity
    assert counts.max() <= config.n_items // 2 + 1


def test_medium_size_invariants(medium: Dataset) -> None:
    _check_interactions(medium, MEDIUM)


@pytest.mark.parametrize(
    "config",
    [
        SyntheticConfig(n_users=50, n_items=60, n_interactions=3_000),  # every user rates every item
        SyntheticConfig(n_users=10, n_items=1_000, n_interactions=1_000),  # most items need the coverage fix
        SyntheticConfig(n_users=40, n_items=200, n_interactions=800),  # every user at the minimum
    ],
)
def test_edge_sizes(config: SyntheticConfig) -> None:
    _check_interactions(generate_synthetic(config), config)


def test_titles_ids_and_timestamps(default: Dataset) -> None:
    years = default.item_features.values["year"]
    assert default.item_titles[16] == f"Synthetic item 17 ({int(years[16])})"
    assert all(re.fullmatch(r"Synthetic item \d+ \(\d{4}\)", t) for t in default.item_titles[:50])
    assert default.item_index()["17"] == 16
    assert 8.7e8 < default.timestamps.min() <= default.timestamps.max() < 9.0e8


def test_feature_conventions(default: Dataset) -> None:
    users, items = default.user_features, default.item_features
    assert [f.name for f in users.fields] == ["gender", "age", "occupation", "zip"]
    assert [f.name for f in items.fields] == ["genres", "year"]
    for spec in users.fields:
        column = users.values[spec.name]
        assert column.shape == (default.n_users,)
        if spec.kind is FieldKind.CATEGORICAL:
            assert column.dtype == np.int64 and spec.vocab[0] == "<unk>"
            assert column.min() >= 1 and column.max() < spec.vocab_size  # 0 stays reserved for unknown
    assert users.field("gender").vocab == ("<unk>", "F", "M")
    assert users.field("occupation").vocab_size == 22 and users.field("zip").vocab_size == 51
    assert users.field("age").kind is FieldKind.NUMERIC and users.values["age"].dtype == np.float32
    assert users.values["age"].min() >= 7 and users.values["age"].max() <= 73
    genres = items.values["genres"]
    assert items.field("genres").kind is FieldKind.MULTI_CATEGORICAL
    assert genres.dtype == np.uint8 and genres.shape == (default.n_items, 18)
    assert items.field("genres").vocab_size == 18
    per_item = genres.sum(axis=1)
    assert per_item.min() == 1 and per_item.max() == 3
    assert np.all(genres.sum(axis=0) > 0)  # every genre occurs
    assert items.values["year"].dtype == np.float32
    assert items.values["year"].min() >= 1922 and items.values["year"].max() <= 1998


def _one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    return np.eye(width, dtype=np.float64)[codes]


def _feature_r2(ds: Dataset, user_perm: np.ndarray, item_perm: np.ndarray) -> float:
    """R² of a least-squares fit of ratings on one-hot features of each row's (possibly permuted) user and item.

    A fixed sample of 40k rows keeps the fit cheap; R² is stable at that size.
    """
    rows = np.random.default_rng(7).choice(ds.n_interactions, size=min(ds.n_interactions, 40_000), replace=False)
    u, i = user_perm[ds.users[rows]], item_perm[ds.items[rows]]
    uf, itf = ds.user_features.values, ds.item_features.values
    user_cols = [_one_hot(uf[n], ds.user_features.field(n).vocab_size) for n in ("gender", "occupation", "zip")]
    user_cols.append(_one_hot(np.digitize(uf["age"], AGE_BUCKET_EDGES), len(AGE_BUCKET_EDGES) + 1))
    item_cols = [itf["genres"].astype(np.float64), _one_hot(np.digitize(itf["year"], ERA_EDGES), len(ERA_EDGES) + 1)]
    design = np.hstack([np.hstack(user_cols)[u], np.hstack(item_cols)[i]])
    y = ds.ratings[rows].astype(np.float64)
    # Normal equations keep this fast; lstsq on the small Gram matrix copes with the collinear one-hot blocks
    # (each block sums to one, so together they also span the intercept).
    coef, *_ = np.linalg.lstsq(design.T @ design, design.T @ y, rcond=None)
    return float(1.0 - np.var(y - design @ coef) / np.var(y))


def _real_and_shuffled_r2(ds: Dataset) -> tuple[float, float]:
    rng = np.random.default_rng(123)
    identity_u, identity_i = np.arange(ds.n_users), np.arange(ds.n_items)
    real = _feature_r2(ds, identity_u, identity_i)
    return real, _feature_r2(ds, rng.permutation(ds.n_users), rng.permutation(ds.n_items))


def test_features_explain_ratings(default: Dataset) -> None:
    # Shuffled features still fit some per-entity noise (~0.03); the true ones explain several times more.
    real, shuffled = _real_and_shuffled_r2(default)
    assert real > 2 * shuffled + 0.05


def test_feature_share_zero_makes_features_uninformative() -> None:
    real, shuffled = _real_and_shuffled_r2(generate_synthetic(SyntheticConfig(feature_share=0.0)))
    assert real < shuffled + 0.03


def test_users_rate_what_they_like(default: Dataset) -> None:
    """The true interaction term is higher on rated pairs than on random pairs: ranking is learnable."""
    user_vec, item_vec = default.extra["user_factors"], default.extra["item_factors"]
    rated = np.einsum("nd,nd->n", user_vec[default.users], item_vec[default.items]).mean()
    random_items = np.random.default_rng(0).integers(0, default.n_items, default.n_interactions)
    baseline = np.einsum("nd,nd->n", user_vec[default.users], item_vec[random_items]).mean()
    assert rated > baseline + 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 0},
        {"n_interactions": 10},  # fewer than n_users * min_ratings_per_user
        {"n_users": 10, "n_items": 30, "n_interactions": 301},  # more than every pair
        {"feature_share": 1.5},
        {"noise_std": -1.0},
        {"min_ratings_per_user": 2_000},
    ],
)
def test_invalid_config_raises(kwargs: dict[str, float]) -> None:
    with pytest.raises(DataError):
        generate_synthetic(SyntheticConfig(**kwargs))
