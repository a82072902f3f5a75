"""Sweep configs: strict keys, grid cells validated against the registries, ranges against the trial fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from farfield.models.registry import BACKBONES
from farfield.orchestrator.config import ConfigError, TrialConfig, load_trial_config
from farfield.orchestrator.sweep.config import (
    SweepConfig,
    cell_label,
    grid_cells,
    load_sweep_config,
    range_kind,
    split_strategies,
    trial_data,
)

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_grid_axes_are_crossed(tmp_path):
    config = load_sweep_config(_write(tmp_path, """
name: s
sweep:
  grid:
    long_range: [[]]
    split: [random, {strategy: random, seed: 3}]
    seed: [0, 1, 2]
"""))
    cells = grid_cells(config)
    assert len(cells) == 1 * 2 * 3
    assert len({cell_label(c) + str(c) for c in cells}) == 6
    trial = TrialConfig.model_validate(trial_data(config, cells[-1], {}))
    assert trial.seed == 2 and trial.split.seed == 3


def test_seed_is_the_outermost_axis(tmp_path):
    """A sweep stopped part-way has run every variant × split once before any seed twice."""
    config = load_sweep_config(_write(tmp_path, """
name: s
sweep:
  grid:
    variant:
      - {name: a, set: {model.layers: 2}}
      - {name: b, set: {model.layers: 3}}
    split: [random, kmeans]
    seed: [0, 1, 2]
"""))
    cells = grid_cells(config)
    assert [c["seed"] for c in cells] == [0] * 4 + [1] * 4 + [2] * 4
    first = {(c["variant"]["name"], c["split"]) for c in cells[:4]}
    assert first == {("a", "random"), ("a", "kmeans"), ("b", "random"), ("b", "kmeans")}
    assert list(cells[0]) == ["variant", "split", "seed"]  # keys keep the axes' order


def test_variant_axis_sets_its_paths_and_names_the_cell(tmp_path):
    config = load_sweep_config(_write(tmp_path, """
name: s
sweep:
  grid:
    variant:
      - {name: short-range, set: {model.long_range: []}}
      - {name: celli-q, set: {model.long_range: [celli], training.loss.charges: 2.5}}
      - {name: deep, set: {model.layers: 4}}
    seed: [0, 1]
"""))
    cells = grid_cells(config)
    assert len(cells) == 6
    trials = {cell_label(c): TrialConfig.model_validate(trial_data(config, c, {})) for c in cells}
    assert trials["celli-q|s1"].model.long_range == ["celli"]
    assert trials["celli-q|s1"].training.loss.charges == 2.5
    assert trials["short-range|s0"].training.loss.charges == config.training.loss.charges
    assert trials["deep|s0"].model.layers == 4 and trials["short-range|s0"].model.layers == config.model.layers


def test_split_follows_seed_makes_each_seed_a_split_replica(tmp_path):
    text = """
name: s
sweep:
  grid:
    split: [random, {strategy: size, seed: 7}]
    seed: [0, 3]
