"""benchmarks/trial_step.py's ``--ablation``: parsed strictly, applied to a copy, and valid trial configs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from farfield.orchestrator.config import TrialConfig

ROOT = Path(__file__).parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("trial_step_benchmark", ROOT / "benchmarks" / "trial_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ablation_sets_dotted_paths_on_a_copy_of_a_study_variant(tmp_path):
    bench = _benchmark()
    label, settings = bench.parse_ablation("lean:model.heads.celli.feedback=false,model.heads.celli.hidden=32")
    assert label == "lean"
    assert settings == {"model.heads.celli.feedback": False, "model.heads.celli.hidden": 32}  # YAML values
    raw = bench._trials(ROOT / "configs" / "study-paper.yaml", ["celli-q"], tmp_path)["celli-q"]
    changed = bench.ablated(raw, settings)
    paper, lean = TrialConfig.model_validate(raw), TrialConfig.model_validate(changed)
    assert paper.model.heads.celli.feedback and paper.model.heads.celli.hidden is None  # untouched
    assert not lean.model.heads.celli.feedback and lean.model.heads.celli.hidden == 32
    assert lean.model.long_range == paper.model.long_range == ["celli"]
    # a misspelt setting is caught by the trial config, not timed as the unchanged model
    with pytest.raises(ValueError, match="feedbak"):
        TrialConfig.model_validate(bench.ablated(raw, {"model.heads.celli.feedbak": False}))
    with pytest.raises(ValueError, match=r"--ablation model\.layers\.deeper: 'layers' is not a mapping"):
        bench.ablated(raw, {"model.layers.deeper": 3})


@pytest.mark.parametrize("text", ["lean", "lean:", "lean:model.layers", ":model.layers=4", "lean:=4"])
def test_malformed_ablation_is_refused_with_the_expected_form(text):
    with pytest.raises(SystemExit, match="LABEL:PATH=VALUE"):
        _benchmark().parse_ablation(text)
