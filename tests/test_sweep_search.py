"""The grid-crossed TPE searcher: every cell gets its trials, and Optuna is told the truth about each."""

from __future__ import annotations

import math

import optuna
import pytest
from ray.tune.search import Searcher

from farfield.orchestrator.sweep.grid_search import REISSUE, RESTORED, TRIAL_COMPLETE, TRIAL_FAILED, GridCrossedTPE
from farfield.orchestrator.sweep.config import SearchRange

CELLS = [{"backbone": "painn", "split": "random"}, {"backbone": "painn", "split": "size"}]
RANGES = {"training.lr": ("float", SearchRange(low=1e-4, high=1e-2, log=True)),
          "model.channels": ("int", SearchRange(low=8, high=32)),
          "model.long_range": ("categorical", SearchRange(choices=[[], ["d3"]]))}


def _saved(searcher: GridCrossedTPE, folder) -> str:
    """Save ``searcher`` as Tune does (its snapshot); the file's path."""
    path = str(folder / "searcher.pkl")
    searcher.save(path)
    return path


def _searcher(samples: int = 2, sweep_id: str | None = None) -> GridCrossedTPE:
    searcher = GridCrossedTPE(CELLS, RANGES, samples_per_cell=samples, seed=0, sweep_id=sweep_id)
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
    path = _saved(searcher, tmp_path)
    restored = GridCrossedTPE(CELLS, RANGES, samples_per_cell=2)
    restored.restore(path)
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


def test_a_restored_searcher_issues_a_lost_slot_again_with_its_recorded_values(tmp_path):
    """After a lost driver the searcher is Tune's last snapshot: slots issued after it come again, same values."""
    searcher = _searcher(2, sweep_id="s-1")
    searcher.suggest("t0")
    path = _saved(searcher, tmp_path)  # the snapshot; then t1 is issued and the driver dies
    lost = searcher.suggest("t1")
    assert lost["slot"] == "1.0"
    recorded = {"training.lr": 0.005, "model.channels": 17, "model.long_range": ["d3"]}  # not what TPE would draw
    restored = GridCrossedTPE(CELLS, RANGES, samples_per_cell=2)
    restored.restore(path)
    REISSUE["s-1"] = {lost["slot"]: recorded}
    try:
        again = restored.suggest("t1-new")
        fresh = restored.suggest("t2")
    finally:
        REISSUE.pop("s-1")
    assert again["slot"] == "1.0" and again["cell_index"] == 1 and again["sampled"] == recorded
    assert fresh["slot"] == "0.1" and fresh["sampled"] != recorded
    restored.on_trial_complete("t1-new", {"val_f_mae": 1.0, TRIAL_COMPLETE: 1})
    assert _state(restored, 1, 0).params["model.channels"] == 17  # Optuna learns from the values really used


def test_recorded_values_outside_the_ranges_are_sampled_afresh():
    searcher = _searcher(1, sweep_id="s-2")
    REISSUE["s-2"] = {"0.0": {"training.lr": 0.5, "model.channels": 17, "model.long_range": ["d3"]},   # lr > high
                      "1.0": {"training.lr": 0.001, "model.channels": 17, "model.long_range": ["les"]}}  # not a choice
    try:
        first, second = searcher.suggest("t0"), searcher.suggest("t1")
    finally:
        REISSUE.pop("s-2")
    assert first["sampled"]["training.lr"] <= 1e-2 and second["sampled"]["model.long_range"] in ([], ["d3"])


def _restore(path, trials: dict, sweep_id: str = "s-3") -> GridCrossedTPE:
    """A searcher restored from ``path`` by ``Tuner.restore`` of an experiment holding ``trials``."""
    restored = GridCrossedTPE(CELLS, RANGES, samples_per_cell=2)
    RESTORED[sweep_id] = trials
    try:
        restored.restore(path)
    finally:
        RESTORED.pop(sweep_id)
    return restored


def _trial(suggestion: dict, status: str, last_result: dict | None = None) -> dict:
    return {"slot": suggestion["slot"], "sampled": suggestion["sampled"], "status": status,
            "last_result": last_result or {}}


def test_a_searcher_older_than_the_restored_experiment_does_not_issue_its_trials_again(tmp_path):
    """Tune copied the experiment's trials after the kill's last save but not the searcher: the
    restored trials hold their slots, their results reach Optuna."""
    searcher = _searcher(2, sweep_id="s-3")
    first = searcher.suggest("t0")
    path = _saved(searcher, tmp_path)  # the searcher file Tune restores; the experiment file is newer:
    second = searcher.suggest("t1")  # t1 was issued, t0 ended
    trials = {"t0": _trial(first, "TERMINATED", {"val_f_mae": 150.0, TRIAL_COMPLETE: 1}), "t1": _trial(second, "RUNNING")}
    restored = _restore(path, trials)
    assert _state(restored, 0, 0).state == optuna.trial.TrialState.COMPLETE and _state(restored, 0, 0).value == 150.0
    nxt = restored.suggest("t2")
    assert nxt["slot"] == "1.1"  # not 1.0: t1 holds it
    restored.on_trial_complete("t1", {"val_f_mae": 90.0, TRIAL_COMPLETE: 1})
    assert _state(restored, 1, 0).value == 90.0 and _state(restored, 1, 0).params == _state(searcher, 1, 0).params
    assert [restored.suggest("t3")["slot"], restored.suggest("t4")] == ["0.1", Searcher.FINISHED]


