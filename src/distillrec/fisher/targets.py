"""``--target_layers``: which parameters and groups the Fisher is computed for.

The flag takes a comma list of ``all``, the semantic groups below, or glob patterns over module and parameter
names (``layers.*``, ``members.2.*``, ``cin``). A pattern selects a parameter when it matches the parameter's name
or any enclosing module path, and a probe (group) when it matches the probe's path or an enclosing one.

* ``embedding``: embedding tables (field embeddings, first-order terms, id embeddings and biases);
* ``attention``: AutoInt's interacting layers (heads);
* ``interaction``: the explicit interaction networks: attention layers, CIN, cross layers, SVD latent factors;
* ``mlp``: the deep towers;
* ``output``: the task heads.

Feature-field groups are always computed: they describe the data, not a layer.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass, field

from torch import nn

from distillrec.errors import DistillrecError
from distillrec.fisher.groups import Family, Probe, Structure, layer_family
from distillrec.models.autoint import InteractingLayer
from distillrec.models.dcnv2 import CrossLayer, MixtureCrossLayer
from distillrec.models.layers import MLP, FieldEmbedding
from distillrec.models.xdeepfm import CIN

SEMANTIC_TYPES: dict[str, tuple[type, ...]] = {
    "embedding": (FieldEmbedding, nn.Embedding),
    "attention": (InteractingLayer,),
    "interaction": (InteractingLayer, CIN, CrossLayer, MixtureCrossLayer),
    "mlp": (MLP,),
    "output": (),  # modules named ``head``
}
SEMANTIC_GROUPS = ("all", *SEMANTIC_TYPES)


@dataclass
class Selection:
    """Resolved targets: parameters, probes to install, active group families."""

    spec: str
    params: list[str]
    probes: dict[str, Probe]
    families: dict[str, Family]
    unmatched: list[str] = field(default_factory=list)


def parse_targets(text: str) -> list[str]:
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise DistillrecError(f"--target_layers: give all, {', '.join(SEMANTIC_GROUPS[1:])} or globs like 'layers.*'")
    return tokens


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _param_tags(model: nn.Module, name: str) -> set[str]:
    paths = _ancestors(name)
    modules = [model.get_submodule(p) for p in paths]
    tags = {tag for tag, types in SEMANTIC_TYPES.items() if types and any(isinstance(m, types) for m in modules)}
    if paths and paths[-1].rsplit(".", 1)[-1] == "head":
        tags.add("output")
    return tags


def _matches(pattern: str, name: str) -> bool:
    return any(fnmatch.fnmatchcase(n, pattern) for n in (name, *_ancestors(name)))


def resolve_targets(text: str, model: nn.Module, structure: Structure) -> Selection:
    """Turn ``--target_layers`` into the parameters and groups to compute; one-line errors for unknown names."""
    tokens = parse_targets(text)
    everything = "all" in tokens
    semantic = {t for t in tokens if t in SEMANTIC_TYPES}
    patterns = [t for t in tokens if t not in SEMANTIC_GROUPS]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    tags = {n: _param_tags(model, n) for n in names}
    params = [n for n in names if everything or tags[n] & semantic or any(_matches(p, n) for p in patterns)]
    probes = {k: p for k, p in structure.probes.items()
              if everything or set(p.tags) & semantic or any(_matches(pat, k) for pat in patterns)}
    families = {n: f for n, f in structure.families.items()
                if f.always or everything or set(f.tags) & semantic or any(_matches(p, f.scope) for p in patterns)}
    for scope in structure.scopes:
        layers = layer_family(scope, list(probes.values()))
        if layers.parts:
            families[layers.name] = layers
    for token in patterns:
        if not any(_matches(token, n) for n in names) and not any(_matches(token, k) for k in structure.probes):
            raise DistillrecError(f"--target_layers: {token!r} matches no layer of the teacher; use "
                                  f"{', '.join(SEMANTIC_GROUPS)} or a pattern such as 'layers.*'")
    unmatched = sorted(t for t in semantic if not any(t in tags[n] for n in names)
                       and not any(t in p.tags for p in structure.probes.values()))
    if unmatched:
        warnings.warn(f"--target_layers: the teacher has no {', '.join(unmatched)} layers", stacklevel=2)
    if not params and not any(not f.always for f in families.values()):
        raise DistillrecError(f"--target_layers {text!r} selects nothing in this teacher")
    lookups = {k: p for k, p in structure.probes.items() if p.rows is not None and set(p.tables) & set(params)}
    needed = {key for f in families.values() for key, _ in f.parts} | set(lookups)
    return Selection(text, params, {k: structure.probes[k] for k in structure.probes if k in needed}, families,
                     unmatched)
