"""One entry point from a dataset name (and flags) to a :class:`Dataset`.

The CLI, run specs and tests all go through :func:`load_dataset`, so every source (synthetic, MovieLens,
user files) gets the same lookup rules and the same one-line errors.
"""

from __future__ import annotations

from pathlib import Path

from distillrec.data.dataset import Dataset
from distillrec.data.download import dataset_status, resolve_dataset_dir
from distillrec.data.movielens import MOVIELENS_DATASETS, load_movielens
from distillrec.data.tabular import load_table
from distillrec.errors import DataError

#: Dataset name -> kind: generated in memory, a GroupLens MovieLens archive, or a user file (needs a path).
KNOWN_DATASETS: dict[str, str] = {
    "synthetic": "synthetic",
    **dict.fromkeys(MOVIELENS_DATASETS, "movielens"),
    "csv": "file",
    "parquet": "file",
}


def load_dataset(name: str, data_dir: Path | None = None, path: Path | None = None,
                 columns: dict[str, str] | None = None, rating_scale: tuple[float, float] | None = None,
                 sep: str | None = None, synthetic: dict | None = None, download: bool = True, *,
                 user_features: Path | None = None, item_features: Path | None = None) -> Dataset:
    """Load dataset ``name`` (one of :data:`KNOWN_DATASETS`).

    MovieLens sets are read from ``path`` when given (the unpacked folder), else looked up in ``data_dir``,
    ``$DISTILLREC_DATA`` and the cache, and downloaded into the cache if ``download`` allows. ``csv`` and
    ``parquet`` read the file ``path`` (see :func:`~distillrec.data.tabular.load_table` for ``columns``,
    ``rating_scale``, ``sep`` and the feature files). ``synthetic`` holds ``SyntheticConfig`` fields.
    """
    kind = KNOWN_DATASETS.get(name)
    if kind is None:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)} "
                        "(for your own file use csv or parquet with --path FILE)")
    if kind == "synthetic":
        from distillrec.data.synthetic import SyntheticConfig, generate_synthetic

        try:
            config = SyntheticConfig(**(synthetic or {}))
        except TypeError as exc:
            raise DataError(f"bad synthetic dataset settings {synthetic}: {exc}") from None
        return generate_synthetic(config)
    if kind == "movielens":
        return load_movielens(name, movielens_folder(name, data_dir, path, download))
    if path is None:
        raise DataError(f"dataset {name!r} needs the file to read: pass --path FILE")
    return load_table(Path(path).expanduser(), fmt=name, columns=columns, rating_scale=rating_scale, sep=sep,
                      user_features=user_features, item_features=item_features)


def movielens_folder(name: str, data_dir: Path | None = None, path: Path | None = None,
                     download: bool = True) -> Path:
    """The unpacked folder MovieLens set ``name`` is read from: ``path`` itself, else the first copy found in
    ``data_dir``, ``$DISTILLREC_DATA`` or the cache (downloaded into the cache if ``download`` allows)."""
    return Path(path).expanduser() if path is not None else resolve_dataset_dir(name, data_dir, download)


def list_datasets(data_dir: Path | None = None) -> list[dict[str, object]]:
    """One row per known dataset: name, kind, present, cached, path and size in bytes."""
    rows: list[dict[str, object]] = []
    for name, kind in KNOWN_DATASETS.items():
        if kind == "movielens":
            status = dataset_status(name, data_dir)
            rows.append({"name": name, "kind": kind, "present": status["present"],
                         "cached": status["source"] == "cache", "path": status["path"], "size": status["size_bytes"]})
        else:  # generated on demand, or read from a file the user names: always available
            rows.append({"name": name, "kind": kind, "present": True, "cached": False, "path": None, "size": 0})
    return rows
