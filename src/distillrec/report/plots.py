"""The report's own figures: quality against latency, zoo training curves, ensemble weights.

Plain ``matplotlib.figure.Figure`` objects saved through :func:`distillrec.plotting.save_figure` (Agg canvas, no
pyplot, atomic PNG writes). The Fisher and pruning-trajectory figures are the ones ``run_fisher`` and ``distill``
already wrote; the report embeds those files as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from distillrec.plotting import save_figure
from distillrec.report.tables import pareto_front

KIND_STYLE = {"zoo": ("tab:blue", "o", "zoo model"), "ensemble": ("tab:red", "*", "ensemble teacher"),
              "student": ("tab:green", "D", "distilled student")}


def plot_quality_latency(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Test NDCG@10 against single-request p99 latency (log scale), the Pareto front joined and ringed."""
    points = [(r["cost"]["latency_p99_ms"], r["test"]["ndcg@10"]) for r in rows]
    front = pareto_front(points)
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    for kind, (color, marker, label) in KIND_STYLE.items():
        chosen = [p for r, p in zip(rows, points, strict=True) if r["kind"] == kind]
        if chosen:
            ax.scatter(*zip(*chosen, strict=True), color=color, marker=marker, s=140 if marker == "*" else 60,
                       label=label, zorder=3)
    if front:
        xs, ys = zip(*(points[i] for i in front), strict=True)
        ax.step(xs, ys, where="post", color="0.4", linestyle="--", linewidth=1, zorder=2)
        ax.scatter(xs, ys, s=260, facecolors="none", edgecolors="black", linewidths=1.2, zorder=4,
                   label="Pareto front (no model is both faster and better)")
    for i, row in enumerate(rows):
        ax.annotate(row["model"], points[i], textcoords="offset points", xytext=(7, 6 if _above(points, i) else -13),
                    fontsize=9)
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
    ax.set_xlabel("single-request p99 latency, ms (one user, top-10 over all items; log scale)")
    ax.set_ylabel("test NDCG@10 (higher is better)")
    ax.set_title("Recommendation quality against serving latency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def _above(points: Sequence[tuple[float, float]], i: int) -> bool:
    """Label above the marker unless the nearest point in log latency is higher (then below: no overprint)."""
    others = [p for j, p in enumerate(points) if j != i]
    if not others:
        return True
    x, y = points[i]
    nearest = min(others, key=lambda p: abs(np.log10(max(p[0], 1e-9)) - np.log10(max(x, 1e-9))))
    return y >= nearest[1]


def plot_training_curves(logs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Valid NDCG@10 and valid RMSE per epoch of every zoo run that logged them (closed-form heads log none)."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = ((axes[0], "valid_ndcg@10", "valid NDCG@10 (higher is better)"),
              (axes[1], "valid_rmse", "valid RMSE (lower is better)"))
    for ax, key, label in panels:
        missing = []
        for model, rows in logs.items():
            values = [(r["epoch"] + 1, r[key]) for r in rows if r.get(key) is not None]
            if values:
                ax.plot(*zip(*values, strict=True), marker="o", markersize=3, label=model)
            else:
                missing.append(model)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="best")
        if missing:
            ax.text(0.01, 0.01, "not logged: " + ", ".join(missing), transform=ax.transAxes, fontsize=8,
                    color="0.35", va="bottom")
    fig.suptitle("Zoo training curves (the trainer keeps the best valid epoch)")
    return save_figure(fig, path)


def plot_ensemble_weights(weights: Sequence[dict[str, Any]], fusion: str, path: Path) -> Path:
    """Each member's weight on the ranking side (renormalised) and the rating side (as applied)."""
    names = [f"{w['model']}\n({w['task']})" for w in weights]
    positions = np.arange(len(names))
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    for offset, key, label, color in ((-0.2, "ranking_weight", f"ranking ({fusion} fusion)", "tab:blue"),
                                      (0.2, "rating_weight", "rating", "tab:orange")):
        values = [w[key] for w in weights]
        bars = ax.bar(positions + offset, values, width=0.4, label=label, color=color)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(positions, names)
    ax.set_ylabel("weight applied by the ensemble")
    ax.set_ylim(0, max([1.0, *(w["rating_weight"] for w in weights)]) * 1.15)
    ax.set_title("Ensemble weights per member and side")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
