"""Ensemble-teacher benchmark on ml-100k, seed 0: the seed's fixed weights and learned weights against every
member, on P-RANK (ranking and rating on one split) and on P-RATING u1 (rating side).
Writes the ``ensemble`` section of BENCHMARKS.md.

Run: ``python benchmarks/ensemble.py [--data-dir ../shared/data]``. Members come from the runs store
``runs/bench`` shared with ``benchmarks/zoo.py`` (trained there when missing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import DATA_ROOT, machine_line, markdown_table, write_section
from distillrec.ensemble.build import build_ensemble
from distillrec.ensemble.weights import DEFAULT_ALGORITHMS, DEFAULT_TASKS, DEFAULT_WEIGHTS, parse_members
from distillrec.runs import DataSpec

ROOT = Path("runs/bench")


def ensemble_rows(data: DataSpec, protocol: str, fold: int | None) -> list[list[object]]:
    algorithms, tasks = ",".join(DEFAULT_ALGORITHMS), ",".join(DEFAULT_TASKS)
    member_rows: dict[str, list[object]] = {}  # run folder -> row: every distinct member run, once
    rows: list[list[object]] = []
    # the seed's tasks keep SVD out of the rating side; the last row lets every member feed both sides
    variants = (("seed weights 0.4/0.4/0.2", ",".join(map(str, DEFAULT_WEIGHTS)), tasks), ("auto", "auto", tasks),
                ("auto, every member on both sides (tasks balance x3)", "auto", "balance,balance,balance"))
    for label, weights, member_tasks in variants:
        run = build_ensemble(parse_members(algorithms, weights, member_tasks), data, protocol, 0, fold, root=ROOT,
                             progress=False)
        metrics = run.metrics
        for member in metrics["members"]:
            test = member["test"]
            member_rows.setdefault(member["run"], [
                f"{member['model']} (trained for `{member['trained_for']}`)", test["ndcg@10"], test["recall@10"],
                test["rmse"], test["mae"], "-", "-"])
        config = run.model.config
        described = ", ".join(f"{m}={w:.2f}" for m, w in zip(config.models, config.weights, strict=True))
        if config.rating_weights:
            described += "; rating NNLS: " + ", ".join(
                f"{m}={w:.3f}" for m, w in zip(config.models, config.rating_weights, strict=True))
        test = metrics["test"]
        name = f"**ensemble, {label}**" if member_tasks == tasks else f"ensemble, {label}"
        rows.append([name, test["ndcg@10"], test["recall@10"], test["rmse"], test["mae"],
                     config.fusion, described])
        print(rows[-1], flush=True)
    return [*member_rows.values(), *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA_ROOT))
    args = parser.parse_args()
    data = DataSpec("ml-100k", data_dir=args.data_dir)
    headers = ["model", "NDCG@10", "Recall@10", "RMSE", "MAE", "fusion", "weights"]
    body = "\n\n".join([
        "## Ensemble teacher on ml-100k, seed 0 (`benchmarks/ensemble.py`)",
        machine_line(),
        "**P-RANK** (test split; members trained for both heads, except that a `rating` member trains its rating "
        "head only; learned weights use the valid split only):",
        markdown_table(headers, ensemble_rows(data, "p-rank", None)),
        "**P-RATING u1** (members trained with task `rating`; RMSE/MAE on u1.test):",
        markdown_table(headers, ensemble_rows(data, "p-rating", 1)),
    ])
    write_section("ensemble", body)
    print(body)


if __name__ == "__main__":
    main()
