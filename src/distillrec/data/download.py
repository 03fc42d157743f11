"""Find MovieLens folders on disk, or download, verify and unpack them into the cache.

A dataset folder is looked up in ``--data-dir``, then ``$DISTILLREC_DATA``, then the cache
(``$DISTILLREC_CACHE``, default ``~/.cache/distillrec``). Downloads are checked against the published MD5
before anything is unpacked, and unpacking happens in a temporary folder that is renamed into place, so an
interrupted or corrupt download never leaves a half-written dataset that later looks present.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from distillrec.data.movielens import KEY_FILES
from distillrec.errors import DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """Where a dataset's zip lives and how to verify it (``md5=None``: read ``<url>.md5`` beside it)."""

    name: str
    url: str
    md5: str | None
    key_file: str


def _archive(name: str, md5: str | None) -> Archive:
    return Archive(name, f"{BASE_URL}/{name}.zip", md5, KEY_FILES[name])


#: Published MD5s (GroupLens ``.md5`` files). Tests monkeypatch this table to point at local zips.
ARCHIVES: dict[str, Archive] = {
    "ml-100k": _archive("ml-100k", "0e33842e24a9c977be4e0107933c0723"),
    "ml-1m": _archive("ml-1m", "c4d9eecfca2ab87c1945afe126590906"),
    "ml-latest-small": _archive("ml-latest-small", None),  # changes over time: verify against <url>.md5
    "ml-20m": _archive("ml-20m", "cd245b17a1ae2cc31bb14903e1204af3"),
    "ml-25m": _archive("ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada"),
}


def cache_dir() -> Path:
    """The download cache: ``$DISTILLREC_CACHE`` or ``~/.cache/distillrec``."""
    return Path(os.environ.get("DISTILLREC_CACHE") or Path.home() / ".cache" / "distillrec").expanduser()


def candidate_dirs(name: str, data_dir: Path | None = None) -> list[tuple[str, Path]]:
    """Places searched for ``name``, in order, labelled by where they come from."""
    places: list[tuple[str, Path]] = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        places.append(("data_dir", data_dir / name))
        if data_dir.name == name:  # --data-dir may name the dataset folder itself
            places.append(("data_dir", data_dir))
    if os.environ.get("DISTILLREC_DATA"):
        places.append(("env", Path(os.environ["DISTILLREC_DATA"]).expanduser() / name))
    places.append(("cache", cache_dir() / name))
    return places


def find_dataset_dir(name: str, data_dir: Path | None = None) -> tuple[str, Path] | None:
    """``(source, folder)`` of the first complete copy of ``name`` (its key file exists), else None."""
    key = _get_archive(name).key_file
    for source, folder in candidate_dirs(name, data_dir):
        if (folder / key).is_file():
            return source, folder
    return None


def resolve_dataset_dir(name: str, data_dir: Path | None = None, download: bool = True) -> Path:
    """The unpacked folder of ``name``, downloading it into the cache when no copy is found."""
    found = find_dataset_dir(name, data_dir)
    if found is not None:
        return found[1]
    if not download:
        looked = ", ".join(str(p) for _, p in candidate_dirs(name, data_dir))
        raise DataError(f"{name} not found (looked in {looked}); {_where_to_put(name)}, or allow downloading")
    return download_dataset(name)


def dataset_status(name: str, data_dir: Path | None = None) -> dict[str, object]:
    """Whether ``name`` is present, where, and its size on disk in bytes (for ``distillrec datasets``)."""
    found = find_dataset_dir(name, data_dir)
    if found is None:
        return {"name": name, "present": False, "source": None, "path": None, "size_bytes": 0}
    source, folder = found
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"name": name, "present": True, "source": source, "path": str(folder), "size_bytes": size}


