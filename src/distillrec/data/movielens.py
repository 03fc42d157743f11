"""Loaders for unpacked GroupLens MovieLens folders (ml-100k, ml-1m, ml-latest-small, ml-20m, ml-25m).

Ratings are read with explicit dtypes by the pandas C parser (ml-25m's 25M rows in seconds) and then go
through the same :func:`~distillrec.data.tabular.validate_interactions` as user files, so a damaged
download is reported with its file and line instead of producing a silently wrong dataset.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from distillrec.data.dataset import Dataset, FeatureTable
from distillrec.data.tabular import (
    align_rows,
    categorical_field,
    encode_frame,
    multi_categorical_field,
    numeric_field,
    read_delimited,
    reading,
    validate_interactions,
)
from distillrec.errors import DataError

MOVIELENS_DATASETS = ("ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m")
#: File whose presence marks an unpacked folder as complete.
KEY_FILES = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-latest-small": "ratings.csv",
             "ml-20m": "ratings.csv", "ml-25m": "ratings.csv"}
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
#: ml-1m stores occupations as codes 0..20; these are the labels from its README.
ML1M_OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
_RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
_RATING_DTYPES = {"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64}
_YEAR_IN_TITLE = r"\((\d{4})[^()]*\)\s*$"  # "Toy Story (1995)", also "(2006-2007)"


def load_movielens(name: str, root: Path) -> Dataset:
    """Load the unpacked GroupLens folder ``root`` holding MovieLens dataset ``name``.

    Contiguous ids follow the numeric order of the original ids (ml-100k user "1" -> 0). Only items that
    occur in the ratings are kept, so item ids are contiguous over *rated* items; items listed in the
    item file without any rating are dropped (their count is in ``extra["unrated_items_dropped"]``).
    User features (ml-100k, ml-1m): ``gender``, ``occupation``, ``zip`` (first 3 characters) categorical
    and ``age`` numeric. Item features: ``genres`` multi-hot and ``year`` numeric (NaN when unknown).
    Missing side files only lose the features (with a warning); a missing ratings file is an error.
    """
    root = Path(root)
    if name not in MOVIELENS_DATASETS:
        raise DataError(f"unknown MovieLens dataset {name!r}; known: {', '.join(MOVIELENS_DATASETS)}")
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (expected the unpacked {name} archive)")
    if name == "ml-100k":
        ratings = _read_ratings(root / "u.data", "\t", header=False, scale=(1.0, 5.0))
        users, items = _users_100k(root / "u.user"), _items_100k(root / "u.item")
    elif name == "ml-1m":
        ratings = _read_ratings(root / "ratings.dat", "::", header=False, scale=(1.0, 5.0))
        users, items = _users_1m(root / "users.dat"), _items_1m(root / "movies.dat")
    else:
        ratings = _read_ratings(root / "ratings.csv", ",", header=True, scale=(0.5, 5.0))
        users, items = None, _items_csv(root / "movies.csv")
    return _assemble(name, root, ratings, users, items)


def _assemble(name: str, root: Path, ratings: pd.DataFrame, users: tuple[pd.DataFrame, str] | None,
              items: tuple[pd.DataFrame, str] | None) -> Dataset:
    user_codes, item_codes, user_ids, item_ids = encode_frame(ratings)
    user_table = None if users is None else _user_features(align_rows(users[0], "id", user_ids, users[1]))
    titles, item_table, dropped = None, None, 0
    if items is not None:
        frame, source = items
        aligned = align_rows(frame, "id", item_ids, source)
        titles = aligned["title"].fillna("").to_numpy(dtype=object)
        item_table = _item_features(aligned)
        dropped = int((~frame["id"].astype(str).isin(pd.Index(item_ids.astype(str)))).sum())
    return Dataset(
        name=name, user_ids=user_ids, item_ids=item_ids, users=user_codes, items=item_codes,
        ratings=ratings["rating"].to_numpy(np.float32), timestamps=ratings["timestamp"].to_numpy(np.int64),
        rating_scale=(1.0, 5.0) if name in ("ml-100k", "ml-1m") else (0.5, 5.0),
        item_titles=titles, user_features=user_table, item_features=item_table, source_dir=root,
        extra={"unrated_items_dropped": dropped},
    )


def _read_ratings(path: Path, sep: str, *, header: bool, scale: tuple[float, float]) -> pd.DataFrame:
    """Typed fast read; if a value does not parse, re-read untyped so validation can name the line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (is the folder a complete, unpacked GroupLens archive?)")
    options = {"header": 0 if header else None, "names": _RATING_COLUMNS, "usecols": [0, 1, 2, 3],
               "quoting": csv.QUOTE_NONE}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = read_delimited(path, sep, dtype=_RATING_DTYPES, **options)  # type: ignore[arg-type]
    except (ValueError, OverflowError, TypeError):
        with reading(path):
            frame = read_delimited(path, sep, **options)  # type: ignore[arg-type]
    clean, _ = validate_interactions(frame, str(path), scale, first_line=2 if header else 1)
    return clean


