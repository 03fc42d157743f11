"""``--target_layers``: semantic groups, globs, always-on field groups and one-line errors."""

from __future__ import annotations

import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.fisher.groups import discover
from distillrec.fisher.targets import resolve_targets
from distillrec.registry import create_model
from distillrec.runs import data_shape


@pytest.fixture(scope="module")
def autoint(tiny_synthetic):
    torch.manual_seed(0)
    return create_model("autoint", data_shape(tiny_synthetic), {"embed_dim": 4, "d_head": 2, "n_layers": 2,
                                                                "hidden": (5,)})


def _resolve(text: str, model):
    return resolve_targets(text, model, discover(model))


def test_all_selects_every_parameter_and_group(autoint) -> None:
    selection = _resolve("all", autoint)
    assert selection.params == [n for n, _ in autoint.named_parameters()]
    kinds = {f.kind for f in selection.families.values()}
    assert {"layer", "field", "embedding_dim", "attention_head", "mlp_neuron"} <= kinds


def test_seed_groups_select_their_layers(autoint) -> None:
    selection = _resolve("attention,interaction,output", autoint)
    assert set(selection.params) == {n for n, _ in autoint.named_parameters()
                                     if n.startswith(("layers.", "head."))}
    kinds = {f.kind for f in selection.families.values()}
    assert "attention_head" in kinds and "field" in kinds  # fields are always computed
    assert "embedding_dim" not in kinds and "mlp_neuron" not in kinds
    assert _resolve("mlp", autoint).params == [n for n, _ in autoint.named_parameters() if n.startswith("mlp.")]
    embedding = _resolve("embedding", autoint).params
    assert embedding and all(n.startswith(("embedding.", "linear.")) for n in embedding)


def test_globs_match_parameters_and_enclosing_modules(autoint) -> None:
    assert _resolve("layers.1", autoint).params == ["layers.1.W_q", "layers.1.W_k", "layers.1.W_v", "layers.1.W_res"]
    selection = _resolve("layers.*", autoint)
    assert {f.name for f in selection.families.values() if f.kind == "attention_head"} == {
        "attention_head/layers.0", "attention_head/layers.1"}
    assert _resolve("*.W_q", autoint).params == ["layers.0.W_q", "layers.1.W_q"]


def test_unknown_targets_are_one_line_errors(autoint) -> None:
    with pytest.raises(DistillrecError, match=r"'nosuch\.\*' matches no layer") as info:
        _resolve("nosuch.*", autoint)
    assert "\n" not in str(info.value)
    with pytest.raises(DistillrecError, match="give all"):
        _resolve(" , ", autoint)


def test_a_group_the_teacher_lacks_warns(tiny_synthetic) -> None:
    model = create_model("svd", data_shape(tiny_synthetic))
    with pytest.warns(UserWarning, match="no attention layers"):
        selection = _resolve("attention,embedding", model)
    assert selection.unmatched == ["attention"]
    with pytest.raises(DistillrecError, match="selects nothing"), pytest.warns(UserWarning):
        _resolve("attention", model)
