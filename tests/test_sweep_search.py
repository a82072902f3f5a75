"""The grid-crossed TPE searcher: every cell gets its trials, and Optuna is told the truth about each."""

from __future__ import annotations

import math

import optuna
import pytest
from ray.tune.search import Searcher

from farfield.orchestrator.grid_search import TRIAL_COMPLETE, TRIAL_FAILED, GridCrossedTPE
from farfield.orchestrator.sweep_config import SearchRange

CELLS = [{"backbone": "painn", "split": "random"}, {"backbone": "painn", "split": "size"}]
RANGES = {"training.lr": ("float", SearchRange(low=1e-4, high=1e-2, log=True)),
          "model.channels": ("int", SearchRange(low=8, high=32)),
          "model.long_range": ("categorical", SearchRange(choices=[[], ["d3"]]))}


def _searcher(samples: int = 2) -> GridCrossedTPE:
    searcher = GridCrossedTPE(CELLS, RANGES, samples_per_cell=samples, seed=0)
    searcher.set_search_properties("val_f_mae", "min", {})
    return searcher


def test_every_cell_gets_its_samples_then_finished():
    searcher = _searcher(samples=3)
    suggestions = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [s["cell_index"] for s in suggestions] == [0, 1, 0, 1, 0, 1]
    assert searcher.suggest("t6") is Searcher.FINISHED
    for s in suggestions:
        assert 1e-4 <= s["sampled"]["training.lr"] <= 1e-2
        assert isinstance(s["sampled"]["model.channels"], int) and 8 <= s["sampled"]["model.channels"] <= 32
        assert s["sampled"]["model.long_range"] in ([], ["d3"])  # the original list, not Optuna's string


def _state(searcher: GridCrossedTPE, cell: int, number: int) -> optuna.trial.FrozenTrial:
    return searcher.studies[cell].trials[number]


def test_complete_pruned_failed_are_told_apart():
    searcher = _searcher(samples=2)
    for i in range(4):
        searcher.suggest(f"t{i}")
    for epoch, value in enumerate([300.0, 200.0]):
        searcher.on_trial_result("t0", {"val_f_mae": value, "epoch": epoch})
        searcher.on_trial_result("t1", {"val_f_mae": value + 50, "epoch": epoch})
    searcher.on_trial_complete("t0", {"val_f_mae": 150.0, "epoch": 10, TRIAL_COMPLETE: 1})
    searcher.on_trial_complete("t1", {"val_f_mae": 250.0, "epoch": 1})          # stopped by ASHA at epoch 1
    searcher.on_trial_complete("t2", {TRIAL_FAILED: 1, "epoch": 0})             # NaN loss
    searcher.on_trial_complete("t3", None, error=True)                          # raised after retries
    complete, pruned = _state(searcher, 0, 0), _state(searcher, 1, 0)
    assert complete.state == optuna.trial.TrialState.COMPLETE and complete.value == 150.0
    assert pruned.state == optuna.trial.TrialState.PRUNED  # TPE ranks it behind every COMPLETE trial
    assert pruned.intermediate_values == {0: 350.0, 1: 250.0}
    assert _state(searcher, 0, 1).state == optuna.trial.TrialState.FAIL
    assert _state(searcher, 1, 1).state == optuna.trial.TrialState.FAIL
    assert searcher.outcomes == {"t0": "complete", "t1": "pruned", "t2": "failed", "t3": "failed"}


def test_non_finite_final_value_is_a_failure_not_a_result():
    searcher = _searcher(samples=1)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"val_f_mae": math.nan, TRIAL_COMPLETE: 1})
    assert _state(searcher, 0, 0).state == optuna.trial.TrialState.FAIL


def test_save_and_restore_keep_issued_and_live_trials(tmp_path):
    searcher = _searcher(samples=2)
    first = searcher.suggest("t0")
    searcher.suggest("t1")
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    restored = GridCrossedTPE(CELLS, RANGES, samples_per_cell=2)
    restored.restore(str(path))
    restored.on_trial_complete("t0", {"val_f_mae": 1.0, TRIAL_COMPLETE: 1})
    assert _state(restored, first["cell_index"], 0).state == optuna.trial.TrialState.COMPLETE
    remaining = [restored.suggest("t2"), restored.suggest("t3"), restored.suggest("t4")]
    assert [r if r is Searcher.FINISHED else r["cell_index"] for r in remaining] == [0, 1, Searcher.FINISHED]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_direction_follows_mode(mode):
    searcher = GridCrossedTPE(CELLS, RANGES, samples_per_cell=1)
    searcher.set_search_properties("val_f_mae", mode, {})
    searcher.suggest("t0")
    assert searcher.studies[0].direction.name == ("MINIMIZE" if mode == "min" else "MAXIMIZE")
