"""A seeded synthetic rating dataset shaped like MovieLens-100K, at any size.

Real data is small (ml-100k) or slow to fetch and license-bound; a generator lets tests, benchmarks and
scaling experiments run anywhere, and it knows the ground truth. The model behind it:

* Every user and item has a latent vector and a bias. A configurable share of their variance comes from
  embeddings of the side features (user gender, age bucket, occupation, zip region; item genres and
  release era) and the rest is individual, so models that use features can beat id-only models,
  most visibly on users and items with few ratings.
* Which items a user rates is sampled without replacement with probability proportional to
  ``popularity ** popularity_skew * exp(affinity_strength * affinity)``: popular items are rated more
  and users mostly rate what they like, so top-k ranking is learnable. Sampling uses the Gumbel-top-k
  trick on chunks of users so memory stays bounded.
* The rating is ``clip(round(mu + user bias + item bias + u·v + noise), 1, 5)``, with ``mu`` solved for so
  the mean rating is ``mean_rating``; with the default spreads this gives MovieLens-like proportions
  (few 1s, most ratings 3-4).

Every user gets at least ``min_ratings_per_user`` ratings and the total equals ``n_interactions`` exactly.
Every item is rated at least once: items the sampler missed take over a randomly chosen rating of an item
rated more than once (same user, so per-user counts are unchanged), which keeps ``Dataset`` ids contiguous
and equal to the ids used. Ground-truth factors are returned in ``Dataset.extra`` for oracle checks.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from distillrec.data.dataset import Dataset, FeatureTable, FieldKind, FieldSpec
from distillrec.errors import DataError

UNKNOWN = "<unk>"

# MovieLens-100K genres with their movie counts there; the counts set how often each genre is drawn.
GENRE_COUNTS: dict[str, int] = {
    "Action": 251, "Adventure": 135, "Animation": 42, "Children's": 122, "Comedy": 505, "Crime": 109,
    "Documentary": 50, "Drama": 725, "Fantasy": 22, "Film-Noir": 24, "Horror": 92, "Musical": 56,
    "Mystery": 61, "Romance": 247, "Sci-Fi": 101, "Thriller": 251, "War": 71, "Western": 27,
}
GENRES_PER_ITEM_PROBS = (0.5, 0.35, 0.15)  # P(1, 2, 3 genres)

# MovieLens-100K occupations with their user counts there.
OCCUPATION_COUNTS: dict[str, int] = {
    "administrator": 79, "artist": 28, "doctor": 7, "educator": 95, "engineer": 67, "entertainment": 18,
    "executive": 32, "healthcare": 16, "homemaker": 7, "lawyer": 12, "librarian": 51, "marketing": 26,
    "none": 9, "other": 105, "programmer": 66, "retired": 14, "salesman": 12, "scientist": 31,
    "student": 196, "technician": 27, "writer": 45,
}
AGE_BUCKET_EDGES = (18, 25, 35, 45, 50, 56)  # the MovieLens-1M age groups
ERA_EDGES = (1950, 1970, 1980, 1990, 1994, 1996)  # release-year buckets that shape item factors
FIRST_YEAR, LAST_YEAR = 1922, 1998
T_START, T_END = 874_724_710, 893_286_638  # the ml-100k rating period (Sep 1997 - Apr 1998)

# Spreads of the rating components; with noise_std=0.7 the rating std is close to ml-100k's 1.13.
USER_BIAS_STD = 0.45
ITEM_BIAS_STD = 0.55
INTERACTION_STD = 0.6

CHUNK_ELEMENTS = 1 << 22  # users x items scores per sampling chunk (16 MiB of float32 per array)
ROW_BLOCK = 1 << 20  # interactions per block when scoring pairs
MAX_WORKERS = 8  # sampling threads; results do not depend on this


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of the synthetic dataset; defaults mimic MovieLens-100K.

    ``feature_share`` is the fraction of the variance of latent vectors, biases and item popularity that
    the side features determine (0 = features are pure noise, 1 = entities are fully described by them).
    ``popularity_skew`` is the exponent on item popularity (lognormal, unit log-scale) in the choice of
    rated items; ``affinity_strength`` (gamma) is how strongly users pick items they would rate highly.
    """

    n_users: int = 1000
    n_items: int = 1700
    n_interactions: int = 100_000
    seed: int = 0
    latent_dim: int = 16
    popularity_skew: float = 1.2
    affinity_strength: float = 1.0
    noise_std: float = 0.7
    feature_share: float = 0.5
    mean_rating: float = 3.53
    min_ratings_per_user: int = 20
    user_activity_sigma: float = 1.0
    n_zip_regions: int = 50

    def validate(self) -> None:
        """Reject configurations that cannot be generated, naming the field at fault."""
        if min(self.n_users, self.n_items, self.latent_dim, self.min_ratings_per_user, self.n_zip_regions) < 1:
            raise DataError("synthetic: n_users, n_items, latent_dim, min_ratings_per_user, n_zip_regions must be >= 1")
        if self.min_ratings_per_user > self.n_items:
            raise DataError(f"synthetic: min_ratings_per_user={self.min_ratings_per_user} > n_items={self.n_items}")
        low = max(self.n_users * self.min_ratings_per_user, self.n_items)
        if not low <= self.n_interactions <= self.n_users * self.n_items:
            raise DataError(f"synthetic: n_interactions={self.n_interactions} must lie in [{low}, "
                            f"{self.n_users * self.n_items}] (every user >= min ratings, every item rated once)")
        if not 0.0 <= self.feature_share <= 1.0:
            raise DataError(f"synthetic: feature_share={self.feature_share} must lie in [0, 1]")
        if min(self.noise_std, self.popularity_skew, self.affinity_strength, self.user_activity_sigma) < 0:
            raise DataError("synthetic: noise_std, popularity_skew, affinity_strength and user_activity_sigma "
                            "must be >= 0")
        if not 1.0 <= self.mean_rating <= 5.0:
            raise DataError(f"synthetic: mean_rating={self.mean_rating} must lie in [1, 5]")


