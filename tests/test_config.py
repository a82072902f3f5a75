"""Trial configs: strict keys, typed values, clear errors naming file, key and a close valid key."""

from __future__ import annotations

from pathlib import Path

import pytest

from farfield.models.config import LossWeights
from farfield.orchestrator.config import ConfigError, TrialConfig, load_trial_config
from farfield.orchestrator.quickstart import quickstart_config

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "trial.yaml"
    path.write_text(text)
    return path


def test_misspelled_key_names_key_file_and_closest_valid_key(tmp_path):
    path = _write(tmp_path, "model:\n  chanels: 32\n")
    with pytest.raises(ConfigError) as info:
        load_trial_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "model.chanels: unknown key" in message
    assert "did you mean 'channels'" in message


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path, "trainig:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"trainig: unknown key; did you mean 'training'"):
        load_trial_config(path)


def test_unknown_nested_key_without_close_match_lists_valid_keys(tmp_path):
    path = _write(tmp_path, "training:\n  loss:\n    zzz: 1\n")
    with pytest.raises(ConfigError, match=r"training\.loss\.zzz: unknown key \(valid keys here: charges, energy"):
        load_trial_config(path)


def test_wrong_type_names_field_and_value(tmp_path):
    path = _write(tmp_path, "training:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"training\.epochs: .*integer.*'many'"):
        load_trial_config(path)


def test_all_problems_reported_at_once(tmp_path):
    path = _write(tmp_path, "model:\n  cutoff: -1\n  layerz: 2\ntraining:\n  lr: 0\n")
    with pytest.raises(ConfigError) as info:
        load_trial_config(path)
    message = str(info.value)
    for fragment in ("model.cutoff", "model.layerz", "training.lr"):
        assert fragment in message


def test_missing_file():
    with pytest.raises(ConfigError, match="no-such.yaml: config file not found"):
        load_trial_config("no-such.yaml")


def test_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_trial_config(_write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_trial_config(_write(tmp_path, "- a\n- b\n"))


def test_yaml_is_loaded_safely(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_trial_config(path)


def test_unknown_backbone_lists_known_names(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown backbone 'schnet'; known backbones: .*painn"):
        load_trial_config(_write(tmp_path, "model:\n  backbone: schnet\n"))


def test_split_fractions_must_sum_to_one(tmp_path):
    with pytest.raises(ConfigError, match=r"split.train \+ split.val \+ split.test must be 1"):
        load_trial_config(_write(tmp_path, "split:\n  train: 0.9\n  val: 0.1\n  test: 0.1\n"))


def test_charge_loss_without_charge_head_names_both_fields(tmp_path):
    with pytest.raises(ConfigError, match=r"training.loss.charges .* model.long_range"):
        load_trial_config(_write(tmp_path, "training:\n  loss:\n    charges: 1.0\n"))


def test_override_and_flat_params(tmp_path):
    config = load_trial_config(_write(tmp_path, "model:\n  channels: 8\n"), {"model": {"layers": 5}})
    assert (config.model.channels, config.model.layers) == (8, 5)
    params = config.flat_params()
    assert params["model.channels"] == "8" and params["training.loss.forces"] == str(LossWeights().forces)
    assert params["training.loss.normalize"] == "True"


def test_quickstart_yaml_equals_builtin_quickstart():
    from_file = load_trial_config(REPO / "configs" / "quickstart-trial.yaml")
    assert from_file == quickstart_config("workspace")


def test_every_example_config_validates():
    for path in sorted((REPO / "configs").glob("*trial*.yaml")):
        assert isinstance(load_trial_config(path), TrialConfig)
