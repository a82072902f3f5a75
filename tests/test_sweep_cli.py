"""`farfield sweep` / `mlflow-server` command lines, ASHA's budget, and the progress line (no Ray started)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from farfield.orchestrator.cli import app
from farfield.orchestrator.sweep.grid_search import TRIAL_COMPLETE, TRIAL_FAILED
from farfield.orchestrator.sweep.run import _scheduler, resumable_config
from farfield.orchestrator.sweep.config import SweepConfig
from farfield.orchestrator.sweep.progress import SweepProgress, trial_outcome

REPO = Path(__file__).resolve().parents[1]


def test_sweep_needs_a_config_or_resume():
    result = CliRunner().invoke(app, ["sweep"])
    assert result.exit_code == 1 and "--resume NAME" in result.output and "Traceback" not in result.output


def test_sweep_with_a_misspelled_key_is_one_clear_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("sweep:\n  grid:\n    backbone: [painn]\n  metirc: val_loss\n")
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 1 and "did you mean 'metric'" in result.output


def test_resume_of_an_unknown_sweep_says_where_it_looked(tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--resume", "nope", "--workspace", str(tmp_path)])
    assert result.exit_code == 1 and "no sweep 'nope' to resume" in result.output
    assert str(tmp_path / "sweeps" / "nope") in result.output.replace("\n", "")


def test_resume_reads_the_config_stored_with_the_sweep(tmp_path):
    import json

    config = SweepConfig.model_validate({"name": "stored", "workspace": str(tmp_path), "model": {"channels": 12},
                                         "sweep": {"grid": {"seed": [0, 1]}}})
    folder = tmp_path / "sweeps" / "stored"
    folder.mkdir(parents=True)
    (folder / "farfield_sweep.json").write_text(json.dumps({"sweep_id": "x", "config": config.model_dump(mode="json")}))
    assert resumable_config("stored", overrides={"workspace": str(tmp_path)}) == config


def test_resume_with_an_archive_that_holds_another_sweep_is_one_clear_error(tmp_path):
    from farfield.orchestrator.sweep import archive

    archive.write_sweep(tmp_path / "runs", archive.ArchivedSweep("other-1", "other", "other", {"name": "other"}))
    result = CliRunner().invoke(app, ["sweep", "--resume", "nope", "--workspace", str(tmp_path / "ws"),
                                      "--archive", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "archives the sweep 'other'" in result.output


def test_asha_budget_leaves_room_for_the_final_report():
    config = SweepConfig.model_validate({"training": {"epochs": 7},
                                         "sweep": {"scheduler": {"kind": "asha", "grace_period": 2}}})
    scheduler = _scheduler(config)
    assert scheduler._max_t == 8 and scheduler._time_attr == "report_index"  # not training_iteration: see REPORT_INDEX
    assert _scheduler(SweepConfig.model_validate({"sweep": {}})) is None


def test_outcomes_and_progress_line():
    assert trial_outcome({TRIAL_COMPLETE: 1}) == "complete"
    assert trial_outcome({TRIAL_FAILED: 1}) == "failed"
    assert trial_outcome({"epoch": 2}) == "pruned"
    assert trial_outcome({}, errored=True) == "errored"
    progress = SweepProgress("sw-1", total=8, metric="val_f_mae", mode="min")
    progress.outcomes = {"a": "complete", "b": "pruned"}
    progress.first_start = time.time() - 160.0  # two trials done in 160 s → 80 s per trial
    progress.best = (12.5, "a")
    line = progress.status_line(running=2)
    assert "2/8 trials done" in line and "1 complete" in line and "1 pruned" in line and "2 running" in line
    assert "best val_f_mae 12.5 (a)" in line
    assert progress.eta_s() == pytest.approx(6 * 80.0, abs=5)
    assert any(f"ETA {text}" in line for text in ("7m5", "8m0"))
    progress.first_start = time.time() - 2 * 3 * 3600.0  # three hours per trial: hours and minutes
    assert progress.eta_s() == pytest.approx(6 * 3 * 3600.0, abs=5)
    assert "ETA 18h00m" in progress.status_line(running=2) or "ETA 17h59m" in progress.status_line(running=2)


def test_eta_prices_the_epochs_left_per_kind_of_trial(monkeypatch):
    """Two variants 3x apart in cost, two seeds, 4 epochs, two at a time: the ETA is the epochs left,
    each at its kind's measured seconds per epoch, over 2; replayed epochs of a resume are not timed."""
    from farfield.orchestrator.sweep import progress as progress_module
    from farfield.orchestrator.sweep.config import grid_cells
    from farfield.orchestrator.sweep.tune_reporter import REPORT_INDEX, RESUMED_AT_EPOCH

    config = SweepConfig.model_validate({
        "training": {"epochs": 4},
        "sweep": {"max_concurrent": 2, "grid": {
            "variant": [{"name": "cheap", "set": {"model.channels": 8}}, {"name": "dear", "set": {"model.channels": 64}}],
            "seed": [0, 1]}}})
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(progress_module.time, "time", lambda: clock.now)
    monkeypatch.setitem(progress_module.ACTIVE, "sw-eta", {"config": config})
    cells = grid_cells(config)
    slots = {(cell["variant"]["name"], cell["seed"]): f"{i}.0" for i, cell in enumerate(cells)}
    progress = SweepProgress("sw-eta", total=4, metric="val_f_mae", mode="min")
    progress.echo = lambda line: None

    def trial(trial_id, name, seed):
        return SimpleNamespace(trial_id=trial_id, status="RUNNING", last_result={},
                               config={"slot": slots[(name, seed)], "cell": cells[int(slots[(name, seed)][0])]})

    cheap, dear = trial("a", "cheap", 0), trial("b", "dear", 0)
    progress.on_trial_start(0, [], cheap)
    progress.on_trial_start(0, [], dear)
    assert progress.remaining_work_s() is None
    for now, who, index in ((1010.0, cheap, 1), (1020.0, cheap, 2), (1030.0, dear, 1)):
        clock.now = now
        progress.on_trial_result(0, [], who, {REPORT_INDEX: index})
    # left: cheap s0 2 x 10 s, dear s0 3 x 30 s, cheap s1 4 x 10 s, dear s1 4 x 30 s = 270 trial-seconds
    assert progress.remaining_work_s() == pytest.approx(270.0)
    assert progress.eta_s(running=2) == pytest.approx(135.0)
    # a resumed trial replays its epochs from its state: counted as done, not timed
    resumed = trial("c", "dear", 1)
    clock.now = 1040.0
    progress.on_trial_start(0, [], resumed)
    for index in (1, 2):
        progress.on_trial_result(0, [], resumed, {REPORT_INDEX: index, RESUMED_AT_EPOCH: 2})
    assert progress.epoch_seconds["dear"] == [30.0]
    assert progress.remaining_work_s() == pytest.approx(270.0 - 2 * 30.0)
    # the final report ends the slot; the kind not yet measured is priced at the measured kinds' mean
    clock.now = 1050.0
    progress.on_trial_result(0, [], cheap, {REPORT_INDEX: 5, TRIAL_COMPLETE: 1})
    cheap.last_result = {TRIAL_COMPLETE: 1}
    progress._finish(cheap, "complete")
    assert progress.remaining_work_s() == pytest.approx(3 * 30.0 + 4 * 10.0 + 2 * 30.0)
    progress.epoch_seconds = {"dear": [30.0]}
    assert progress.remaining_work_s() == pytest.approx(3 * 30.0 + 4 * 30.0 + 2 * 30.0)


