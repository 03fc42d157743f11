"""The two evaluation protocols of ``shared/PROTOCOL.md`` as train/valid/test index splits.

* P-RANK: per user, shuffle that user's interactions with a seeded RNG and split 8:1:1 by count exactly as
  RecBole's ratio split: ``valid = test = floor(0.1 n)``, ``train = n - valid - test``, in that order
  (RecBole's ``split_by_ratio`` takes the first part of the shuffled list as train, then valid, then test).
* P-RATING: ml-100k uses GroupLens's ``u{fold}.base`` / ``u{fold}.test``; other sets a seeded random 80/20
  split of all ratings. Validation is a seeded random 10% of the *train* part only.

Splits are index arrays into the dataset's interaction arrays, so every model sees the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillrec.data.dataset import Dataset
from distillrec.data.interactions import InteractionMatrix
from distillrec.errors import DataError

PROTOCOLS = ("p-rank", "p-rating")


@dataclass(frozen=True)
class Split:
    """Row indices of the train, valid and test parts of a dataset under one protocol."""

    protocol: str
    seed: int
    fold: int | None
    train: np.ndarray  # int64 row indices into the dataset's interactions
    valid: np.ndarray
    test: np.ndarray

    def matrix(self, dataset: Dataset, *parts: str) -> InteractionMatrix:
        """User x item CSR of the union of the named parts (e.g. ``"train", "valid"``)."""
        rows = np.concatenate([getattr(self, p) for p in parts])
        return InteractionMatrix.from_pairs(dataset.users[rows], dataset.items[rows], dataset.n_users,
                                            dataset.n_items)

    def frame(self, dataset: Dataset, part: str) -> pd.DataFrame:
        """One part with original ids: columns ``user,item,rating,timestamp`` (for ``distillrec split``)."""
        rows = getattr(self, part)
        return pd.DataFrame({
            "user": dataset.user_ids[dataset.users[rows]],
            "item": dataset.item_ids[dataset.items[rows]],
            "rating": dataset.ratings[rows],
            "timestamp": dataset.timestamps[rows],
        })


def make_split(dataset: Dataset, protocol: str, seed: int = 0, fold: int | None = None) -> Split:
    """Split ``dataset`` under ``protocol`` (``p-rank`` or ``p-rating``); deterministic in ``seed``."""
    protocol = protocol.lower()
    if protocol == "p-rank":
        if fold is not None:
            raise DataError("--fold applies to p-rating only")
        train, valid, test = ratio_split_per_user(dataset.users, seed)
        return Split(protocol, seed, None, train, valid, test)
    if protocol == "p-rating":
        return rating_split(dataset, seed, fold)
    raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def ratio_split_per_user(users: np.ndarray, seed: int,
                         ratios: tuple[float, float] = (0.1, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RecBole-style per-user ratio split, vectorised: rank each user's rows by a random key, cut by count."""
    rng = np.random.default_rng(seed)
    keys = rng.random(len(users))
    order = np.lexsort((keys, users))  # grouped by user, shuffled within user
    sorted_users = users[order]
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(users)) - starts[sorted_users]
    n = counts[sorted_users]
    n_valid = np.floor(ratios[0] * n).astype(np.int64)
    n_test = np.floor(ratios[1] * n).astype(np.int64)
    n_train = n - n_valid - n_test
    train = order[position < n_train]
    valid = order[(position >= n_train) & (position < n_train + n_valid)]
    test = order[position >= n_train + n_valid]
    return np.sort(train), np.sort(valid), np.sort(test)


def rating_split(dataset: Dataset, seed: int, fold: int | None) -> Split:
    """P-RATING: canonical fold files for ml-100k, a seeded 80/20 elsewhere; 10% of train for validation."""
    if dataset.name == "ml-100k":
        fold = 1 if fold is None else fold
        train_all, test = _grouplens_fold(dataset, fold)
    else:
        if fold is not None:
            raise DataError(f"--fold needs predefined folds (ml-100k); {dataset.name} uses a seeded 80/20 split")
        perm = np.random.default_rng(seed).permutation(dataset.n_interactions)
        n_test = round(0.2 * dataset.n_interactions)
        test, train_all = np.sort(perm[:n_test]), perm[n_test:]
    perm = np.random.default_rng(seed + 1_000_003).permutation(train_all)
    n_valid = len(train_all) // 10
    return Split("p-rating", seed, fold, np.sort(perm[n_valid:]), np.sort(perm[:n_valid]), np.sort(test))


def _grouplens_fold(dataset: Dataset, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``u{fold}.base`` and ``u{fold}.test``, matched to the dataset by (user, item)."""
    if fold not in (1, 2, 3, 4, 5):
        raise DataError(f"--fold must be 1..5 for ml-100k, got {fold}")
    if dataset.source_dir is None:
        raise DataError("ml-100k folds need the GroupLens folder (dataset has no source_dir)")
    parts = []
    for suffix in ("base", "test"):
        path = Path(dataset.source_dir) / f"u{fold}.{suffix}"
        if not path.is_file():
            raise DataError(f"{path}: missing; the ml-100k folder must hold GroupLens's u1..u5 split files")
        parts.append(_match_rows(dataset, path))
    base, test = parts
    if np.intersect1d(base, test).size:
        raise DataError(f"u{fold}.base and u{fold}.test overlap")
    return base, test


def _match_rows(dataset: Dataset, path: Path) -> np.ndarray:
    """Interaction row indices of the (user, item) pairs listed in a GroupLens split file."""
    frame = pd.read_csv(path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"],
                        dtype={"user": str, "item": str})
    user_code = pd.Series(np.arange(dataset.n_users), index=dataset.user_ids.astype(str))
    item_code = pd.Series(np.arange(dataset.n_items), index=dataset.item_ids.astype(str))
    users = user_code.reindex(frame["user"]).to_numpy()
    items = item_code.reindex(frame["item"]).to_numpy()
    if np.isnan(users).any() or np.isnan(items).any():
        line = int(np.flatnonzero(np.isnan(users) | np.isnan(items))[0]) + 1
        raise DataError(f"{path}:{line}: user or item not in u.data")
    key_of_row = dataset.users * dataset.n_items + dataset.items
    order = np.argsort(key_of_row)
    wanted = users.astype(np.int64) * dataset.n_items + items.astype(np.int64)
    pos = np.searchsorted(key_of_row, wanted, sorter=order).clip(max=len(order) - 1)
    found = key_of_row[order[pos]] == wanted
    if not found.all():
        line = int(np.flatnonzero(~found)[0]) + 1
        raise DataError(f"{path}:{line}: (user, item) pair not in u.data")
    return np.sort(order[pos])
