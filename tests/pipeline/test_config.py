"""The pipeline's typed config: the seed's defaults, the limits preset, precedence, typing, and zoo specs."""

from __future__ import annotations

import dataclasses
import re

import pytest

from distillrec.errors import DistillrecError
from distillrec.pipeline.config import QUICK_LIMITS, resolve_config
from distillrec.pipeline.run import Context, downstream
from distillrec.pipeline.stages import StageStore, stage_key
from distillrec.store import spec_hash
from distillrec.zoo import ZOO_MODELS, zoo_spec


def test_defaults_are_the_seeds() -> None:
    config = resolve_config(overrides=[("data.name", "ml-100k")])
    assert config.ensemble.algorithms == ("svd", "xdeepfm", "autoint")
    assert config.ensemble.weights == (0.4, 0.4, 0.2)
    assert config.ensemble.tasks == ("ranking", "rating", "balance")
    assert config.fisher.focus_tasks == ("ranking", "rating") and config.fisher.target_layers == "all"
    assert config.distill.student == "lightweight_model" and config.distill.pruning_ratio == 0.5
    assert config.distill.loss.tasks == ("ranking", "rating", "feature")
    assert config.distill.loss.weights == (0.4, 0.4, 0.2)
    assert (config.seed, config.protocol, config.limits) == (0, "p-rank", "full")
    assert config.zoo.max_epochs is None and config.fisher.max_samples is None


def test_full_limits_give_exactly_the_separate_commands_specs() -> None:
    """Off the synthetic set nothing is capped: the zoo's runs are those ``distillrec zoo``/``ensemble`` train."""
    config = resolve_config(overrides=[("data.name", "ml-100k"), ("zoo.models", "all")])
    specs = Context(config, out=None).specs()
    assert list(specs)[:3] == ["svd", "xdeepfm", "autoint"] and set(specs) == set(ZOO_MODELS)
    for model, spec in specs.items():
        assert spec == zoo_spec(model, config.data, "p-rank", 0)
        assert spec_hash(spec) == spec_hash(zoo_spec(model, config.data, "p-rank", 0))
    assert config.fisher == dataclasses.replace(type(config.fisher)(), seed=0)
    assert config.distill == type(config.distill)()


def test_quick_limits_on_synthetic_sit_below_explicit_settings() -> None:
    config = resolve_config({"distill": {"epochs": 3}})
    assert config.limits == "quick"
    assert config.zoo.max_epochs == QUICK_LIMITS["zoo.max_epochs"]
    assert config.fisher.max_samples == QUICK_LIMITS["fisher.max_samples"]
    assert config.distill.epochs == 3  # the file beats the preset
    capped = Context(config, out=None).specs()
    assert capped["xdeepfm"].train.epochs == QUICK_LIMITS["zoo.max_epochs"]["xdeepfm"] < 100
    assert capped["svd"] == zoo_spec("svd", config.data, "p-rank", 0)  # cheap epochs: not capped
    assert capped["xdeepfm"].train.lr == zoo_spec("xdeepfm", config.data, "p-rank", 0).train.lr
    assert resolve_config(overrides=[("limits", "full")]).distill.epochs == type(config.distill)().epochs


def test_file_then_set_precedence_and_spellings() -> None:
    nested = resolve_config({"distill": {"loss": {"tasks": ["ranking", "rating"]}}, "seed": 3},
                            [("distill.pruning_ratio", 0.7), ("seed", 4)])
    dotted = resolve_config({"distill.loss.tasks": "ranking,rating", "seed": 3},
                            [("distill.pruning_ratio", 0.7), ("seed", 4)])
    assert nested == dotted
    assert nested.distill.loss.tasks == ("ranking", "rating") and nested.distill.pruning_ratio == 0.7
    assert nested.seed == nested.fisher.seed == nested.distill.seed == 4
    sized = resolve_config({"data.synthetic": {"n_users": 50}}, [("data.synthetic.n_items", 80)])
    assert sized.data.synthetic == {"n_users": 50, "n_items": 80}
    assert resolve_config(overrides=[("ensemble.weights", "auto")]).ensemble.weights == "auto"
    assert resolve_config(overrides=[("fisher.max_samples", None)]).fisher.max_samples is None
    one_cap = resolve_config(overrides=[("zoo.max_epochs", 5)])
    assert {m: s.train.epochs for m, s in Context(one_cap, out=None).specs().items()} == dict.fromkeys(
        ("svd", "xdeepfm", "autoint"), 5)
    merged = resolve_config(overrides=[("zoo.max_epochs.autoint", 7)])
    assert merged.zoo.max_epochs == {**QUICK_LIMITS["zoo.max_epochs"], "autoint": 7}


@pytest.mark.parametrize(("overrides", "message"), [
    ([("zoo.epochs", 3)], "unknown pipeline setting 'zoo.epochs'; zoo has: models, max_epochs"),
    ([("zoo.max_epochs", 2.5)], "zoo.max_epochs: expected int or a mapping or null, got 2.5"),
    ([("zoo.max_epochs", {"nope": 2})], "zoo.max_epochs: unknown model 'nope'"),
    ([("zoo.max_epochs.svd", "x")], "zoo.max_epochs.svd: expected int, got 'x'"),
    ([("distill.pruning_ratio.x", 1)], "distill.pruning_ratio is a single value"),
    ([("fisher", 3)], "fisher: expected a mapping of FisherConfig settings"),
    ([("protocol", "p-other")], "protocol must be one of p-rank, p-rating"),
    ([("distill.pruning_ratio", 1.5)], "distill: --pruning_ratio must be in [0, 1)"),
    ([("zoo.models", "svd,nope")], "zoo.models: unknown model 'nope'"),
])
def test_bad_settings(overrides, message) -> None:
    with pytest.raises(DistillrecError, match=re.escape(message)):
        resolve_config(overrides=overrides)


def test_downstream_stages() -> None:
    assert downstream(["distill"]) == {"distill", "report"}
    assert downstream(["fisher"]) == {"fisher", "report"}
    assert downstream(["ensemble"]) == {"ensemble", "fisher", "distill", "report"}
    assert downstream(["zoo"]) == {"zoo", "ensemble", "fisher", "distill", "report"}
    with pytest.raises(DistillrecError, match="unknown stage 'nope'"):
        downstream(["nope"])


def test_a_marker_counts_only_with_its_key_and_outputs(tmp_path) -> None:
    store = StageStore(tmp_path)
    output = tmp_path / "thing.json"
    output.write_text("{}")
    key = stage_key("fisher", {"a": 1}, {"ensemble": "abc"})
    assert key != stage_key("fisher", {"a": 2}, {"ensemble": "abc"})
    assert key != stage_key("fisher", {"a": 1}, {"ensemble": "abd"})
    store.finish("fisher", key, {"ensemble": "abc"}, "digest", 1.0)
    assert store.finished("fisher", key, [output])["digest"] == "digest"
    assert store.finished("fisher", "other", [output]) is None
    assert store.finished("fisher", key, [tmp_path / "missing.json"]) is None
    store.start("fisher")
    assert store.finished("fisher", key, [output]) is None
