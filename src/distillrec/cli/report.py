"""Terminal rendering of metrics (plain text tables, no dependencies)."""

from __future__ import annotations

from typing import Any

RANKING_KEYS = ("recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10", "coverage@10", "success_rate")
RATING_KEYS = ("rmse", "mae")
COST_KEYS = ("params", "bytes", "train_seconds", "seconds_per_epoch", "users_per_second", "latency_p50_ms",
             "latency_p99_ms")


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def print_metrics(metrics: dict[str, Any]) -> None:
    """Valid/test quality side by side, then cost, as an aligned text table."""
    print(f"{metrics.get('model')} on {metrics.get('dataset')} "
          f"({metrics.get('protocol')}, seed {metrics.get('seed')})")
    rows = [(key, metrics["valid"].get(key), metrics["test"].get(key))
            for key in (*RANKING_KEYS, *RATING_KEYS) if key in metrics.get("test", {})]
    width = max(len(k) for k, *_ in rows) if rows else 10
    print(f"  {'metric':<{width}}  {'valid':>10}  {'test':>10}")
    for key, valid, test in rows:
        print(f"  {key:<{width}}  {format_value(valid):>10}  {format_value(test):>10}")
    cost = metrics.get("cost", {})
    print("  cost: " + ", ".join(f"{k}={format_value(cost[k])}" for k in COST_KEYS if k in cost))
