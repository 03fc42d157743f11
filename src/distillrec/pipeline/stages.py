"""Stage bookkeeping: keys, finished-markers and atomic installation of a stage's outputs.

A stage's *key* hashes its settings and the *digests* of the outputs it reads (not their upstream settings), so
a stage is redone exactly when what it would compute from has changed: a rerun with the same config skips it,
and a redone upstream stage whose outputs come out byte-identical does not cascade.

Every stage writes into a temporary folder inside ``OUT`` and is renamed into place; only then is its marker
``OUT/.stages/STAGE.json`` (key, inputs, output digest, seconds) written atomically. The old marker is removed
before a stage starts, so a run killed mid-stage leaves either the previous finished state or no marker at all,
never a half-written stage that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from distillrec.io import read_json, write_json

MARKERS = ".stages"
TMP_PREFIX = ".tmp-"


def stage_key(stage: str, settings: Any, inputs: Mapping[str, str]) -> str:
    """Hash of the stage name, its settings and its inputs' digests."""
    text = json.dumps({"stage": stage, "settings": settings, "inputs": dict(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(paths: Iterable[Path]) -> str:
    """Hash of the files' names and bytes: what downstream stages compute from."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode())
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class StageStore:
    """The markers and temporary folders of one pipeline output folder."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)

    def marker_path(self, stage: str) -> Path:
        return self.out / MARKERS / f"{stage}.json"

    def finished(self, stage: str, key: str, outputs: Iterable[Path]) -> dict[str, Any] | None:
        """The stage's marker when it was finished with this key and its outputs are all still there."""
        path = self.marker_path(stage)
        if not path.is_file():
            return None
        try:
            marker = read_json(path)
        except (OSError, ValueError):
            return None
        if marker.get("key") != key or not all(Path(p).exists() for p in outputs):
            return None
        return marker

    def marker(self, stage: str) -> dict[str, Any] | None:
        path = self.marker_path(stage)
        return read_json(path) if path.is_file() else None

    def start(self, stage: str) -> None:
        """Forget the stage's finished state before it is redone."""
        self.marker_path(stage).unlink(missing_ok=True)

    def finish(self, stage: str, key: str, inputs: Mapping[str, str], digest: str, seconds: float) -> None:
        write_json(self.marker_path(stage), {"stage": stage, "key": key, "inputs": dict(inputs), "digest": digest,
                                             "seconds": round(seconds, 3), "finished_at": time.time()})

    def temp_folder(self, stage: str) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{stage}-", dir=self.out))

    def clean_temp(self) -> None:
        """Remove what killed runs left behind (an interrupted stage's temporary folder)."""
        if self.out.is_dir():
            for path in self.out.glob(f"{TMP_PREFIX}*"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def install(tmp: Path, final: Path) -> Path:
    """Move a finished temporary folder onto ``final``, replacing what was there."""
    if final.exists():
        old = final.with_name(f"{TMP_PREFIX}old-{final.name}-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final
