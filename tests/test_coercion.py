"""Settings from --set, YAML and saved JSON are converted to their declared types or rejected in one line."""

from __future__ import annotations

import pytest

from distillrec.errors import DistillrecError
from distillrec.registry import build_config
from distillrec.settings import split_settings


def test_yaml_1_1_exponent_strings_become_floats() -> None:
    # PyYAML reads "1e-3" (no dot) as a string; before the conversion it reached the loss and raised a TypeError
    config = build_config("xdeepfm", {"embed_reg": "1e-3", "dropout": 0})
    assert config.embed_reg == pytest.approx(0.001) and isinstance(config.embed_reg, float)
    assert isinstance(config.dropout, float)


def test_comma_strings_and_json_lists_become_tuples() -> None:
    assert build_config("xdeepfm", {"cin_layers": "32,16"}).cin_layers == (32, 16)
    assert build_config("xdeepfm", {"mlp_hidden": [64, 32]}).mlp_hidden == (64, 32)
    assert build_config("autoint", {"n_heads": [2, 1, 1]}).n_heads == (2, 1, 1)
    assert build_config("autoint", {"n_heads": 3}).n_heads == 3


def test_training_settings_are_typed_too() -> None:
    _, train = split_settings("autoint", {"lr": "2e-3", "n_negatives": 8})
    assert train.lr == pytest.approx(0.002) and train.n_negatives == 8


@pytest.mark.parametrize("model, settings, message", [
    ("xdeepfm", {"embed_reg": "abc"}, "xdeepfm: embed_reg: expected float, got 'abc'"),
    ("xdeepfm", {"cin_layers": "64,x"}, "xdeepfm: cin_layers: expected int"),
    ("autoint", {"n_layers": 2.5}, "autoint: n_layers: expected int"),
])
def test_ill_typed_model_settings_are_one_line_errors(model: str, settings: dict, message: str) -> None:
    with pytest.raises(DistillrecError, match=message):
        build_config(model, settings)


def test_ill_typed_training_setting_is_a_one_line_error() -> None:
    with pytest.raises(DistillrecError, match="training: batch_size: expected int, got 'big'"):
        split_settings("autoint", {"batch_size": "big"})