def test_a_resumed_sweeps_eta_prices_the_epochs_earlier_drivers_ran(monkeypatch, tmp_path):
    """The epoch clock reads earlier drivers' epochs back from the sweep's MLflow runs: gaps between
    a run's curve points, a resume's replayed points (no gap) and other sweeps' runs left out."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from farfield.analysis import run_layout
    from farfield.orchestrator.sweep import progress as progress_module
    from farfield.orchestrator.sweep.config import grid_cells

    config = SweepConfig.model_validate({
        "training": {"epochs": 4},
        "sweep": {"max_concurrent": 2, "grid": {
            "variant": [{"name": "cheap", "set": {"model.channels": 8}}, {"name": "dear", "set": {"model.channels": 64}}],
            "seed": [0, 1]}}})
    slots = {(cell["variant"]["name"], cell["seed"]): f"{i}.0" for i, cell in enumerate(grid_cells(config))}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("eta")

    def logged_run(sweep_id, slot, seconds):
        run = client.create_run(experiment, tags={run_layout.TAG_SWEEP_ID: sweep_id, run_layout.TAG_SWEEP_SLOT: slot})
        client.log_batch(run.info.run_id, metrics=[
            mlflow.entities.Metric(progress_module.EPOCH_CURVE, 1.0, int(1000 * t), step)
            for step, t in enumerate(seconds)])
        return run

    logged_run("sw-hist", slots[("cheap", 0)], [100.0, 110.0, 120.0, 130.0])  # finished: 3 gaps of 10 s
    logged_run("sw-hist", slots[("dear", 0)], [200.0, 200.2, 200.4, 230.0])  # 2 replayed epochs, then one of 30 s
    logged_run("another-sweep", slots[("dear", 1)], [0.0, 500.0])
    monkeypatch.setitem(progress_module.ACTIVE, "sw-hist", {"config": config, "tracking_uri": uri,
                                                            "experiment_id": experiment})
    progress = SweepProgress("sw-hist", total=4, metric="val_f_mae", mode="min")
    progress.echo = lambda line: None
    finished = SimpleNamespace(trial_id="a", status="TERMINATED", last_result={TRIAL_COMPLETE: 1},
                               config={"slot": slots[("cheap", 0)]})
    progress.on_step_begin(0, [finished])
    assert {kind: [round(t, 3) for t in times] for kind, times in progress.epoch_seconds.items()} == {
        "cheap": [10.0, 10.0, 10.0], "dear": [29.6]}
    # left: dear s0, cheap s1, dear s1, 4 epochs each (this driver has seen none of dear s0's)
    assert progress.remaining_work_s() == pytest.approx(4 * 29.6 + 4 * 10.0 + 4 * 29.6)
    assert progress.eta_s(running=2) == pytest.approx((8 * 29.6 + 40.0) / 2)


def test_mlflow_server_and_sweep_commands_are_registered():
    result = CliRunner().invoke(app, ["--help"])
    assert "sweep" in result.output and "mlflow-server" in result.output


def test_a_sweep_refuses_a_sqlite_tracking_uri(tmp_path):
    from farfield.orchestrator.sweep.run import _resolve_tracking

    config = SweepConfig.model_validate({"workspace": str(tmp_path),
                                         "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db"}})
    with pytest.raises(ValueError, match=r"tracking.uri = 'sqlite:.*need a tracking server"):
        _resolve_tracking(config)
