"""The report's pure parts against hand-worked cases: Pareto front, ensemble weights, tables, rendering."""

from __future__ import annotations

import base64
from pathlib import Path

from matplotlib.figure import Figure

from distillrec.plotting import save_figure
from distillrec.report.render import Image, Section, Table, Text, render_html, render_markdown
from distillrec.report.tables import effective_weights, pareto_front, summary_rows, text_table


def test_pareto_front_by_hand() -> None:
    # (latency, quality): b is beaten by a (as fast, better); d by c (slower, worse); e ties c on both
    points = [(1.0, 0.30), (1.0, 0.20), (5.0, 0.40), (6.0, 0.35), (5.0, 0.40), (0.5, 0.10)]
    assert pareto_front(points) == [5, 0, 2, 4]
    assert pareto_front([(2.0, 0.1)]) == [0]


def test_effective_weights_fixed_and_learned() -> None:
    config = {"models": ["svd", "xdeepfm", "autoint"], "tasks": ["ranking", "rating", "balance"],
              "weights": [0.4, 0.4, 0.2], "rating_weights": []}
    rows = effective_weights(config)
    assert [round(r["ranking_weight"], 6) for r in rows] == [round(0.4 / 0.6, 6), 0.0, round(0.2 / 0.6, 6)]
    assert [round(r["rating_weight"], 6) for r in rows] == [0.0, round(0.4 / 0.6, 6), round(0.2 / 0.6, 6)]
    learned = effective_weights({**config, "rating_weights": [0.0, 0.7, 0.45]})
    assert [r["rating_weight"] for r in learned] == [0.0, 0.7, 0.45]  # NNLS weights are applied as they are


def _metrics(ndcg: float, rmse: float, p99: float, params: int) -> dict:
    return {"test": {"ndcg@10": ndcg, "recall@10": ndcg / 2, "rmse": rmse},
            "cost": {"params": params, "latency_p99_ms": p99}}


def test_summary_rows_label_uses_and_show_retention() -> None:
    student = {**_metrics(0.27, 0.95, 0.5, 1000), "distillation": {"retained_ndcg@10": 0.9, "latency_p99_speedup": 8.0}}
    results = {"zoo": [{**_metrics(0.25, 0.93, 2.0, 5000), "model": "svd"},
                       {**_metrics(0.28, 0.97, 3.0, 9000), "model": "autoint"}],
               "ensemble": _metrics(0.30, 0.92, 4.0, 14000), "student": student}
    headers, rows = summary_rows(results)
    by_model = {r[0]: dict(zip(headers, r, strict=True)) for r in rows}
    assert list(by_model) == ["svd", "autoint", "ensemble", "student"]
    assert by_model["ensemble"]["best for"] == "ranking, rating, balance"
    assert by_model["student"]["best for"] == "real-time"
    assert by_model["student"]["keeps NDCG@10"] == 0.9 and by_model["student"]["p99 speed-up"] == "8.00x"
    assert by_model["svd"]["keeps NDCG@10"] is None
    lines = text_table(headers, rows).splitlines()
    assert lines[0].startswith("model") and len(lines) == 2 + len(rows)
    assert lines[2].split()[:2] == ["svd", "0.2500"]


def test_markdown_links_and_html_inlines_the_same_images(tmp_path: Path) -> None:
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    png = save_figure(fig, tmp_path / "figs" / "line.png")
    sections = [Section("One", [Text("a <b> & c"), Table(["x", "y"], [["p|q", 1.5]]), Image(png, "a line")])]
    markdown = render_markdown("T", sections, tmp_path)
    assert "![a line](figs/line.png)" in markdown and "| p\\|q | 1.5000 |" in markdown
    page = render_html("T", sections)
    assert "a &lt;b&gt; &amp; c" in page
    encoded = page.split('<img src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(encoded) == png.read_bytes()