@dataclass(frozen=True)
class _Truth:
    """Ground-truth parameters of the rating and selection model."""

    user_vec: np.ndarray  # float32 [n_users, d], unit variance per dimension
    item_vec: np.ndarray  # float32 [n_items, d]
    user_bias: np.ndarray  # float32 [n_users], in rating units
    item_bias: np.ndarray  # float32 [n_items], in rating units
    item_log_pop: np.ndarray  # float32 [n_items], standardised log popularity


def generate_synthetic(config: SyntheticConfig | None = None) -> Dataset:
    """Generate the dataset described by ``config`` (deterministic in ``config.seed``)."""
    config = config or SyntheticConfig()
    config.validate()
    feat_ss, count_ss, select_ss, fix_ss, rating_ss, time_ss = np.random.SeedSequence(config.seed).spawn(6)
    feat_rng = np.random.default_rng(feat_ss)
    user_table, user_signal = _user_features(feat_rng, config)
    item_table, item_signal, years = _item_features(feat_rng, config)
    truth = _latent_model(feat_rng, config, user_signal, item_signal)
    counts = _user_counts(np.random.default_rng(count_ss), config)
    users, items = _select_items(truth, counts, config, select_ss)
    items = _cover_all_items(np.random.default_rng(fix_ss), items, config.n_items)
    ratings, mu = _ratings(np.random.default_rng(rating_ss), truth, users, items, config)
    timestamps = _timestamps(np.random.default_rng(time_ss), users, config.n_users)
    order = np.lexsort((timestamps, users))  # rows grouped by user, in time order within a user
    item_ids = np.arange(1, config.n_items + 1).astype(str)
    years_text = np.char.add(np.char.add(" (", years.astype(str)), ")")
    titles = np.char.add(np.char.add("Synthetic item ", item_ids), years_text)
    return Dataset(
        name="synthetic",
        user_ids=np.arange(1, config.n_users + 1).astype(str).astype(object),
        item_ids=item_ids.astype(object),
        users=users[order],
        items=items[order],
        ratings=ratings[order],
        timestamps=timestamps[order],
        rating_scale=(1.0, 5.0),
        item_titles=titles.astype(object),
        user_features=user_table,
        item_features=item_table,
        extra={"config": config, "global_mean": mu, "user_factors": truth.user_vec, "item_factors": truth.item_vec,
               "user_bias": truth.user_bias, "item_bias": truth.item_bias, "item_log_popularity": truth.item_log_pop},
    )


