"""The pruning trajectory as a picture: parameters against validation quality, step by step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from distillrec.plotting import save_figure


def plot_trajectory(rows: list[dict[str, Any]], path: Path, teacher_valid: dict[str, float]) -> Path:
    """Valid NDCG@10 and RMSE against the student's parameter count, one marker per step, the teacher dashed."""
    params = [r["params"] / 1000 for r in rows]
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "valid_ndcg@10", "valid NDCG@10 (higher is better)"),
                           (axes[1], "valid_rmse", "valid RMSE (lower is better)")):
        values = [r[key] for r in rows]
        ax.plot(params, values, marker="o", color="tab:blue", label="student")
        for r, x, y in zip(rows, params, values, strict=True):
            ax.annotate(f"{r['step']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        reference = teacher_valid.get(key.removeprefix("valid_"))
        if reference is not None:
            ax.axhline(reference, color="tab:red", linestyle="--", label="teacher")
        ax.set_xlabel("student parameters (thousands)")
        ax.set_ylabel(label)
        if len(set(params)) > 1:
            ax.invert_xaxis()  # pruning goes right to left: from the dense student to the final one
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("Pruning trajectory (step numbers annotated; 0 = dense distilled student)")
    return save_figure(fig, path)
