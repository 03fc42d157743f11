"""Generic CSV/Parquet interaction loader and the validation every loader shares.

Anything wrong with a user's file is reported as a one-line :class:`DataError` naming the file, the
line (1-based, counting the header line) and the problem, so a bad file is fixed in one edit instead of
being debugged through a pandas traceback. Parsing is vectorised (pandas C parser), never per row.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from distillrec.data.dataset import Dataset, FeatureTable, FieldKind, FieldSpec, encode_ids
from distillrec.errors import DataError

ROLES = ("user", "item", "rating", "timestamp")
REQUIRED_ROLES = ("user", "item", "rating")
#: Column spellings recognised (case-insensitively) when ``columns`` is not given.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "user": ("userid", "user_id", "user", "uid"),
    "item": ("movieid", "item_id", "itemid", "item", "iid", "movie_id"),
    "rating": ("rating", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}
_SEP_NAMES = {"\t": "tab", ";": "semicolon", "|": "pipe", ",": "comma", " ": "space"}
UNK = "<unk>"
Where = Callable[[object], str]  # data-row label -> "file: line N"


class DuplicateInteractionWarning(UserWarning):
    """Some (user, item) pairs occur more than once in a file; the last occurrence was kept."""


def one_line(exc: BaseException) -> str:
    """Collapse an exception message to one line (DataErrors are always single lines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn the exceptions pandas and the OS raise while reading ``path`` into one-line DataErrors."""
    try:
        yield
    except DataError:
        raise
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {exc.encoding} text at byte {exc.start}") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse ({one_line(exc).removeprefix('Error tokenizing data. ')})") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({one_line(exc)})") from None


def read_delimited(path: Path, sep: str, *, header: int | None = 0, names: list[str] | None = None,
                   usecols: list[str] | list[int] | None = None, dtype: object = None, encoding: str = "utf-8",
                   quoting: int = csv.QUOTE_MINIMAL, nrows: int | None = None) -> pd.DataFrame:
    """Read a delimited file with the C parser, keeping blank lines so row ``k`` is data line ``k``.

    Multi-character separators (ml-1m's ``::``) are swapped for a control character first, because
    pandas would otherwise fall back to its much slower Python engine.
    """
    source: Path | io.BytesIO = path
    if len(sep) > 1:
        source = io.BytesIO(path.read_bytes().replace(sep.encode(encoding), b"\x1f"))
        sep = "\x1f"
    return pd.read_csv(source, sep=sep, header=header, names=names, usecols=usecols, dtype=dtype,  # type: ignore[arg-type]
                       encoding=encoding, quoting=quoting, engine="c", skip_blank_lines=False,
                       low_memory=False, nrows=nrows, index_col=False)


# --------------------------------------------------------------------------------------------- validation
def validate_interactions(frame: pd.DataFrame, source: str, rating_scale: tuple[float, float] | None = None,
                          first_line: int = 2, unit: str = "line") -> tuple[pd.DataFrame, tuple[float, float]]:
    """Check a parsed interaction frame and return ``(clean frame, rating scale)``.

    ``frame`` has columns ``user``, ``item``, ``rating`` and optionally ``timestamp``; its index is the
    0-based data row in the file, so index ``k`` is reported as ``{unit} {k + first_line}``. Fully blank
    rows are dropped. Duplicate (user, item) rows: the last occurrence wins and a
    :class:`DuplicateInteractionWarning` names the count and the first repeated line. Ratings come back
    float32, timestamps int64 (zeros when the column is absent). Without ``rating_scale`` the scale is the
    observed ``[min, max]``; with it, ratings outside fail.
    """
    def where(label: object) -> str:
        return f"{source}: {unit} {int(label) + first_line}"  # type: ignore[call-overload]

    if frame["user"].isna().any() or frame["item"].isna().any():
        frame = frame[~frame.isna().all(axis=1)]
    if frame.empty:
        raise DataError(f"{source}: no interactions (no data rows)")
    users = _check_ids(frame["user"], "user", where)
    items = _check_ids(frame["item"], "item", where)
    ratings = _check_ratings(frame["rating"], where)
    scale = _check_scale(ratings, rating_scale, source, where)
    timestamps = (_check_timestamps(frame["timestamp"], where) if "timestamp" in frame
                  else pd.Series(np.zeros(len(frame), dtype=np.int64), index=frame.index))
    clean = pd.DataFrame({"user": users, "item": items, "rating": ratings.astype(np.float32),
                          "timestamp": timestamps}, index=frame.index)
    return _drop_duplicates(clean, where), scale


def _check_ids(ids: pd.Series, role: str, where: Where) -> pd.Series:
    bad = ids.isna()
    if ids.dtype == object:
        bad |= ids.astype(str).str.strip().eq("")
    if bad.any():
        raise DataError(f"{where(bad.idxmax())}: empty {role} id")
    if pd.api.types.is_float_dtype(ids) and bool((ids == np.floor(ids)).all()):
        return ids.astype(np.int64)  # "7.0" from a float column is the integer id 7
    return ids


def _check_ratings(ratings: pd.Series, where: Where) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(ratings) or pd.api.types.is_bool_dtype(ratings):
        numbers = pd.to_numeric(ratings, errors="coerce")
        bad = numbers.isna() & ratings.notna()
        if bad.any():
            label = bad.idxmax()
            raise DataError(f"{where(label)}: rating {ratings[label]!r} is not a number")
        ratings = numbers
    ratings = ratings.astype(np.float64)
    bad = ~np.isfinite(ratings)
    if bad.any():
        label = bad.idxmax()
        raise DataError(f"{where(label)}: rating is {'empty or NaN' if pd.isna(ratings[label]) else 'infinite'}")
    return ratings


def _check_scale(ratings: pd.Series, rating_scale: tuple[float, float] | None, source: str,
                 where: Where) -> tuple[float, float]:
    if rating_scale is None:
        return float(ratings.min()), float(ratings.max())
    low, high = float(rating_scale[0]), float(rating_scale[1])
    if not low < high:
        raise DataError(f"{source}: rating scale {rating_scale} must have min < max")
    outside = (ratings < low) | (ratings > high)
    if outside.any():
        label = outside.idxmax()
        raise DataError(f"{where(label)}: rating {ratings[label]:g} is outside the declared scale [{low:g}, {high:g}]")
    return low, high


def _check_timestamps(stamps: pd.Series, where: Where) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(stamps) or pd.api.types.is_bool_dtype(stamps):
        numbers = pd.to_numeric(stamps, errors="coerce")
        bad = numbers.isna() & stamps.notna()
        if bad.any():  # maybe ISO 8601 dates: accept them when every value parses
            dates = pd.to_datetime(stamps, errors="coerce", utc=True, format="ISO8601")
            if (dates.isna() & stamps.notna()).any():
                label = bad.idxmax()
                raise DataError(f"{where(label)}: timestamp {stamps[label]!r} is neither a number nor a date")
            numbers = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        stamps = numbers
    if stamps.isna().any():
        raise DataError(f"{where(stamps.isna().idxmax())}: empty timestamp")
    return stamps.astype(np.int64)


def _drop_duplicates(frame: pd.DataFrame, where: Where) -> pd.DataFrame:
    """Keep the last row of each (user, item) pair, warning once with the count and first repeat."""
    users, items = frame["user"], frame["item"]
    if pd.api.types.is_integer_dtype(users) and pd.api.types.is_integer_dtype(items):
        u = users.to_numpy(np.int64) - int(users.min())
        i = items.to_numpy(np.int64) - int(items.min())
    else:
        u, i = pd.factorize(users)[0].astype(np.int64), pd.factorize(items)[0].astype(np.int64)
    if (int(u.max()) + 1) * (int(i.max()) + 1) >= 2**62:  # sparse huge ids: compact them first
        u, i = pd.factorize(u)[0].astype(np.int64), pd.factorize(i)[0].astype(np.int64)
    return _dedupe_keys(frame, u * (int(i.max()) + 1) + i, where)


def _dedupe_keys(frame: pd.DataFrame, key: np.ndarray, where: Where) -> pd.DataFrame:
    if len(key) < 2 or bool((key[1:] > key[:-1]).all()):
        return frame  # strictly increasing (GroupLens csv order): no duplicates, no sort needed
    order = np.argsort(key, kind="stable")  # equal keys stay in file order
    same = key[order[1:]] == key[order[:-1]]
    if not same.any():
        return frame
    repeats = np.zeros(len(key), dtype=bool)
    repeats[order[1:][same]] = True  # a later occurrence of an earlier pair
    drop = np.zeros(len(key), dtype=bool)
    drop[order[:-1][same]] = True  # every occurrence that has a later one
    warnings.warn(f"{where(frame.index[repeats.argmax()])}: first of {int(repeats.sum())} duplicate (user, item) "
                  "row(s); keeping the last occurrence of each pair", DuplicateInteractionWarning, stacklevel=4)
    return frame[~drop]


def encode_frame(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous ids of a validated frame: ``(users, items, user_ids, item_ids)``."""
    users, user_ids = _encode(frame["user"].to_numpy())
    items, item_ids = _encode(frame["item"].to_numpy())
    return users, items, user_ids, item_ids


def _encode(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode_ids`, with an O(n) lookup-table path for dense non-negative integer ids (ml-25m)."""
    if raw.dtype.kind not in "iu" or len(raw) == 0 or raw.min() < 0 or raw.max() > 4 * len(raw) + 1_000_000:
        return encode_ids(raw)
    present = np.zeros(int(raw.max()) + 1, dtype=bool)
    present[raw] = True
    table = np.cumsum(present, dtype=np.int64) - 1
    return table[raw], np.flatnonzero(present).astype(str).astype(object)


# ----------------------------------------------------------------------------------------------- features
def categorical_field(name: str, values: pd.Series) -> tuple[FieldSpec, np.ndarray]:
    """Codes 1..V-1 for the sorted distinct labels; 0 (``<unk>``) for missing or empty values."""
    labels = values.astype("string").str.strip().replace("", pd.NA)
    categories = sorted(labels.dropna().unique())
    codes = pd.Categorical(labels, categories=categories).codes.astype(np.int64) + 1
    return FieldSpec(name, FieldKind.CATEGORICAL, (UNK, *categories)), codes


def multi_categorical_field(name: str, values: pd.Series, sep: str = "|") -> tuple[FieldSpec, np.ndarray]:
    """Multi-hot ``uint8 [n, V]`` over the sorted distinct labels; a missing value is an all-zero row."""
    parts = values.reset_index(drop=True).astype("string").str.split(sep, regex=False).explode().str.strip()
    parts = parts[parts.notna() & parts.ne("")]
    categories = sorted(parts.unique())
    matrix = np.zeros((len(values), len(categories)), dtype=np.uint8)
    matrix[parts.index.to_numpy(), pd.Categorical(parts, categories=categories).codes] = 1
    return FieldSpec(name, FieldKind.MULTI_CATEGORICAL, tuple(categories)), matrix


def numeric_field(name: str, values: pd.Series) -> tuple[FieldSpec, np.ndarray]:
    """float32 values, NaN where missing or not a number."""
    return FieldSpec(name, FieldKind.NUMERIC), pd.to_numeric(values, errors="coerce").to_numpy(np.float32)


def align_rows(frame: pd.DataFrame, key: str, ids: np.ndarray, source: str) -> pd.DataFrame:
    """Rows of ``frame`` reordered to the contiguous ids (original ids ``ids``); absent ids get NaN rows."""
    frame = frame.reset_index(drop=True)
    keys = frame[key]
    if pd.api.types.is_float_dtype(keys):
        keys = keys.dropna()
        keys = keys.astype(np.int64) if bool((keys == np.floor(keys)).all()) else keys
    keys = keys.astype(str)
    frame = frame.loc[keys.index].drop(columns=[key]).set_index(pd.Index(keys.to_numpy()))
    if frame.index.has_duplicates:
        warnings.warn(f"{source}: repeated {key} values; using the last row of each", UserWarning, stacklevel=3)
        frame = frame[~frame.index.duplicated(keep="last")]
    return frame.reindex(pd.Index(np.asarray(ids, dtype=str)))


def infer_features(frame: pd.DataFrame) -> FeatureTable:
    """Numeric columns become numeric fields, text with ``|`` multi-categorical, other text categorical."""
    specs, values = [], {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            spec, array = numeric_field(str(column), series)
        elif series.astype("string").str.contains("|", regex=False).any():
            spec, array = multi_categorical_field(str(column), series)
        else:
            spec, array = categorical_field(str(column), series)
        specs.append(spec)
        values[spec.name] = array
    return FeatureTable(fields=tuple(specs), values=values)


# -------------------------------------------------------------------------------------------- load_table
def load_table(path: Path, fmt: str = "csv", columns: dict[str, str] | None = None,
               rating_scale: tuple[float, float] | None = None, sep: str | None = None,
               user_features: Path | None = None, item_features: Path | None = None,
               name: str | None = None) -> Dataset:
    """Load interactions from a CSV or Parquet file into a :class:`Dataset`.

    ``columns`` maps roles (user, item, rating, timestamp) to file columns; unmapped roles are found by
    common spellings (``userId``, ``item_id``, ``score``, ...). Numeric id columns are read as integers, so
    they sort numerically and ``"007"`` becomes ``"7"``. Duplicate (user, item) rows: the last occurrence
    is kept and a :class:`DuplicateInteractionWarning` says how many and where the first repeat is.
    Feature files are keyed by the same user/item column; entities without a feature row get unknowns.
    """
    path = Path(path)
    fmt = fmt.lower()
    if fmt not in ("csv", "parquet"):
        raise DataError(f"{path}: unknown table format {fmt!r}; use csv or parquet")
    header, used_sep = _read_header(path, fmt, _normalise_sep(sep))
    mapping = resolve_columns(header, columns, str(path))
    frame = _read_table(path, fmt, used_sep, list(mapping.values()))
    frame = frame.rename(columns={v: k for k, v in mapping.items()})
    first_line, unit = (2, "line") if fmt == "csv" else (1, "row")
    frame, scale = validate_interactions(frame, str(path), rating_scale, first_line, unit)
    users, items, user_ids, item_ids = encode_frame(frame)
    return Dataset(
        name=name or path.stem, user_ids=user_ids, item_ids=item_ids, users=users, items=items,
        ratings=frame["rating"].to_numpy(np.float32), timestamps=frame["timestamp"].to_numpy(np.int64),
        rating_scale=scale,
        user_features=_feature_file(user_features, mapping["user"], "user", user_ids, _normalise_sep(sep)),
        item_features=_feature_file(item_features, mapping["item"], "item", item_ids, _normalise_sep(sep)),
        source_dir=path.parent,
    )


def _normalise_sep(sep: str | None) -> str | None:
    if sep is None:
        return None
    aliases = {"\\t": "\t", "tab": "\t", "tsv": "\t", "space": " ", "semicolon": ";", "pipe": "|", "comma": ","}
    sep = aliases.get(sep.lower(), sep)
    if not sep:
        raise DataError("--sep must not be empty")
    return sep


def _read_header(path: Path, fmt: str, sep: str | None) -> tuple[list[str], str]:
    """Column names and separator, with the checks needing only the header: missing, empty, wrong separator.

    Without ``sep`` the separator is the most frequent of comma, tab, semicolon and pipe in the header line.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    with reading(path):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                return list(pq.read_schema(path).names), ","
            except Exception as exc:  # pyarrow raises its own ArrowInvalid for non-Parquet bytes
                raise DataError(f"{path}: not a readable Parquet file ({one_line(exc)})") from None
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline().strip()
        sep = sep or max((",", "\t", ";", "|"), key=first.count)  # ties (and none) -> comma
        names = [str(c) for c in read_delimited(path, sep, nrows=0).columns]
    if len(names) == 1:
        found = [label for char, label in _SEP_NAMES.items() if char != sep and char in first]
        if found:
            expected = _SEP_NAMES.get(sep, repr(sep))
            raise DataError(f"{path}: line 1: only one column; it looks like it is not {expected}-separated "
                            f"(found {found[0]}s); pass --sep")
    return names, sep


def resolve_columns(found: list[str], columns: dict[str, str] | None, source: str) -> dict[str, str]:
    """Role -> file column: explicit ``columns`` first, then the common spellings (case-insensitive)."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise DataError(f"{source}: unknown column role(s) {unknown}; roles are {', '.join(ROLES)}")
    mapping: dict[str, str] = {}
    for role in ROLES:
        if role in columns:
            if columns[role] not in found:
                raise DataError(f"{source}: {role} column {columns[role]!r} not found; found: {', '.join(found)}")
            mapping[role] = columns[role]
            continue
        match = _spelled(found, role)
        if match is not None:
            mapping[role] = match
    missing = [r for r in REQUIRED_ROLES if r not in mapping]
    if missing:
        raise DataError(f"{source}: missing required column(s) {', '.join(missing)}; found: {', '.join(found)} "
                        "(map them with --columns role=name)")
    return mapping


def _read_table(path: Path, fmt: str, sep: str, usecols: list[str]) -> pd.DataFrame:
    with reading(path):
        if fmt == "parquet":
            return pd.read_parquet(path, columns=usecols)
        frame = read_delimited(path, sep)[usecols]  # all columns, so ragged lines are reported
    if frame.empty:
        raise DataError(f"{path}: no data rows after the header line")
    return frame


def _feature_file(path: Path | None, key: str, role: str, ids: np.ndarray,
                  sep: str | None) -> FeatureTable | None:
    """Read a side-feature file keyed by the interactions' ``role`` column (or a common spelling of it)."""
    if path is None:
        return None
    path = Path(path)
    fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    header, sep = _read_header(path, fmt, sep)
    if key not in header:
        spelled = _spelled(header, role)
        if spelled is None:
            raise DataError(f"{path}: no {role} key column {key!r}; found: {', '.join(header)}")
        key = spelled
    with reading(path):
        frame = pd.read_parquet(path) if fmt == "parquet" else read_delimited(path, sep)
    frame = frame[~frame.isna().all(axis=1)]
    if len(frame.columns) < 2:
        raise DataError(f"{path}: no feature columns besides the key column {key!r}")
    return infer_features(align_rows(frame, key, ids, str(path)))


def _spelled(found: list[str], role: str) -> str | None:
    """The column among ``found`` named like ``role`` (e.g. ``UserID`` for user), case-insensitively."""
    lower = {name.lower(): name for name in found}
    return next((lower[s] for s in SPELLINGS[role] if s in lower), None)
