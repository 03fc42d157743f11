"""Content identity of a dataset's source files.

The runs store keys a run by what was read, not by where it lay: the same MovieLens copy found through
``--data-dir``, ``$DISTILLREC_DATA`` or the cache reuses one run, and a file edited in place trains a new one
instead of silently reusing a run trained on the old contents.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from distillrec.data.loading import movielens_folder
from distillrec.data.movielens import MOVIELENS_DATASETS

#: (resolved path, size, mtime) -> SHA-256 of the bytes, so one process hashes each file once
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, memoised while the file's size and modification time stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        with path.open("rb") as handle:
            _DIGESTS[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _DIGESTS[key]


def data_sha256(name: str, data_dir: str | None, path: str | None) -> str | None:
    """SHA-256 of what a dataset is read from; None for generated data (its settings are its identity) and for
    a source that is not there (loading it then fails with the loader's own one-line error).

    A MovieLens folder counts whole, by file names and contents (ml-100k's ``u{fold}.base/test`` define
    P-RATING's folds); it is found by the loader's own lookup, downloading it when no copy is found. A single
    file counts by its contents only, so renaming it changes nothing.
    """
    if name in MOVIELENS_DATASETS:
        root = movielens_folder(name, Path(data_dir) if data_dir else None, Path(path) if path else None)
        if not root.is_dir():
            return None
        digest = hashlib.sha256()
        for file in sorted(p for p in root.iterdir() if p.is_file()):
            digest.update(f"{file.name}\0{file_sha256(file)}\n".encode())
        return digest.hexdigest()
    if path and Path(path).expanduser().is_file():
        return file_sha256(Path(path).expanduser())
    return None