def _side_file(path: Path) -> bool:
    if path.is_file():
        return True
    warnings.warn(f"{path}: not found; loading without these features", UserWarning, stacklevel=4)
    return False


def _users_100k(path: Path) -> tuple[pd.DataFrame, str] | None:
    if not _side_file(path):
        return None
    with reading(path):
        frame = read_delimited(path, "|", header=None, names=["id", "age", "gender", "occupation", "zip"],
                               dtype=str, encoding="latin-1", quoting=csv.QUOTE_NONE)
    return frame, str(path)


def _users_1m(path: Path) -> tuple[pd.DataFrame, str] | None:
    if not _side_file(path):
        return None
    with reading(path):
        frame = read_delimited(path, "::", header=None, names=["id", "gender", "age", "occupation", "zip"],
                               dtype=str, encoding="latin-1", quoting=csv.QUOTE_NONE)
    codes = pd.to_numeric(frame["occupation"], errors="coerce")
    labels = pd.Series(ML1M_OCCUPATIONS, index=range(len(ML1M_OCCUPATIONS)))
    frame["occupation"] = codes.map(labels)  # unknown codes -> NaN -> <unk>
    return frame, str(path)


def _items_100k(path: Path) -> tuple[pd.DataFrame, str] | None:
    if not _side_file(path):
        return None
    names = ["id", "title", "release", "video_release", "url", *ML100K_GENRES]
    with reading(path):
        frame = read_delimited(path, "|", header=None, names=names, dtype=str, encoding="latin-1",
                               quoting=csv.QUOTE_NONE)
    flags = frame[list(ML100K_GENRES)].apply(pd.to_numeric, errors="coerce").fillna(0).astype(bool)
    genres = flags.dot(pd.Index([f"{g}|" for g in ML100K_GENRES])).str.rstrip("|")  # "Action|Comedy"
    year = pd.to_numeric(frame["release"].str.strip().str[-4:], errors="coerce")
    return pd.DataFrame({"id": frame["id"], "title": frame["title"], "genres": genres, "year": year}), str(path)


def _items_1m(path: Path) -> tuple[pd.DataFrame, str] | None:
    if not _side_file(path):
        return None
    with reading(path):
        frame = read_delimited(path, "::", header=None, names=["id", "title", "genres"], dtype=str,
                               encoding="latin-1", quoting=csv.QUOTE_NONE)
    return _with_title_year(frame), str(path)


def _items_csv(path: Path) -> tuple[pd.DataFrame, str] | None:
    if not _side_file(path):
        return None
    with reading(path):
        frame = read_delimited(path, ",", header=0, names=["id", "title", "genres"], usecols=[0, 1, 2], dtype=str)
    return _with_title_year(frame), str(path)


def _with_title_year(frame: pd.DataFrame) -> pd.DataFrame:
    year = pd.to_numeric(frame["title"].str.extract(_YEAR_IN_TITLE, expand=False), errors="coerce")
    return frame.assign(year=year)


def _user_features(frame: pd.DataFrame) -> FeatureTable:
    zip3 = frame["zip"].astype("string").str.strip().str[:3]
    fields = [categorical_field("gender", frame["gender"]), numeric_field("age", frame["age"]),
              categorical_field("occupation", frame["occupation"]), categorical_field("zip", zip3)]
    return FeatureTable(fields=tuple(f for f, _ in fields), values={f.name: v for f, v in fields})


def _item_features(frame: pd.DataFrame) -> FeatureTable:
    fields = [multi_categorical_field("genres", frame["genres"]), numeric_field("year", frame["year"])]
    return FeatureTable(fields=tuple(f for f, _ in fields), values={f.name: v for f, v in fields})