def test_a_searcher_newer_than_the_restored_experiment_issues_the_slots_it_lacks_again(tmp_path):
    """The searcher was copied after a save the experiment's trials were not: a trial it issued is
    unknown to Tune, so its slot must come again (else the sweep ends without it)."""
    searcher = _searcher(1, sweep_id="s-3")
    first, lost = searcher.suggest("t0"), searcher.suggest("t1")
    path = _saved(searcher, tmp_path)
    restored = _restore(path, {"t0": _trial(first, "RUNNING")})
    REISSUE["s-3"] = {"1.0": lost["sampled"]}
    try:
        again = restored.suggest("t1-new")
    finally:
        REISSUE.pop("s-3")
    assert again["slot"] == "1.0" and again["sampled"] == lost["sampled"]
    assert restored.suggest("t2") is Searcher.FINISHED
    assert set(restored.live) == {"t0", "t1-new"}
    restored.on_trial_complete("t1-new", {"val_f_mae": 80.0, TRIAL_COMPLETE: 1})
    cell = restored.studies[1].get_trials(deepcopy=False)  # t1-new took over the forgotten t1's Optuna trial:
    assert [(t.state, t.value, t.user_attrs["slot"]) for t in cell] == [(optuna.trial.TrialState.COMPLETE, 80.0, "1.0")]


def test_a_forgotten_trial_without_a_recorded_slot_is_told_failed(tmp_path):
    """A searcher pickled by a farfield that did not record slots in Optuna: the forgotten trial's
    Optuna trial cannot be handed on, so it ends FAIL rather than running for ever."""
    searcher = _searcher(1, sweep_id="s-3")
    first = searcher.suggest("t0")
    older = searcher.studies[1].ask(searcher.distributions)  # issued as the older farfield did
    searcher.live["t1"], searcher.issued[1] = (1, older.number, older._trial_id), 1
    path = _saved(searcher, tmp_path)
    restored = _restore(path, {"t0": _trial(first, "RUNNING")})
    assert _state(restored, 1, 0).state == optuna.trial.TrialState.FAIL
    assert restored.suggest("t1-new")["slot"] == "1.0" and len(restored.studies[1].trials) == 2


def test_a_slot_lost_twice_keeps_one_optuna_trial(tmp_path):
    """The driver dies again before the forgotten slot is issued again: the second restore still
    hands that slot's Optuna trial on."""
    searcher = _searcher(1, sweep_id="s-3")
    first, lost = searcher.suggest("t0"), searcher.suggest("t1")
    path = _saved(searcher, tmp_path)
    once = _restore(path, {"t0": _trial(first, "RUNNING")})
    once.save(path)
    twice = _restore(path, {"t0": _trial(first, "RUNNING")})
    again = twice.suggest("t1-new")
    assert again["slot"] == "1.0" and again["sampled"] == lost["sampled"]
    assert [t.state for t in twice.studies[1].trials] == [optuna.trial.TrialState.RUNNING]


def test_the_searcher_keeps_the_concurrency_limit_with_restored_trials_counted(tmp_path):
    searcher = _searcher(2, sweep_id="s-3")
    assert searcher.set_max_concurrency(1) is True  # Ray's ConcurrencyLimiter leaves the limit to it
    first = searcher.suggest("t0")
    assert searcher.suggest("t1") is None
    path = _saved(searcher, tmp_path)
    searcher.on_trial_complete("t0", {"val_f_mae": 1.0, TRIAL_COMPLETE: 1})
    assert searcher.suggest("t1")["slot"] == "1.0"
    restored = _restore(path, {"t0": _trial(first, "RUNNING")})
    assert restored.suggest("t2") is None  # t0 runs again and counts
    restored.on_trial_complete("t0", {"val_f_mae": 1.0, TRIAL_COMPLETE: 1})
    assert restored.suggest("t2")["slot"] == "1.0"


def test_restored_trials_are_those_of_the_newest_experiment_state(tmp_path):
    import json

    from farfield.orchestrator.sweep.run import restored_trials

    def state(trials):
        return {"trial_data": [[json.dumps({"trial_id": tid, "status": status, "config": {"slot": slot, "sampled": {}}}),
                                json.dumps({"last_result": {"val_f_mae": 1.0}})] for tid, status, slot in trials]}

    (tmp_path / "experiment_state-2026-11-30_01-00-00.json").write_text(json.dumps(state([("a", "RUNNING", "0.0")])))
    (tmp_path / "experiment_state-2026-11-30_02-00-00.json").write_text(json.dumps(state(
        [("a", "TERMINATED", "0.0"), ("b", "PENDING", "1.0")])))
    assert restored_trials(str(tmp_path)) == {
        "a": {"slot": "0.0", "sampled": {}, "status": "TERMINATED", "last_result": {"val_f_mae": 1.0}},
        "b": {"slot": "1.0", "sampled": {}, "status": "PENDING", "last_result": {"val_f_mae": 1.0}}}
    assert restored_trials(str(tmp_path / "none")) == {}
