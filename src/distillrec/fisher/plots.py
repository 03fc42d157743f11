"""PNG plots of a Fisher report: layers, fields, attention heads, pruning curves.

Figures are plain ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, never pyplot, so no global
backend is switched and nothing needs a display. Every plot names its unit (share of the task's total Fisher,
in %) and the estimator; long names go on the y axis of horizontal bars, and figures grow with the number of
bars so labels never overlap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from distillrec.fisher.report import KIND_NAMES, MASS
from distillrec.plotting import save_figure

#: bars shown at most in the layer and field plots (the report lists all)
MAX_BARS = 30


def _estimator_label(report: dict[str, Any]) -> str:
    return "exact per-sample Fisher" if report["estimator"] == "exact" else "BATCH APPROXIMATION of the Fisher"


def _bars(rows: list[dict[str, Any]], key: str, tasks: list[str], title: str, xlabel: str, path: Path,
          log: bool) -> Path:
    """Grouped horizontal bars: one row per entry (largest on top), one bar per task."""
    rows = rows[:MAX_BARS]
    names = [r[key] for r in rows]
    height = 0.8 / max(1, len(tasks))
    fig = Figure(figsize=(10, 1.8 + 0.22 * len(names) * max(1, len(tasks)) ** 0.5))
    ax = fig.subplots()
    positions = np.arange(len(names))
    values = np.array([[100 * max(r.get(task, 0.0), 0.0) for r in rows] for task in tasks])  # [T, rows]
    # a log axis cannot show 0: bars start at a floor below the smallest positive value; zeros get no bar
    positive = values[values > 0]
    floor = float(positive.min()) / 3 if log and positive.size else 0.0
    for i, task in enumerate(tasks):
        widths = np.where(values[i] > floor, values[i] - floor, 0.0)
        ax.barh(positions + (i - (len(tasks) - 1) / 2) * height, widths, left=floor, height=height, label=task)
    ax.set_yticks(positions, names, fontsize=8)
    ax.invert_yaxis()
    if log and positive.size:
        ax.set_xscale("log")
        ax.set_xlim(floor, float(positive.max()) * 2)
        xlabel += "; no bar: zero Fisher"
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="focus task", fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_layers(report: dict[str, Any], folder: Path) -> Path:
    tasks = list(report["tasks"])
    names = {r["layer"]: r["display"] for body in report["tasks"].values() for r in body["layers"]}
    rows = [{**row, "name": names.get(row["layer"], row["layer"])} for row in report["comparison"]["layers"]]
    shown = f" (top {MAX_BARS} of {len(rows)})" if len(rows) > MAX_BARS else ""
    return _bars(rows, "name", tasks, f"Fisher per layer{shown} - {_estimator_label(report)}",
                 "share of the task's total parameter Fisher (%, log scale)", folder / "fisher_layers.png", log=True)


def plot_fields(report: dict[str, Any], folder: Path) -> Path:
    tasks = list(report["tasks"])
    rows = report["comparison"]["fields"]
    return _bars(rows, "field", tasks, f"Feature-field importance (group Fisher of the field mask) - "
                 f"{_estimator_label(report)}", "share of the task's field Fisher (%)", folder / "fisher_fields.png",
                 log=False)


def plot_heads(report: dict[str, Any], folder: Path) -> Path | None:
    """Heat map per task: rows are attention layers, columns heads, colour the head's share within its model."""
    tasks = list(report["tasks"])
    layers = [name for name, g in report["tasks"][tasks[0]]["groups"].items() if g["kind"] == "attention_head"]
    if not layers:
        return None
    n_heads = max(len(report["tasks"][tasks[0]]["groups"][name]["ranking"]) for name in layers)
    fig = Figure(figsize=(3.0 + 1.2 * n_heads * len(tasks), 1.8 + 0.5 * len(layers)))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        grid = np.full((len(layers), n_heads), np.nan)
        groups = report["tasks"][task]["groups"]
        total = sum(r["score"] for name in layers for r in groups[name]["ranking"]) or 1.0
        for i, name in enumerate(layers):
            for row in groups[name]["ranking"]:
                grid[i, int(row["group"].removeprefix("head"))] = 100 * row["score"] / total
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(n_heads), [f"h{h}" for h in range(n_heads)], fontsize=8)
        ax.set_yticks(range(len(layers)), [groups[name]["display"] for name in layers], fontsize=8)
        ax.set_xlabel("head")
        ax.set_title(f"{task}", fontsize=10)
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if value < np.nanmax(grid) * 0.6 else "black")
        fig.colorbar(image, ax=ax, label="share of all heads' Fisher (%)")
    fig.suptitle(f"Attention-head Fisher - {_estimator_label(report)}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, folder / "fisher_heads.png")


def plot_pruning(report: dict[str, Any], folder: Path) -> Path:
    """Cumulative Fisher share against the fraction of groups kept (largest first), per group kind."""
    tasks = list(report["tasks"])
    fig = Figure(figsize=(5.6 * len(tasks), 4.8))
    axes = fig.subplots(1, len(tasks), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        for kind, body in report["tasks"][task]["pruning"].items():
            if not body["curve"]:
                continue
            curve = np.array(body["curve"])
            ax.plot(100 * curve[:, 0], 100 * curve[:, 1],
                    label=f"{KIND_NAMES.get(kind, kind)} ({100 * body['fraction_for_mass']:.0f}% for "
                          f"{int(100 * MASS)}%)")
        ax.axhline(100 * MASS, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("groups kept, largest Fisher first (%)")
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("cumulative share of Fisher (%)")
    fig.suptitle(f"How much can be pruned - {_estimator_label(report)}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, folder / "fisher_pruning.png")


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [plot_layers(report, folder), plot_fields(report, folder), plot_heads(report, folder),
             plot_pruning(report, folder)]
    return [p for p in paths if p is not None]
