"""Build the ensemble teacher: reuse or train the members, fix or learn the weights, evaluate, save.

Members come from the runs store (trained with the zoo's settings when missing; a ``rating`` member trains
its rating head only, see ``member_spec``). Learned weights and the fusion are chosen on the valid part only;
the test part is touched once, by the final evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import distillrec
from distillrec.data.splits import make_split
from distillrec.ensemble.weighted import FUSIONS, Ensemble, normalise
from distillrec.ensemble.weights import MemberSpec, learn_ranking_weights, learn_rating_weights, renormalise
from distillrec.errors import DistillrecError
from distillrec.evaluation.cost import machine_info, peak_rss_mb
from distillrec.evaluation.protocols import EXCLUDED_PARTS, device_scorer, evaluate, serving_cost
from distillrec.evaluation.ranking import evaluate_ranking
from distillrec.runs import DataSpec, Run, RunSpec, save_run
from distillrec.store import get_or_train
from distillrec.zoo import zoo_spec


def build_ensemble(members: list[MemberSpec], data: DataSpec, protocol: str = "p-rank", seed: int = 0,
                   fold: int | None = None, fusion: str = "auto", root: Path | None = None, out: Path | None = None,
                   progress: bool = True, device: str = "cpu", specs: Sequence[RunSpec] | None = None) -> Run:
    """Combine trained members into an evaluated ``Ensemble`` run (saved to ``out`` when given).

    ``specs`` are the members' run specs when they differ from the zoo's (e.g. the pipeline's capped epochs).
    """
    if fusion not in (*FUSIONS, "auto"):
        raise DistillrecError(f"--fusion must be one of {', '.join((*FUSIONS, 'auto'))}, got {fusion!r}")
    start = time.perf_counter()
    dataset = data.load()
    split = make_split(dataset, protocol, seed, fold)
    if specs is None:
        specs = zoo_member_specs([m.model for m in members], [m.task for m in members], data, protocol, seed, fold,
                                 device)
    else:
        if [s.model for s in specs] != [m.model for m in members]:
            raise DistillrecError("build_ensemble: one run spec per member, in the members' order")
        specs = [member_spec(s, m.task) for s, m in zip(specs, members, strict=True)]
    runs = [get_or_train(spec, root, dataset=dataset, progress=progress)[0] for spec in specs]
    models = [r.model.eval() for r in runs]
    tasks = [m.task for m in members]
    truth = split.matrix(dataset, "valid")
    exclude = split.matrix(dataset, *EXCLUDED_PARTS["valid"])
    ranking_idx = [i for i, t in enumerate(tasks) if t in ("ranking", "balance")]
    rating_idx = [i for i, t in enumerate(tasks) if t in ("rating", "balance")]
    learned: dict[str, Any] = {}
    if any(m.weight is None for m in members):
        scorers = [device_scorer(models[i], device) for i in ranking_idx]
        rank_w, fusion_used, ndcg = learn_ranking_weights(scorers, truth, exclude, seed)
        weights = [0.0] * len(members)
        for i, w in zip(ranking_idx, rank_w, strict=True):
            weights[i] = w
        rating_weights = [0.0] * len(members)
        nnls_w = learn_rating_weights(_valid_predictions(models, rating_idx, dataset, split, device),
                                      dataset.ratings[split.valid])
        for i, w in zip(rating_idx, nnls_w, strict=True):
            rating_weights[i] = float(w)
        learned = {"ranking_weights": weights, "rating_weights": rating_weights, "fusion": fusion_used,
                   "valid_ndcg@10": ndcg}
        fusion = fusion_used if fusion == "auto" else fusion
    else:
        weights = [float(m.weight) for m in members]
        rating_weights = []
        if fusion == "auto":
            fusion = _best_fusion([models[i] for i in ranking_idx], renormalise([weights[i] for i in ranking_idx]),
                                  truth, exclude, device)
    ensemble = Ensemble.from_members(models, tasks, weights, fusion, rating_weights,
                                     [str(r.folder) if r.folder else "" for r in runs]).to(device)
    spec = RunSpec(model="ensemble", data=data, protocol=protocol, fold=fold, seed=seed, task="both",
                   model_config=dataclasses.asdict(ensemble.config), device=device)
    metrics = _metrics(ensemble, spec, dataset, split, runs, learned, time.perf_counter() - start, device)
    seen = split.matrix(dataset, *EXCLUDED_PARTS["test"])
    run = Run(spec, ensemble, metrics, [str(u) for u in dataset.user_ids], [str(i) for i in dataset.item_ids],
              None if dataset.item_titles is None else [str(t) for t in dataset.item_titles], seen, out)
    if out is not None:
        save_run(run, Path(out))
    return run


def zoo_member_specs(models: Sequence[str], tasks: Sequence[str], data: DataSpec, protocol: str, seed: int,
                     fold: int | None, device: str = "cpu") -> list[RunSpec]:
    """The run specs of members trained with the zoo's settings: what an ensemble built by default is made of."""
    return [member_spec(zoo_spec(m, data, protocol, seed, fold, device), t) for m, t in zip(models, tasks, strict=True)]


def member_spec(spec: RunSpec, task: str) -> RunSpec:
    """The run spec a member with ``task`` is trained with: a ``rating`` member trains its rating head only.

    The ensemble never reads a rating member's ranking score, so its capacity goes to ratings: on ml-100k
    P-RANK valid, xDeepFM reaches RMSE 0.902 trained for ratings against 0.920 trained for both, and the seed
    ensemble's rating side 0.895 against 0.919. Ranking and balance members keep both heads: a balance member
    feeds both sides, and a ranking member's rating head stays the rating baseline the ensemble is compared with.
    """
    return dataclasses.replace(spec, task="rating") if task == "rating" else spec


@torch.inference_mode()
def _valid_predictions(models, indices, dataset, split, device) -> np.ndarray:
    users = torch.from_numpy(dataset.users[split.valid]).to(device)
    items = torch.from_numpy(dataset.items[split.valid]).to(device)
    return np.stack([models[i].predict_rating(users, items).float().cpu().numpy() for i in indices], axis=1)


@torch.inference_mode()
def _best_fusion(models, weights, truth, exclude, device) -> str:
    """The fusion with the higher validation NDCG@10 at the given weights."""
    results = {}
    for fusion in FUSIONS:
        def score(users, fusion=fusion):
            users = users.to(device)
            return sum(w * normalise(m.score(users), fusion) for m, w in zip(models, weights, strict=True))

        results[fusion] = evaluate_ranking(score, truth, exclude, ks=(10,)).metrics["ndcg@10"]
    return max(results, key=results.get)


def _metrics(ensemble: Ensemble, spec: RunSpec, dataset, split, runs, learned, seconds, device) -> dict[str, Any]:
    cost = {"params": sum(p.numel() for p in ensemble.parameters()) + sum(b.numel() for b in ensemble.buffers()),
            "bytes": None, "train_seconds": round(sum(r.metrics["cost"]["train_seconds"] for r in runs), 3),
            "build_seconds": round(seconds, 3), "epochs": 0, "seconds_per_epoch": 0.0,
            **serving_cost(ensemble, dataset.n_users, device=device), "peak_rss_mb": round(peak_rss_mb(), 1),
            "threads": torch.get_num_threads()}
    members = [{"model": r.spec.model, "task": t, "weight": w, "trained_for": r.spec.task,
                "run": str(r.folder) if r.folder else None,
                "test": {k: r.metrics["test"].get(k) for k in ("ndcg@10", "recall@10", "rmse", "mae")}}
               for r, t, w in zip(runs, ensemble.config.tasks, ensemble.config.weights, strict=True)]
    return {"model": "ensemble", "dataset": dataset.name, "protocol": spec.protocol, "fold": split.fold,
            "seed": spec.seed, "task": "both", "heads": ["rating", "ranking"],
            "fusion": ensemble.config.fusion, "members": members, "learned": learned,
            "valid": evaluate(ensemble, dataset, split, "valid", device=device),
            "test": evaluate(ensemble, dataset, split, "test", device=device),
            "cost": cost, "machine": machine_info(), "version": distillrec.__version__}
