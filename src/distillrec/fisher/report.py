"""Fisher results as files: ``fisher.safetensors``, ``fisher_report.json`` and the printed summary.

Shares are fractions of a task's total (parameter Fisher over the targeted parameters, group Fisher within one
family or kind), so tasks with different loss scales compare. Names keep the module paths pruning needs
(``members.2.layers.0``); ``display`` turns them into ``autoint:layers.0`` for people.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from distillrec.fisher.empirical import ESTIMATOR_NOTES, FisherResult
from distillrec.fisher.groups import GROUP_KINDS, Family
from distillrec.fisher.losses import TASK_NOTES
from distillrec.io import atomic_write, write_json

#: fraction of the Fisher mass the pruning summary asks about
MASS = 0.9
KIND_NAMES = {"layer": "layers", "field": "feature fields", "embedding_dim": "embedding dimensions",
              "attention_head": "attention heads", "mlp_neuron": "MLP neurons", "cin_map": "CIN feature maps",
              "cross_unit": "cross-layer units", "svd_factor": "MF latent factors",
              "svd_component": "PureSVD components"}


def display(name: str, scopes: dict[str, str]) -> str:
    """``members.2.layers.0`` -> ``autoint:layers.0`` (member paths named by their model)."""
    for scope in sorted((s for s in scopes if s), key=len, reverse=True):
        if name == scope or name.startswith(scope + "."):
            rest = name[len(scope) + 1:]
            return f"{scopes[scope]}:{rest}" if rest else scopes[scope]
    return name


def layer_totals(result: FisherResult, numels: dict[str, int]) -> list[dict[str, Any]]:
    """Per-layer (owning module) sums of the parameter diagonals, largest first, with shares."""
    totals: dict[str, list[float]] = {}
    for name, diagonal in result.diagonals.items():
        layer = name.rsplit(".", 1)[0]
        entry = totals.setdefault(layer, [0.0, 0])
        entry[0] += float(diagonal.sum())
        entry[1] += numels[name]
    grand = sum(v[0] for v in totals.values()) or 1.0
    rows = [{"layer": layer, "fisher": total, "share": total / grand, "params": int(count),
             "mean": total / max(1, count)} for layer, (total, count) in totals.items()]
    return sorted(rows, key=lambda r: -r["fisher"])


def group_ranking(family: Family, scores: torch.Tensor) -> list[dict[str, Any]]:
    total = float(scores.sum()) or 1.0
    order = torch.argsort(scores, descending=True).tolist()
    return [{"group": family.labels[i], "score": float(scores[i]), "share": float(scores[i]) / total} for i in order]


def prune_curve(scores: Sequence[float], points: int = 101) -> dict[str, Any]:
    """Cumulative Fisher share of the top groups; the smallest kept fraction that holds ``MASS`` of it.

    A kind whose groups all have zero Fisher (a member the task never uses) gets no curve.
    """
    ordered = sorted((max(0.0, s) for s in scores), reverse=True)
    total, n = sum(ordered), len(ordered)
    if total <= 0:
        return {"groups": n, "groups_for_mass": None, "fraction_for_mass": None, "curve": [],
                "note": "zero Fisher: the task's loss does not depend on these groups"}
    cumulative, running = [], 0.0
    for s in ordered:
        running += s
        cumulative.append(running / total)
    keep = next((i + 1 for i, c in enumerate(cumulative) if c >= MASS - 1e-12), n)
    step = max(1, math.ceil(n / points))
    curve = [[0.0, 0.0]] + [[(i + 1) / n, cumulative[i]] for i in range(step - 1, n, step)]
    if curve[-1][0] < 1.0:
        curve.append([1.0, cumulative[-1]])
    return {"groups": n, "groups_for_mass": keep, "fraction_for_mass": keep / n, "curve": curve}


def task_report(result: FisherResult, families: dict[str, Family], numels: dict[str, int],
                scopes: dict[str, str]) -> dict[str, Any]:
    """Everything the JSON report says about one focus task."""
    groups = {}
    pooled: dict[str, list[float]] = {}
    for name, scores in result.groups.items():
        family = families[name]
        groups[name] = {"kind": family.kind, "scope": family.scope, "display": display(family.scope, scopes),
                        "ranking": group_ranking(family, scores)}
        if family.kind != "field" or name == "field":
            pooled.setdefault(family.kind, []).extend(scores.tolist())
    fields = groups.get("field", {}).get("ranking", [])
    layers = layer_totals(result, numels)
    for row in layers:
        row["display"] = display(row["layer"], scopes)
    return {"n_samples": result.n_samples, "loss": TASK_NOTES[result.task],
            "total_fisher": sum(r["fisher"] for r in layers), "layers": layers, "fields": fields,
            "groups": groups, "pruning": {k: prune_curve(v) for k, v in sorted(
                pooled.items(), key=lambda kv: GROUP_KINDS.index(kv[0]) if kv[0] in GROUP_KINDS else 99)}}


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2:
        return None
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator > 0 else None


def comparison(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Layer and field shares side by side per task, and their rank correlations."""
    names = list(tasks)
    layer_share = {t: {r["layer"]: r["share"] for r in tasks[t]["layers"]} for t in names}
    field_share = {t: {r["group"]: r["share"] for r in tasks[t]["fields"]} for t in names}
    layers = sorted({layer for t in names for layer in layer_share[t]},
                    key=lambda layer: -max(layer_share[t].get(layer, 0.0) for t in names))
    fields = sorted({f for t in names for f in field_share[t]},
                    key=lambda f: -max(field_share[t].get(f, 0.0) for t in names))
    correlations = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            correlations[f"{a}~{b}"] = {
                "layers": _spearman([layer_share[a].get(x, 0.0) for x in layers],
                                    [layer_share[b].get(x, 0.0) for x in layers]),
                "fields": _spearman([field_share[a].get(x, 0.0) for x in fields],
                                    [field_share[b].get(x, 0.0) for x in fields])}
    return {"layers": [{"layer": x, **{t: layer_share[t].get(x, 0.0) for t in names}} for x in layers],
            "fields": [{"field": x, **{t: field_share[t].get(x, 0.0) for t in names}} for x in fields],
            "spearman": correlations}