"""
    plain = load_sweep_config(_write(tmp_path, text))
    follows = load_sweep_config(_write(tmp_path, text + "  split_follows_seed: true\n"))
    for config, expected in ((plain, {0: 0, 3: 0}), (follows, {0: 0, 3: 3})):
        for cell in grid_cells(config):
            trial = TrialConfig.model_validate(trial_data(config, cell, {}))
            if trial.split.strategy == "random":
                assert trial.split.seed == expected[trial.seed]
            else:  # an explicit split seed wins only without split_follows_seed
                assert trial.split.seed == (trial.seed if config is follows else 7)


@pytest.mark.parametrize("variant, message", [
    ("{name: v, set: {model.layerz: 4}}", "layerz"),
    ("{name: v, set: {model.layers: 0}}", "layers"),
])
def test_variant_with_a_bad_path_or_value_is_rejected(tmp_path, variant, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_config(_write(tmp_path, f"name: s\nsweep:\n  grid:\n    variant: [{variant}]\n"))


def test_unknown_key_in_sweep_section_suggests_the_valid_one(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep.sampels_per_cell: unknown key; did you mean 'samples_per_cell'"):
        load_sweep_config(_write(tmp_path, "sweep:\n  sampels_per_cell: 2\n"))


def test_unknown_grid_axis_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep.grid.channels: unknown key"):
        load_sweep_config(_write(tmp_path, "sweep:\n  grid:\n    channels: [8, 16]\n"))


def test_unknown_backbone_in_grid_lists_registered_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep.grid cell .*'backbone': 'schnet'.* known backbones: .*painn"):
        load_sweep_config(_write(tmp_path, "sweep:\n  grid:\n    backbone: [painn, schnet]\n"))


def test_unknown_split_strategy_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"split.strategy"):
        load_sweep_config(_write(tmp_path, "sweep:\n  grid:\n    split: [random, no_such_split]\n"))


def test_every_registered_backbone_and_split_is_accepted(tmp_path):
    backbones = sorted(BACKBONES)
    strategies = [s for s in split_strategies() if _valid_alone(s)]  # some need parameters (split.element)
    assert "random" in strategies
    config = load_sweep_config(_write(tmp_path, f"sweep:\n  grid:\n    backbone: [{', '.join(backbones)}]\n"
                                                f"    split: [{', '.join(strategies)}]\n"))
    assert len(grid_cells(config)) == len(backbones) * len(strategies)


def _valid_alone(strategy: str) -> bool:
    try:
        TrialConfig.model_validate({"split": {"strategy": strategy}})
    except ValueError:
        return False
    return True


def test_range_path_must_exist(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep.ranges.training.lrate: no key 'lrate' under training"):
        load_sweep_config(_write(tmp_path, "sweep:\n  ranges:\n    training.lrate: {low: 0.001, high: 0.01}\n"))


def test_range_ends_are_validated_as_trials(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep.ranges.model.channels = 0 is not a valid trial"):
        load_sweep_config(_write(tmp_path, "sweep:\n  ranges:\n    model.channels: {low: 0, high: 8}\n"))


def test_range_needs_low_below_high_and_positive_log(tmp_path):
    with pytest.raises(ConfigError, match=r"low must be below high"):
        load_sweep_config(_write(tmp_path, "sweep:\n  ranges:\n    training.lr: {low: 0.1, high: 0.01}\n"))
    with pytest.raises(ConfigError, match=r"log range needs low > 0"):
        load_sweep_config(_write(tmp_path, "sweep:\n  ranges:\n    model.cutoff: {low: 0, high: 5, log: true}\n"))


def test_grid_axis_cannot_be_a_range(tmp_path):
    with pytest.raises(ConfigError, match=r"grid axis"):
        load_sweep_config(_write(tmp_path, "sweep:\n  ranges:\n    model.backbone: {choices: [painn]}\n"))


def test_range_kinds_follow_the_trial_fields(tmp_path):
    config = load_sweep_config(_write(tmp_path, """
sweep:
  ranges:
    model.channels: {low: 8, high: 32}
    model.cutoff: {low: 4.0, high: 6.0}
    training.loss.forces: {choices: [1.0, 10.0]}
"""))
    kinds = {path: range_kind(path, spec) for path, spec in config.sweep.ranges.items()}
    assert kinds == {"model.channels": "int", "model.cutoff": "float", "training.loss.forces": "categorical"}


def test_sampled_values_land_in_the_trial(tmp_path):
    config = load_sweep_config(_write(tmp_path, "sweep:\n  ranges:\n    training.lr: {low: 0.001, high: 0.01}\n"))
    trial = TrialConfig.model_validate(trial_data(config, {"backbone": "painn"}, {"training.lr": 0.004,
                                                                                   "model.channels": 12}))
    assert trial.training.lr == 0.004 and trial.model.channels == 12


def test_a_trial_config_is_not_a_sweep(tmp_path):
    with pytest.raises(ConfigError, match=r"no 'sweep' section"):
        load_sweep_config(REPO / "configs" / "quickstart-trial.yaml")


def test_example_sweep_configs_validate_and_their_trials_too():
    paths = sorted([*(REPO / "configs").glob("sweep-*.yaml"), *(REPO / "configs").glob("study-*.yaml")])
    assert paths, "no example sweep configs in configs/"
    for path in paths:
        config = load_sweep_config(path)
        assert isinstance(config, SweepConfig)
        assert isinstance(config.base_trial(), TrialConfig)
    assert load_trial_config(REPO / "configs" / "quickstart-trial.yaml").name == "quickstart-painn-random"


def test_quickstart_sweep_yaml_equals_builtin_and_crosses_a_random_and_a_biased_split():
    from farfield.orchestrator.quickstart import quickstart_sweep_config

    from_file = load_sweep_config(REPO / "configs" / "sweep-quickstart.yaml")
    assert from_file == quickstart_sweep_config("workspace")
    grid = from_file.sweep.grid
    assert len(grid.backbone) >= 2 and [] in grid.long_range and len(grid.long_range) >= 2
    assert "random" in grid.split and any(s != "random" for s in grid.split)
