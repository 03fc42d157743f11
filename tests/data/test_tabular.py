"""The generic CSV/Parquet loader: column detection, features, and one test per bad-input case."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillrec.data.dataset import FieldKind
from distillrec.data.tabular import DuplicateInteractionWarning, load_table, validate_interactions
from distillrec.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_table(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# ------------------------------------------------------------------------------------------------ good
def test_detects_common_spellings_and_sorts_numeric_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "UserID,ItemId,Score,TS\n10,7,4.5,300\n2,7,3,100\n2,30,1,200\n")
    data = load_table(path)
    assert list(data.user_ids) == ["2", "10"]  # numeric order, not "10" < "2"
    assert list(data.item_ids) == ["7", "30"]
    assert data.users.tolist() == [1, 0, 0] and data.items.tolist() == [0, 0, 1]
    assert data.ratings.dtype == np.float32 and data.timestamps.dtype == np.int64
    assert data.timestamps.tolist() == [300, 100, 200]
    assert data.rating_scale == (1.0, 4.5)  # inferred [min, max] when not declared
    assert data.name == "r" and data.source_dir == tmp_path


def test_explicit_columns_string_ids_and_no_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "who,what,stars\nalice,b1,5\nbob,b2,1\n")
    data = load_table(path, columns={"user": "who", "item": "what", "rating": "stars"}, rating_scale=(1, 5))
    assert list(data.user_ids) == ["alice", "bob"]
    assert data.timestamps.tolist() == [0, 0]
    assert data.rating_scale == (1.0, 5.0)


def test_tab_file_detected_or_given(tmp_path: Path) -> None:
    path = write(tmp_path / "r.tsv", "user\titem\trating\n1\t2\t3\n")
    assert load_table(path).n_interactions == 1
    assert load_table(path, sep="\\t").n_interactions == 1


def test_parquet_and_iso_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": ["a", "b"], "rating": [1.0, 2.0],
                  "time": ["1970-01-01T00:00:10Z", "1970-01-02T00:00:00Z"]}).to_parquet(path)
    data = load_table(path, fmt="parquet")
    assert data.timestamps.tolist() == [10, 86400]
    assert list(data.item_ids) == ["a", "b"]


def test_feature_files_become_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\n1,1,3\n2,2,4\n3,2,5\n")
    users = write(tmp_path / "users.csv", "user,age,city\n1,30,paris\n2,,berlin\n9,50,rome\n")
    items = write(tmp_path / "items.csv", "item,tags\n2,b|a\n")
    data = load_table(path, user_features=users, item_features=items)
    assert data.user_features is not None and data.item_features is not None
    age, city = data.user_features.field("age"), data.user_features.field("city")
    assert age.kind is FieldKind.NUMERIC and city.kind is FieldKind.CATEGORICAL
    assert city.vocab == ("<unk>", "berlin", "paris")  # rome belongs to no rated user
    assert data.user_features.values["city"].tolist() == [2, 1, 0]  # user 3 has no row -> unknown
    assert np.isnan(data.user_features.values["age"][1:]).all()
    tags = data.item_features.field("tags")
    assert tags.kind is FieldKind.MULTI_CATEGORICAL and tags.vocab == ("a", "b")
    assert data.item_features.values["tags"].tolist() == [[0, 0], [1, 1]]


# ------------------------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in load_error(tmp_path / "nope.csv")


def test_empty_file(tmp_path: Path) -> None:
    assert "file is empty" in load_error(write(tmp_path / "e.csv", ""))


def test_header_only(tmp_path: Path) -> None:
    assert "no data rows" in load_error(write(tmp_path / "h.csv", "user,item,rating\n"))


def test_wrong_separator(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user\titem\trating\n1\t2\t3\n")
    message = load_error(path, sep=",")
    assert "line 1" in message and "not comma-separated" in message and "--sep" in message


def test_missing_required_columns_lists_found(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,stars\n1,2,3\n"))
    assert "missing required column(s) rating" in message and "found: user, item, stars" in message


def test_mapped_column_absent(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n"), columns={"rating": "stars"})
    assert "'stars'" in message and "found: user, item, rating" in message


def test_non_numeric_rating_names_line_and_value(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,abc\n"))
    assert "line 3" in message and "'abc'" in message and "not a number" in message


def test_empty_rating(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,\n"))
    assert "line 3" in message and "empty or NaN" in message


def test_nan_rating(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,NaN\n"))
    assert "line 2" in message and "empty or NaN" in message


def test_rating_outside_declared_scale(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,7\n"), rating_scale=(1, 5))
    assert "line 3" in message and "rating 7" in message and "[1, 5]" in message


def test_empty_id(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n,3,4\n"))
    assert "line 3" in message and "empty user id" in message


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n\n1,4,x\n\n"))
    assert "line 4" in message


def test_duplicates_keep_last_and_warn(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n2,3,4\n1,2,5\n1,2,1\n")
    with pytest.warns(DuplicateInteractionWarning, match=r"r\.csv: line 4: first of 2 duplicate"):
        data = load_table(path)
    assert data.n_interactions == 2
    assert sorted(zip(data.user_ids[data.users], data.item_ids[data.items], data.ratings.tolist(),
                      strict=True)) == [("1", "2", 1.0), ("2", "3", 4.0)]


def test_duplicates_with_string_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\na,x,3\na,x,5\n")
    with pytest.warns(DuplicateInteractionWarning, match="line 3"):
        assert load_table(path).ratings.tolist() == [5.0]


def test_bad_timestamp(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating,timestamp\n1,2,3,5\n1,3,4,soon\n"))
    assert "line 3" in message and "'soon'" in message


def test_ragged_line_reports_parser_line(tmp_path: Path) -> None:
    message = load_error(write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,4,9,9\n"))
    assert "line 3" in message


def test_parquet_reports_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [3.0, np.nan]}).to_parquet(path)
    assert "row 2" in load_error(path, fmt="parquet")


def test_not_parquet(tmp_path: Path) -> None:
    assert "Parquet" in load_error(write(tmp_path / "r.parquet", "user,item,rating\n"), fmt="parquet")


def test_feature_file_without_key(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n")
    features = write(tmp_path / "u.csv", "name,age\nx,3\n")
    with pytest.raises(DataError, match="no user key column 'user'") as info:
        load_table(path, user_features=features)
    assert str(features) in str(info.value)


def test_validate_interactions_directly() -> None:
    frame = pd.DataFrame({"user": [1, 1], "item": [1, 2], "rating": [1.0, 9.0]})
    with pytest.raises(DataError, match=r"^src\.dat: line 2: rating 9"):
        validate_interactions(frame, "src.dat", rating_scale=(1, 5), first_line=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean, scale = validate_interactions(frame, "src.dat")
    assert scale == (1.0, 9.0) and clean["timestamp"].tolist() == [0, 0]
