"""Choose SVD's defaults on *validation* data only and record the search in BENCHMARKS.md.

PureSVD (rank, popularity damping) is selected on P-RANK valid NDCG@10 (seed 0); the biased MF (factor
and bias L2, learning rate) on P-RATING u1 valid RMSE (the 10% of u1.base held out). Test numbers are
not read by this script. Run: ``python benchmarks/svd_tuning.py [--data-dir ../shared/data]``.
"""

from __future__ import annotations

import argparse
import itertools

from _common import DATA_ROOT, machine_line, markdown_table, write_section
from distillrec.data.loading import load_dataset
from distillrec.runs import RunSpec, train_run
from distillrec.training.trainer import TrainConfig

RANKS = (10, 20, 30, 50)
POP_BETAS = (0.0, 0.25, 0.5)
MF_GRID = {"mf_reg": (0.05, 0.08, 0.12, 0.15), "bias_reg": (0.0, 0.01), "lr": (0.001, 0.002)}


def tune_ranking(dataset) -> tuple[list[list[object]], dict]:
    rows, best = [], None
    for rank, beta in itertools.product(RANKS, POP_BETAS):
        spec = RunSpec(model="svd", protocol="p-rank", task="ranking", model_config={"rank": rank, "pop_beta": beta})
        valid = train_run(spec, progress=False, dataset=dataset).metrics["valid"]
        rows.append([rank, beta, valid["ndcg@10"], valid["recall@10"]])
        if best is None or valid["ndcg@10"] > best[0]:
            best = (valid["ndcg@10"], {"rank": rank, "pop_beta": beta})
    return rows, best[1]


def tune_rating(dataset) -> tuple[list[list[object]], dict]:
    rows, best = [], None
    for reg, bias_reg, lr in itertools.product(*MF_GRID.values()):
        spec = RunSpec(model="svd", protocol="p-rating", fold=1, task="rating",
                       model_config={"mf_reg": reg, "bias_reg": bias_reg},
                       train=TrainConfig(lr=lr, batch_size=512))
        valid = train_run(spec, progress=False, dataset=dataset).metrics["valid"]
        rows.append([reg, bias_reg, lr, valid["rmse"], valid["mae"]])
        print(rows[-1], flush=True)
        if best is None or valid["rmse"] < best[0]:
            best = (valid["rmse"], {"mf_reg": reg, "bias_reg": bias_reg, "lr": lr})
    return rows, best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA_ROOT))
    args = parser.parse_args()
    dataset = load_dataset("ml-100k", data_dir=args.data_dir)
    rank_rows, rank_best = tune_ranking(dataset)
    rating_rows, rating_best = tune_rating(dataset)
    body = "\n\n".join([
        "## SVD hyper-parameter search (validation only; `benchmarks/svd_tuning.py`)",
        machine_line(),
        "PureSVD on ml-100k P-RANK seed 0, selected by **valid** NDCG@10:",
        markdown_table(["rank", "pop_beta", "valid NDCG@10", "valid Recall@10"], rank_rows),
        f"Chosen: `{rank_best}`.",
        "Biased MF on ml-100k P-RATING u1 (valid = 10% of u1.base), selected by **valid** RMSE (batch 512, Adam):",
        markdown_table(["mf_reg", "bias_reg", "lr", "valid RMSE", "valid MAE"], rating_rows),
        f"Chosen: `{rating_best}`.",
    ])
    write_section("svd-tuning", body)
    print(f"ranking: {rank_best}; rating: {rating_best}")


if __name__ == "__main__":
    main()
