"""Dataset lookup and download, against file:// zips built here (never the real GroupLens server)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from distillrec.data import download
from distillrec.data.download import Archive, dataset_status, resolve_dataset_dir
from distillrec.data.loading import KNOWN_DATASETS, list_datasets, load_dataset
from distillrec.errors import DataError

U_DATA = "1\t1\t5\t881250949\n2\t1\t3\t881250950\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DISTILLREC_CACHE", str(folder))
    monkeypatch.delenv("DISTILLREC_DATA", raising=False)
    monkeypatch.setattr(download, "TIMEOUT_S", 5.0)
    return folder


def make_zip(tmp_path: Path, name: str = "ml-100k", files: dict[str, str] | None = None) -> Path:
    path = tmp_path / "server" / f"{name}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in (files or {"u.data": U_DATA, "README": "tiny"}).items():
            zf.writestr(f"{name}/{member}", text)
    return path


def serve(monkeypatch: pytest.MonkeyPatch, name: str, url: str, md5: str | None, key: str = "u.data") -> None:
    monkeypatch.setitem(download.ARCHIVES, name, Archive(name, url, md5, key))


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_download_verifies_and_unpacks_into_cache(tmp_path: Path, cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path)
    serve(monkeypatch, "ml-100k", archive.as_uri(), md5_of(archive))
    folder = resolve_dataset_dir("ml-100k")
    assert folder == cache / "ml-100k" and (folder / "u.data").read_text() == U_DATA
    assert leftovers(cache) == ["ml-100k", "ml-100k.download.json"]  # no temporary folders remain
    record = json.loads((cache / "ml-100k.download.json").read_text())
    assert record["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest() and record["md5"] == md5_of(archive)
    serve(monkeypatch, "ml-100k", (tmp_path / "gone.zip").as_uri(), "0" * 32)
    assert resolve_dataset_dir("ml-100k") == folder  # present now: no second download
    with pytest.warns(UserWarning, match="not found; loading without these features"):
        assert load_dataset("ml-100k").n_interactions == 2


def test_wrong_md5_leaves_no_dataset(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path)
    serve(monkeypatch, "ml-100k", archive.as_uri(), "0" * 32)
    with pytest.raises(DataError) as info:
        resolve_dataset_dir("ml-100k")
    message = str(info.value)
    assert "\n" not in message and "checksum mismatch" in message and md5_of(archive) in message
    assert str(cache / "ml-100k") in message
    assert leftovers(cache) == []


def test_unreachable_url_is_one_line(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = (tmp_path / "missing.zip").as_uri()
    serve(monkeypatch, "ml-1m", url, "0" * 32, key="ratings.dat")
    with pytest.raises(DataError) as info:
        resolve_dataset_dir("ml-1m")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"could not download ml-1m from {url} (")
    assert f"put the unpacked folder at {cache / 'ml-1m'}" in message and "DISTILLREC_DATA" in message
    assert leftovers(cache) == []


def test_refused_connection_is_one_line(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, "ml-1m", "http://127.0.0.1:9/ml-1m.zip", "0" * 32, key="ratings.dat")
    with pytest.raises(DataError, match=r"^could not download ml-1m from http://127\.0\.0\.1:9/ml-1m\.zip") as info:
        resolve_dataset_dir("ml-1m")
    assert "\n" not in str(info.value)


def test_interrupted_unpack_leaves_nothing(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path)
    serve(monkeypatch, "ml-100k", archive.as_uri(), md5_of(archive))

    def interrupted(*args: object) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_unpack", interrupted)
    with pytest.raises(KeyboardInterrupt):
        resolve_dataset_dir("ml-100k")
    assert leftovers(cache) == []


def test_incomplete_folder_is_replaced(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cache / "ml-100k").mkdir(parents=True)
    (cache / "ml-100k" / "u.item").write_text("half")  # no u.data: does not count as present
    archive = make_zip(tmp_path)
    serve(monkeypatch, "ml-100k", archive.as_uri(), md5_of(archive))
    folder = resolve_dataset_dir("ml-100k")
    assert sorted(p.name for p in folder.iterdir()) == ["README", "u.data"]


def test_md5_from_file_beside_archive(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(tmp_path, "ml-latest-small", {"ratings.csv": "userId,movieId,rating,timestamp\n1,1,4,1\n"})
    serve(monkeypatch, "ml-latest-small", archive.as_uri(), None, key="ratings.csv")
    with pytest.raises(DataError, match=r"could not download the checksum of ml-latest-small from .*\.zip\.md5"):
        resolve_dataset_dir("ml-latest-small")
    Path(f"{archive}.md5").write_text(f"MD5 (ml-latest-small.zip) = {md5_of(archive)}\n")
    assert (resolve_dataset_dir("ml-latest-small") / "ratings.csv").is_file()


def test_lookup_order_and_no_download(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"ml-100k not found .*allow downloading") as info:
        resolve_dataset_dir("ml-100k", tmp_path / "mine", download=False)
    assert "\n" not in str(info.value)
    for place in (cache, tmp_path / "env", tmp_path / "mine"):
        (place / "ml-100k").mkdir(parents=True)
        (place / "ml-100k" / "u.data").write_text(U_DATA)
    assert resolve_dataset_dir("ml-100k", download=False) == cache / "ml-100k"
    monkeypatch.setenv("DISTILLREC_DATA", str(tmp_path / "env"))
    assert resolve_dataset_dir("ml-100k", download=False) == tmp_path / "env" / "ml-100k"
    assert resolve_dataset_dir("ml-100k", tmp_path / "mine", download=False) == tmp_path / "mine" / "ml-100k"
    assert resolve_dataset_dir("ml-100k", tmp_path / "mine" / "ml-100k") == tmp_path / "mine" / "ml-100k"


def test_dataset_status_and_listing(tmp_path: Path, cache: Path) -> None:
    assert dataset_status("ml-1m")["present"] is False
    (cache / "ml-1m").mkdir(parents=True)
    (cache / "ml-1m" / "ratings.dat").write_text("1::1::5::1\n")
    status = dataset_status("ml-1m")
    assert status == {"name": "ml-1m", "present": True, "source": "cache", "path": str(cache / "ml-1m"),
                      "size_bytes": 11}
    rows = {row["name"]: row for row in list_datasets()}
    assert set(rows) == set(KNOWN_DATASETS)
    assert rows["ml-1m"]["cached"] is True and rows["ml-1m"]["size"] == 11 and rows["ml-25m"]["present"] is False


def test_load_dataset_errors(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'ml-7'; known: synthetic, ml-100k"):
        load_dataset("ml-7")
    with pytest.raises(DataError, match="needs the file to read: pass --path"):
        load_dataset("csv")
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3\n")
    assert load_dataset("csv", path=path).n_interactions == 1