def download_dataset(name: str, cache: Path | None = None) -> Path:
    """Download ``name`` into ``cache``, verify its MD5, unpack it and rename it into place atomically."""
    archive = _get_archive(name)
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / name
    try:
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-download-", dir=cache))
    except OSError as exc:
        raise DataError(f"cannot create the download cache {cache} ({_reason(exc)}); {_where_to_put(name)}") from None
    try:
        zip_path = work / f"{name}.zip"
        md5, sha256 = _fetch(archive, zip_path)
        expected = archive.md5 or _published_md5(archive)
        if md5 != expected.lower():
            raise DataError(f"checksum mismatch for {archive.url}: MD5 {md5}, expected {expected} (corrupt or changed "
                            f"download; nothing was unpacked); {_where_to_put(name)}")
        folder = _unpack(zip_path, work / "unpacked", archive)
        record = {"name": name, "url": archive.url, "md5": md5, "sha256": sha256, "bytes": zip_path.stat().st_size}
        (work / "record.json").write_text(json.dumps(record, indent=2) + "\n")
        if (target / archive.key_file).is_file():
            return target  # another process finished first; keep its copy
        if target.exists():
            os.replace(target, work / "stale")  # an incomplete leftover: move aside, then swap in
        os.replace(folder, target)
        os.replace(work / "record.json", cache / f"{name}.download.json")
        return target
    except OSError as exc:
        raise DataError(f"cannot unpack {name} into {target} ({_reason(exc)}); {_where_to_put(name)}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _get_archive(name: str) -> Archive:
    if name not in ARCHIVES:
        raise DataError(f"no download known for {name!r}; downloadable: {', '.join(ARCHIVES)}")
    return ARCHIVES[name]


def _where_to_put(name: str) -> str:
    return (f"put the unpacked folder at {cache_dir() / name} or pass --data-dir DIR / set DISTILLREC_DATA "
            f"(the folder DIR/{name} must hold {_get_archive(name).key_file})")


def _reason(exc: BaseException) -> str:
    """A one-line cause: ``HTTP Error 404: Not Found``, ``[Errno -2] Name or service not known``, ..."""
    reason = None if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", None)
    return " ".join(str(reason if reason is not None else exc).split()) or type(exc).__name__


def _fetch(archive: Archive, dest: Path) -> tuple[str, str]:
    """Stream ``archive.url`` to ``dest`` with a progress bar; returns ``(md5, sha256)`` of the bytes."""
    md5, sha256, received = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(archive.url, timeout=TIMEOUT_S) as response, dest.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {archive.name}",
                      disable=None) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    sha256.update(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
            if total is not None and received != total:
                raise OSError(f"connection closed after {received} of {total} bytes")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DataError(f"could not download {archive.name} from {archive.url} ({_reason(exc)}); "
                        f"{_where_to_put(archive.name)}") from None
    return md5.hexdigest(), sha256.hexdigest()


def _published_md5(archive: Archive) -> str:
    """The MD5 in ``<url>.md5`` (formats ``MD5 (x.zip) = <hex>`` or ``<hex>  x.zip``)."""
    url = f"{archive.url}.md5"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DataError(f"could not download the checksum of {archive.name} from {url} ({_reason(exc)}); "
                        f"{_where_to_put(archive.name)}") from None
    match = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if match is None:
        raise DataError(f"{url} holds no MD5 checksum; {_where_to_put(archive.name)}")
    return match.group(0).lower()


def _unpack(zip_path: Path, into: Path, archive: Archive) -> Path:
    """Extract the verified zip and return the folder holding the key file."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():  # refuse paths escaping the folder even though zipfile sanitises
                if member.startswith(("/", "\\")) or ".." in Path(member).parts:
                    raise DataError(f"{archive.url}: unsafe path {member!r} in archive; {_where_to_put(archive.name)}")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive.url}: not a valid zip ({_reason(exc)}); {_where_to_put(archive.name)}") from None
    for folder in (into / archive.name, into, *sorted(p for p in into.iterdir() if p.is_dir())):
        if (folder / archive.key_file).is_file():
            return folder
    raise DataError(f"{archive.url}: archive has no {archive.key_file}; {_where_to_put(archive.name)}")
