"""MovieLens loaders: the real ml-100k (when available) and tiny fabricated files in the other formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from distillrec.data.dataset import FieldKind
from distillrec.data.loading import load_dataset
from distillrec.data.movielens import load_movielens
from distillrec.errors import DataError


def _ml100k_root() -> Path:
    return Path(os.environ.get("DISTILLREC_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


@pytest.fixture(scope="module")
def ml100k_dir() -> Path:
    folder = _ml100k_root() / "ml-100k"
    if not (folder / "u.data").is_file():
        pytest.skip(f"MovieLens-100K not found at {folder}; set DISTILLREC_DATA to the folder holding ml-100k/")
    return folder


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


# --------------------------------------------------------------------------------------- real ml-100k
def test_ml100k_counts_ids_and_titles(ml100k_dir: Path) -> None:
    data = load_movielens("ml-100k", ml100k_dir)
    assert (data.n_users, data.n_items, data.n_interactions) == (943, 1682, 100_000)
    assert data.user_index()["1"] == 0 and data.item_index()["1"] == 0 and data.user_ids[-1] == "943"
    assert data.ratings.dtype == np.float32 and data.timestamps.dtype == np.int64
    assert data.users.dtype == np.int64 and data.items.dtype == np.int64
    assert set(np.unique(data.ratings).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert data.rating_scale == (1.0, 5.0) and data.source_dir == ml100k_dir
    assert data.item_titles is not None and data.item_titles[0] == "Toy Story (1995)"
    assert data.extra["unrated_items_dropped"] == 0


def test_ml100k_features(ml100k_dir: Path) -> None:
    data = load_movielens("ml-100k", ml100k_dir)
    users, items = data.user_features, data.item_features
    assert users is not None and items is not None
    assert [f.name for f in users.fields] == ["gender", "age", "occupation", "zip"]
    for name in ("gender", "occupation", "zip"):
        spec = users.field(name)
        assert spec.kind is FieldKind.CATEGORICAL and spec.vocab[0] == "<unk>"
        assert users.values[name].shape == (943,) and users.values[name].min() >= 1  # every user known
    assert users.field("gender").vocab == ("<unk>", "F", "M")
    assert users.values["age"].dtype == np.float32 and users.values["age"][0] == 24
    assert users.field("zip").vocab[users.values["zip"][0]] == "857"  # user 1 lives in 85711
    genres = items.values["genres"]
    assert items.field("genres").kind is FieldKind.MULTI_CATEGORICAL
    assert genres.shape == (1682, 19) and genres.dtype == np.uint8 and (genres.sum(axis=1) > 0).all()
    assert list(items.field("genres").vocab) == sorted(items.field("genres").vocab)
    toy_story = {items.field("genres").vocab[k] for k in np.flatnonzero(genres[0])}
    assert toy_story == {"Animation", "Children's", "Comedy"}
    year = items.values["year"]
    assert year.dtype == np.float32 and year[0] == 1995 and np.isnan(year[266])  # item 267 has no date


def test_ml100k_through_load_dataset(ml100k_dir: Path) -> None:
    data = load_dataset("ml-100k", data_dir=ml100k_dir.parent, download=False)
    assert data.n_interactions == 100_000 and data.source_dir == ml100k_dir


# ------------------------------------------------------------------------------------ fabricated files
def test_fabricated_ml100k(tmp_path: Path) -> None:
    flags = "|".join(["0"] * 18)
    write(tmp_path / "u.data", "10\t5\t3\t881250949\n2\t5\t4\t881250950\n2\t7\t1\t881250951\n")
    write(tmp_path / "u.user", "2|53|F|other|94043\n10|24|M|technician|T8H1N\n")
    write(tmp_path / "u.item", f"5|Café (1995)|01-Jan-1995||http://x|1|{flags}\n"
                               f"7|Nowhere||||0|{flags[:-1]}1\n9|Unrated (1990)|01-Jan-1990||http://y|0|{flags}\n",
          encoding="latin-1")
    data = load_movielens("ml-100k", tmp_path)
    assert list(data.user_ids) == ["2", "10"] and list(data.item_ids) == ["5", "7"]
    assert data.item_titles is not None and list(data.item_titles) == ["Café (1995)", "Nowhere"]
    assert data.extra["unrated_items_dropped"] == 1
    assert data.user_features is not None and data.user_features.field("zip").vocab == ("<unk>", "940", "T8H")
    assert data.item_features is not None and data.item_features.field("genres").vocab == ("Western", "unknown")


def test_ml1m_format(tmp_path: Path) -> None:
    root = tmp_path / "ml-1m"
    write(root / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n10::661::4::978301968\n")
    write(root / "users.dat", "1::F::1::10::48067\n10::M::56::16::70072-1234\n")
    write(root / "movies.dat", '1193::One Flew Over the Cuckoo\'s Nest (1975)::Drama\n'
                               '661::"Great" Pêche, La (1996)::Animation|Children\'s|Musical\n'
                               '99::Never Rated (2000)::Comedy\n', encoding="latin-1")
    data = load_movielens("ml-1m", root)
    assert list(data.user_ids) == ["1", "10"] and list(data.item_ids) == ["661", "1193"]
    assert data.item_titles is not None and data.item_titles[0] == '"Great" Pêche, La (1996)'
    users, items = data.user_features, data.item_features
    assert users is not None and items is not None
    occupation = users.field("occupation")
    assert [occupation.vocab[c] for c in users.values["occupation"]] == ["K-12 student", "self-employed"]
    assert [users.field("zip").vocab[c] for c in users.values["zip"]] == ["480", "700"]
    assert users.values["age"].tolist() == [1.0, 56.0]
    assert items.values["year"].tolist() == [1996.0, 1975.0]
    assert items.values["genres"].shape == (2, 4)  # Comedy only belongs to the dropped unrated movie
    assert data.extra["unrated_items_dropped"] == 1


def test_ml_latest_small_format(tmp_path: Path) -> None:
    root = tmp_path / "ml-latest-small"
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,11,4.0,964982703\n1,2,0.5,964981247\n"
                                "3,11,2.5,964982224\n")
    write(root / "movies.csv", 'movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n'
                               '11,"American President, The (1995)",(no genres listed)\n')
    data = load_movielens("ml-latest-small", root)
    assert data.rating_scale == (0.5, 5.0) and data.ratings.tolist() == [4.0, 0.5, 2.5]
    assert list(data.item_ids) == ["2", "11"] and data.user_features is None
    assert data.item_titles is not None and data.item_titles[1] == "American President, The (1995)"
    assert data.item_features is not None
    assert data.item_features.field("genres").vocab == ("(no genres listed)", "Adventure", "Children", "Fantasy")


def test_csv_title_without_year_and_unlisted_item(tmp_path: Path) -> None:
    root = tmp_path / "ml-25m"
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,3.0,2\n1,3,3.0,3\n")
    write(root / "movies.csv", "movieId,title,genres\n1,Babylon 5,Sci-Fi\n2,Millennium (2006–2007),Drama\n")
    data = load_movielens("ml-25m", root)
    assert data.item_features is not None and data.item_titles is not None
    year = data.item_features.values["year"]
    assert np.isnan(year[0]) and year[1] == 2006 and np.isnan(year[2])
    assert data.item_titles[2] == "" and data.item_features.values["genres"][2].sum() == 0


def test_rating_outside_scale_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,0.0,2\n")
    with pytest.raises(DataError) as info:
        load_movielens("ml-20m", tmp_path)
    assert str(info.value).startswith(f"{path}: line 3: rating 0")


def test_bad_ratings_dat_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.dat", "1::1::5::978300760\n1::2::five::978302109\n")
    with pytest.raises(DataError, match=r"ratings\.dat: line 2: rating 'five' is not a number"):
        load_movielens("ml-1m", tmp_path)
    assert path.is_file()


def test_missing_ratings_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u\.data: file not found"):
        load_movielens("ml-100k", tmp_path)


def test_missing_side_files_warn(tmp_path: Path) -> None:
    write(tmp_path / "ratings.dat", "1::1::5::978300760\n")
    with pytest.warns(UserWarning) as record:
        data = load_movielens("ml-1m", tmp_path)
    assert sorted(str(w.message).split(":")[0] for w in record) == [
        str(tmp_path / "movies.dat"), str(tmp_path / "users.dat")]
    assert data.user_features is None and data.item_features is None and data.item_titles is None


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown MovieLens dataset 'ml-2k'"):
        load_movielens("ml-2k", tmp_path)
