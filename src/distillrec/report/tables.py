"""The pipeline's comparison: every zoo model, the ensemble teacher and the student, side by side.

"Best for" labels come from :func:`distillrec.zoo.best_for` over all rows (so the student can win *real-time*).
The student's row also shows the share of the teacher's test NDCG@10 it keeps and its single-request p99 latency
speed-up, both as ``distill`` measured them (teacher and student timed in the same run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from distillrec.zoo import best_for

SUMMARY_HEADERS = ("model", "NDCG@10", "Recall@10", "RMSE", "params", "p99 ms", "best for", "keeps NDCG@10",
                   "p99 speed-up")


def entries(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Zoo runs, then the ensemble and the student, each with ``model``, ``kind``, ``test`` and ``cost``."""
    rows = [{**r, "kind": "zoo"} for r in results["zoo"]]
    rows.append({**results["ensemble"], "model": "ensemble", "kind": "ensemble"})
    rows.append({**results["student"], "model": "student", "kind": "student"})
    return rows


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The terminal's (and report's) table: quality, rating accuracy, cost, best use, retention, speed-up."""
    rows_in = entries(results)
    labels = best_for(rows_in)
    rows = []
    for r in rows_in:
        student = r["kind"] == "student"
        summary = r.get("distillation", {}) if student else {}
        rows.append([r["model"], r["test"].get("ndcg@10"), r["test"].get("recall@10"), r["test"].get("rmse"),
                     r["cost"].get("params"), r["cost"].get("latency_p99_ms"), ", ".join(labels[r["model"]]) or "-",
                     summary.get("retained_ndcg@10"), times(summary.get("latency_p99_speedup"))])
    return list(SUMMARY_HEADERS), rows


def times(value: float | None) -> str | None:
    """A speed-up as ``2.39x`` (None stays None: the cell shows '-')."""
    return None if value is None else f"{value:.2f}x"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower-or-equal latency ``x`` with higher-or-equal quality ``y``,
    strictly better in one. Sorted by latency."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox <= x and oy >= y and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def cell(value: Any) -> str:
    """One table cell: 4 decimals for metrics, thousands separators for counts, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned plain-text table: text columns left-aligned, numbers right-aligned."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) and rows and
               any(row[i] is not None for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)]).rstrip()


def effective_weights(model_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per member: task, given weight, and the weights the ensemble applies on the ranking and rating sides.

    Ranking weights are renormalised over the members feeding ranking (as ``Ensemble.task_weights`` does); the
    rating side uses learned NNLS weights as they are when ``--weights auto`` learned them, else the same
    renormalisation over the members feeding rating."""
    models, tasks, weights = model_config["models"], model_config["tasks"], model_config["weights"]

    def shares(side: str, values: Sequence[float]) -> list[float]:
        chosen = [w if t in (side, "balance") and w > 0 else 0.0 for t, w in zip(tasks, values, strict=True)]
        total = sum(chosen) or 1.0
        return [w / total for w in chosen]

    ranking = shares("ranking", weights)
    learned = model_config.get("rating_weights") or []
    rating = [float(w) for w in learned] if learned else shares("rating", weights)
    return [{"model": m, "task": t, "weight": w, "ranking_weight": rk, "rating_weight": rt}
            for m, t, w, rk, rt in zip(models, tasks, weights, ranking, rating, strict=True)]