def build_report(results: dict[str, FisherResult], families: dict[str, Family], numels: dict[str, int],
                 scopes: dict[str, str], meta: dict[str, Any]) -> dict[str, Any]:
    estimator = next(iter(results.values())).estimator
    tasks = {t: task_report(r, families, numels, scopes) for t, r in results.items()}
    return {"estimator": estimator, "estimator_note": ESTIMATOR_NOTES.get(estimator, estimator), **meta,
            "scopes": scopes, "tasks": tasks, "comparison": comparison(tasks),
            "definitions": {
                "parameter_fisher": "mean over samples n of (d loss_n / d theta)^2",
                "group_fisher": "sum over samples n of (d loss_n / d m_g)^2, m_g = 1 a mask on the group's units",
                "share": "fraction of the task's total (layers: over targeted parameters; groups: within a family "
                         "or, for pruning curves, within a group kind)"}}


def save_fisher(path: Path, results: dict[str, FisherResult]) -> None:
    """``{task}/param/{name}`` diagonals and ``{task}/group/{family}`` scores; the estimator in the metadata."""
    tensors = {}
    for task, result in results.items():
        tensors.update({f"{task}/param/{k}": v.float() for k, v in result.diagonals.items()})
        tensors.update({f"{task}/group/{k}": v.float() for k, v in result.groups.items()})
    estimator = next(iter(results.values())).estimator
    metadata = {"estimator": estimator, "estimator_note": ESTIMATOR_NOTES.get(estimator, estimator),
                "n_samples": json.dumps({t: r.n_samples for t, r in results.items()})}
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    path = Path(folder) / "fisher_report.json"
    write_json(path, report)
    return path


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%" if share >= 0.001 else f"{100 * share:.2g}%"


def summary_text(report: dict[str, Any], top: int = 3) -> str:
    """A few lines per task: most and least important layers and fields, and the mass held by few groups."""
    label = "exact" if report["estimator"] == "exact" else "BATCH APPROXIMATION"
    lines = [f"Fisher ({label}) of {report.get('teacher', {}).get('model', 'teacher')} over "
             f"{next(iter(report['tasks'].values()))['n_samples']} training samples; targets: "
             f"{report.get('target_layers', 'all')}"]
    for task, body in report["tasks"].items():
        layers = [(r["display"], r["share"]) for r in body["layers"]]
        fields = [(r["group"], r["share"]) for r in body["fields"]]
        lines.append(f"[{task}]")
        for what, entries in (("layers", layers), ("fields", fields)):
            if entries:
                lines.append(f"  {what}, most:  " + ", ".join(f"{n} {_pct(s)}" for n, s in entries[:top]))
            if len(entries) > top:  # the least important among those not already listed
                lines.append(f"  {what}, least: " + ", ".join(f"{n} {_pct(s)}" for n, s in entries[top:][::-1][:top]))
        held = [f"{_pct(p['fraction_for_mass'])} of {KIND_NAMES.get(k, k)} ({p['groups_for_mass']}/{p['groups']})"
                for k, p in body["pruning"].items() if k != "field" and p["fraction_for_mass"] is not None]
        if held:
            lines.append(f"  {int(100 * MASS)}% of the Fisher mass: " + "; ".join(held))
    return "\n".join(lines)