# --- side features -------------------------------------------------------------------------------------------


def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard Gumbel noise in float32 (``-log`` of a standard exponential, which is fast and exact)."""
    with np.errstate(divide="ignore"):
        return -np.log(rng.standard_exponential(shape, dtype=np.float32))


def _vocab(labels: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Categorical vocabulary: code 0 is unknown, real categories are codes 1..V-1."""
    return (UNKNOWN, *labels)


def _embed(rng: np.random.Generator, codes: np.ndarray, vocab_size: int, width: int) -> np.ndarray:
    """Look up a fresh random N(0, 1) embedding table of one categorical field."""
    return rng.standard_normal((vocab_size, width), dtype=np.float32)[codes]


def _user_features(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[FeatureTable, np.ndarray]:
    """Sample ml-100k-like user demographics and the signal they carry.

    Returns the feature table and ``[n_users, d + 2]`` feature signal (latent dims, bias, unused activity
    column) summed from embeddings of gender, age bucket, occupation and zip region.
    """
    n = cfg.n_users
    age = np.clip(np.rint(np.exp(rng.normal(np.log(30.0), 0.35, n))), 7, 73).astype(np.float32)
    gender = np.where(rng.random(n) < 0.71, 2, 1).astype(np.int64)  # vocab: <unk>, F, M
    occ_labels = tuple(OCCUPATION_COUNTS)
    logits = np.log(np.array(list(OCCUPATION_COUNTS.values()), dtype=np.float32))[None, :].repeat(n, axis=0)
    student, retired = occ_labels.index("student"), occ_labels.index("retired")
    logits[:, student] += np.where(age < 25, 1.5, np.where(age >= 35, -2.0, 0.0))  # students are young
    logits[:, retired] += np.where(age >= 56, 3.0, np.where(age < 45, -4.0, 0.0))  # retirees are old
    occupation = np.argmax(logits + _gumbel(rng, logits.shape), axis=1).astype(np.int64) + 1
    zip_weights = rng.permutation(1.0 / np.arange(1, cfg.n_zip_regions + 1) ** 0.8)
    zip_code = rng.choice(cfg.n_zip_regions, size=n, p=zip_weights / zip_weights.sum()).astype(np.int64) + 1
    age_bucket = np.searchsorted(AGE_BUCKET_EDGES, age, side="right")
    width = cfg.latent_dim + 2
    signal = (_embed(rng, gender, 3, width) + _embed(rng, age_bucket, len(AGE_BUCKET_EDGES) + 1, width)
              + _embed(rng, occupation, len(occ_labels) + 1, width)
              + _embed(rng, zip_code, cfg.n_zip_regions + 1, width))
    fields = (
        FieldSpec("gender", FieldKind.CATEGORICAL, _vocab(("F", "M"))),
        FieldSpec("age", FieldKind.NUMERIC),
        FieldSpec("occupation", FieldKind.CATEGORICAL, _vocab(occ_labels)),
        FieldSpec("zip", FieldKind.CATEGORICAL, _vocab(tuple(f"{k:02d}" for k in range(cfg.n_zip_regions)))),
    )
    values = {"gender": gender, "age": age, "occupation": occupation, "zip": zip_code}
    return FeatureTable(fields, values), signal


def _item_features(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[FeatureTable, np.ndarray, np.ndarray]:
    """Sample ml-100k-like genres (1-3 per item) and release years and the signal they carry.

    Returns the feature table, ``[n_items, d + 2]`` feature signal (latent dims, bias, popularity) and
    the integer years (for titles). Genres contribute the mean of their embeddings (scaled to unit
    variance), the release era one embedding.
    """
    n = cfg.n_items
    genre_labels = tuple(GENRE_COUNTS)
    log_freq = np.log(np.array(list(GENRE_COUNTS.values()), dtype=np.float32))
    n_genres = rng.choice(len(GENRES_PER_ITEM_PROBS), size=n, p=GENRES_PER_ITEM_PROBS) + 1
    ranked = np.argsort(-(log_freq[None, :] + _gumbel(rng, (n, len(genre_labels)))), axis=1)[:, :3]
    take = np.arange(3)[None, :] < n_genres[:, None]  # Gumbel-top-k: genres without replacement
    genres = np.zeros((n, len(genre_labels)), dtype=np.uint8)
    genres[np.repeat(np.arange(n), n_genres), ranked[take]] = 1
    recent = LAST_YEAR - np.floor(rng.exponential(3.0, n))
    classic = rng.integers(FIRST_YEAR, 1990, n)
    years = np.clip(np.where(rng.random(n) < 0.75, recent, classic), FIRST_YEAR, LAST_YEAR).astype(np.int64)
    era = np.searchsorted(ERA_EDGES, years, side="right")
    width = cfg.latent_dim + 2
    genre_table = rng.standard_normal((len(genre_labels), width), dtype=np.float32)
    genre_part = (genres.astype(np.float32) @ genre_table) / np.sqrt(n_genres, dtype=np.float32)[:, None]
    signal = genre_part + _embed(rng, era, len(ERA_EDGES) + 1, width)
    fields = (
        FieldSpec("genres", FieldKind.MULTI_CATEGORICAL, genre_labels),
        FieldSpec("year", FieldKind.NUMERIC),
    )
    return FeatureTable(fields, {"genres": genres, "year": years.astype(np.float32)}), signal, years


# --- latent model --------------------------------------------------------------------------------------------


def _standardize(x: np.ndarray) -> np.ndarray:
    """Centre and scale each column to unit variance (constant columns become zero)."""
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    return (x / np.where(std > 0, std, 1.0)).astype(np.float32)


def _mix(rng: np.random.Generator, signal: np.ndarray, share: float) -> np.ndarray:
    """Unit-variance columns whose variance is ``share`` from ``signal`` and the rest individual noise."""
    own = rng.standard_normal(signal.shape, dtype=np.float32)
    mixed = np.sqrt(share) * _standardize(signal) + np.sqrt(1.0 - share) * _standardize(own)
    return mixed.astype(np.float32)


def _latent_model(rng: np.random.Generator, cfg: SyntheticConfig, user_signal: np.ndarray,
                  item_signal: np.ndarray) -> _Truth:
    """Turn feature signals into latent vectors, biases and popularity with ``feature_share`` of the variance."""
    d = cfg.latent_dim
    users = _mix(rng, user_signal, cfg.feature_share)
    items = _mix(rng, item_signal, cfg.feature_share)
    return _Truth(
        user_vec=np.ascontiguousarray(users[:, :d]),
        item_vec=np.ascontiguousarray(items[:, :d]),
        user_bias=(USER_BIAS_STD * users[:, d]).astype(np.float32),
        item_bias=(ITEM_BIAS_STD * items[:, d]).astype(np.float32),
        item_log_pop=np.ascontiguousarray(items[:, d + 1]),
    )


def _max_ratings_per_user(cfg: SyntheticConfig) -> int:
    """Half the catalogue (ml-100k's busiest user rated 44%), or all of it when the density demands more."""
    half = max(cfg.min_ratings_per_user, -(-cfg.n_items // 2))
    return half if cfg.n_interactions <= cfg.n_users * half else cfg.n_items


def _user_counts(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Heavy-tailed ratings per user: ``min + lognormal share of the rest``, summing exactly to n_interactions.

    Counts are capped (see :func:`_max_ratings_per_user`) by water-filling (capped users are fixed, the rest
    re-share the budget), then rounded with the largest-remainder method so the total is exact.
    """
    extra = cfg.n_interactions - cfg.n_users * cfg.min_ratings_per_user
    cap = _max_ratings_per_user(cfg) - cfg.min_ratings_per_user
    weights = rng.lognormal(0.0, cfg.user_activity_sigma, cfg.n_users)
    capped = np.zeros(cfg.n_users, dtype=bool)
    while True:  # at most a handful of rounds: each one caps every user still over the limit
        free_budget = extra - cap * int(capped.sum())
        free_weight = weights[~capped].sum()
        alloc = np.where(capped, float(cap), weights * (free_budget / free_weight if free_weight > 0 else 0.0))
        over = ~capped & (alloc > cap)
        if not over.any():
            break
        capped |= over
    alloc = np.minimum(alloc, cap)
    base = np.floor(alloc).astype(np.int64)
    short = extra - int(base.sum())
    remainder = np.where(base < cap, alloc - base, -1.0)
    base[np.argsort(-remainder, kind="stable")[:short]] += 1
    return base + cfg.min_ratings_per_user


# --- which items each user rates ------------------------------------------------------------------------------


def _select_items(truth: _Truth, counts: np.ndarray, cfg: SyntheticConfig,
                  seed_seq: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """Sample each user's rated items without replacement, in chunks of users of similar activity.

    The selection logit is ``popularity_skew * log_pop + affinity_strength * affinity`` with affinity the
    standardised part of the rating that depends on the item (item bias + interaction). Users are processed
    in order of their count so a chunk's top-k width fits all its users. Each chunk has its own random
    stream, so chunks are sampled on a thread pool (numpy releases the GIL in the heavy kernels) and the
    result does not depend on scheduling or on the machine.
    """
    gamma = cfg.affinity_strength / np.hypot(ITEM_BIAS_STD, INTERACTION_STD)
    item_logit = (cfg.popularity_skew * truth.item_log_pop + gamma * truth.item_bias).astype(np.float32)
    item_side = np.ascontiguousarray(truth.item_vec.T * np.float32(gamma * INTERACTION_STD / np.sqrt(cfg.latent_dim)))
    by_count = np.argsort(counts, kind="stable")
    rows = max(1, CHUNK_ELEMENTS // cfg.n_items)
    chunks = [by_count[start:start + rows] for start in range(0, cfg.n_users, rows)]

    workers = min(MAX_WORKERS, os.cpu_count() or 1, len(chunks))
    pending: deque[Future[np.ndarray]] = deque()
    items: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk, child in zip(chunks, seed_seq.spawn(len(chunks)), strict=True):
            # The matmul stays on this thread: multi-threaded OpenBLAS calls from every pool thread would
            # oversubscribe the cores, while the RNG, log and partition in _top_k parallelise cleanly.
            logits = np.matmul(truth.user_vec[chunk], item_side)
            logits += item_logit
            pending.append(pool.submit(_top_k, np.random.default_rng(child), logits, counts[chunk]))
            if len(pending) > workers:  # bounds memory to about workers + 1 chunks in flight
                items.append(pending.popleft().result())
        items.extend(future.result() for future in pending)
    users = [np.repeat(chunk, counts[chunk]) for chunk in chunks]
    return np.concatenate(users), np.concatenate(items)


def _top_k(rng: np.random.Generator, logits: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Gumbel-top-k: row ``r`` draws ``k[r]`` distinct columns with probabilities softmax(logits[r]).

    Returns the chosen columns of all rows concatenated (row-major), ``k.sum()`` entries. ``logits`` is
    overwritten: it becomes the negated keys ``log(E) - logits`` (E standard exponential, so ``-log(E)`` is
    Gumbel), whose smallest entries are the top-k, computed in place to save passes over memory.
    """
    noise = rng.standard_exponential(logits.shape, dtype=np.float32)
    with np.errstate(divide="ignore"):  # a rare float32 E == 0 means Gumbel +inf: always chosen
        np.log(noise, out=noise)
    keys = np.subtract(noise, logits, out=logits)
    del noise
    k_max = int(k.max())
    if k_max < keys.shape[1]:
        top = np.argpartition(keys, k_max - 1, axis=1)[:, :k_max]
    else:
        top = np.broadcast_to(np.arange(keys.shape[1]), keys.shape)
    best_first = np.take_along_axis(top, np.argsort(np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
    return best_first[np.arange(k_max)[None, :] < k[:, None]].astype(np.int64)


def _cover_all_items(rng: np.random.Generator, items: np.ndarray, n_items: int) -> np.ndarray:
    """Give every never-chosen item one rating, taken from a random row of an item rated more than once.

    The row keeps its user, so per-user counts and the total stay fixed; the missing items are distinct and
    had no rows, so no duplicate pair can arise; each donor item keeps its first row, so none drops to zero.
    """
    missing = np.flatnonzero(np.bincount(items, minlength=n_items) == 0)
    if len(missing) == 0:
        return items
    _, first = np.unique(items, return_index=True)
    donor = np.ones(len(items), dtype=bool)
    donor[first] = False
    rows = rng.choice(np.flatnonzero(donor), size=len(missing), replace=False)
    items = items.copy()
    items[rows] = rng.permutation(missing)
    return items


# --- ratings and timestamps -----------------------------------------------------------------------------------


def _ratings(rng: np.random.Generator, truth: _Truth, users: np.ndarray, items: np.ndarray,
             cfg: SyntheticConfig) -> tuple[np.ndarray, float]:
    """Integer ratings 1-5 (float32) from the latent model; returns them and the calibrated global mean."""
    scale = np.float32(INTERACTION_STD / np.sqrt(cfg.latent_dim))
    scores = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), ROW_BLOCK):  # blocks keep the [rows, d] gathers small
        u, i = users[start:start + ROW_BLOCK], items[start:start + ROW_BLOCK]
        dot = np.einsum("nd,nd->n", truth.user_vec[u], truth.item_vec[i])
        scores[start:start + ROW_BLOCK] = truth.user_bias[u] + truth.item_bias[i] + scale * dot
    scores += np.float32(cfg.noise_std) * rng.standard_normal(len(scores), dtype=np.float32)
    sample = scores if len(scores) <= ROW_BLOCK else scores[rng.integers(0, len(scores), ROW_BLOCK)]
    mu = _calibrate_mean(sample, cfg.mean_rating)
    return np.clip(np.rint(scores + np.float32(mu)), 1, 5).astype(np.float32), mu


def _calibrate_mean(scores: np.ndarray, target: float) -> float:
    """Offset ``mu`` with ``mean(clip(round(mu + scores), 1, 5)) == target`` (bisection; the map is monotone)."""
    lo, hi = -5.0, 10.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if np.clip(np.rint(scores + np.float32(mid)), 1, 5).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _timestamps(rng: np.random.Generator, users: np.ndarray, n_users: int) -> np.ndarray:
    """Unix times: each user is active over a lognormal span (median a week) placed at random in the ml-100k period."""
    period = T_END - T_START
    span = np.clip(np.exp(rng.normal(np.log(7 * 86_400), 2.0, n_users)), 60, period).astype(np.int64)
    start = T_START + (rng.random(n_users) * (period - span)).astype(np.int64)
    offset = (rng.random(len(users)) * span[users]).astype(np.int64)
    return start[users] + offset
