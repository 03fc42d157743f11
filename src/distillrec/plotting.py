"""Figure saving shared by every plot: plain ``Figure`` objects on the Agg canvas (no pyplot, no display),
written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from distillrec.io import atomic_write

DPI = 120


def save_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    return path
