"""Resume bookkeeping in MLflow: interrupted runs end KILLED, a re-issued slot takes over a lost trial's runs."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from farfield.orchestrator.sweep.run import INTERRUPTED, STOPPED, _end_stopped_runs, reconcile_resumed
from farfield.orchestrator.sweep.tune_reporter import close_open_runs, sampled_key, trial_runs

SWEEP = "resumable-0a1b2c3d"


@pytest.fixture
def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _run(client: MlflowClient, experiment_id: str, trial_id: str, slot: str, sampled: dict, status: str) -> str:
    run = client.create_run(experiment_id, tags={"sweep_id": SWEEP, "tune_trial_id": trial_id, "sweep_slot": slot,
                                                 "sampled_json": sampled_key(sampled)})
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def test_resume_ends_interrupted_runs_and_a_reissued_slot_takes_over_the_lost_trial(client):
    experiment_id = client.create_experiment("resumable")
    meta = {"experiment_id": experiment_id, "sweep_id": SWEEP}
    done = _run(client, experiment_id, "aaaa0000", "0.0", {"training.lr": 0.003}, "FINISHED")
    lost = _run(client, experiment_id, "bbbb1111", "1.0", {"training.lr": 0.002}, "RUNNING")  # after the snapshot
    finished_lost = _run(client, experiment_id, "cccc2222", "2.0", {"training.lr": 0.004}, "FINISHED")
    other = client.create_run(experiment_id, tags={"sweep_id": "another-sweep", "tune_trial_id": "dddd3333"})
    client.create_run(experiment_id, tags={"sweep_id": SWEEP, "sweep_summary": "true"})

    recorded = reconcile_resumed(client, experiment_id, SWEEP)
    assert recorded == {"0.0": {"training.lr": 0.003}, "1.0": {"training.lr": 0.002}, "2.0": {"training.lr": 0.004}}
    interrupted = client.get_run(lost)
    assert interrupted.info.status == "KILLED" and interrupted.data.tags["failure_reason"] == INTERRUPTED
    assert client.get_run(done).info.status == "FINISHED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # not this sweep's

    # the restored searcher issues slot 1.0 again (same values) as a new Tune trial: it takes the lost run over
    taken = trial_runs(client, meta, "eeee4444", {"slot": "1.0", "sampled": {"training.lr": 0.002}})
    assert [r.info.run_id for r in taken] == [lost]
    tags = client.get_run(lost).data.tags
    assert tags["tune_trial_id"] == "eeee4444" and tags["lost_tune_trial_id"] == "bbbb1111"
    # a lost trial that had FINISHED: the new trial finds that run (and reports it instead of training)
    taken = trial_runs(client, meta, "ffff5555", {"slot": "2.0", "sampled": {"training.lr": 0.004}})
    assert [(r.info.run_id, r.info.status) for r in taken] == [(finished_lost, "FINISHED")]
    # a restored trial keeps its own runs; other sampled values in a slot are not this trial's
    assert [r.info.run_id for r in trial_runs(client, meta, "aaaa0000", {"slot": "0.0",
                                                                         "sampled": {"training.lr": 0.003}})] == [done]
    assert trial_runs(client, meta, "gggg6666", {"slot": "0.0", "sampled": {"training.lr": 0.001}}) == []
    # a sweep started before slots existed: its runs are found by Tune trial id
    assert [r.info.run_id for r in trial_runs(client, meta, "aaaa0000", {"sampled": {}})] == [done]


def test_a_stopped_sweep_ends_only_its_own_unfinished_trial_runs(client, tmp_path, capsys):
    experiment_id = client.create_experiment("stopped")
    done = _run(client, experiment_id, "aaaa0000", "0.0", {}, "FINISHED")
    failed = _run(client, experiment_id, "bbbb1111", "1.0", {}, "FAILED")
    stopped = [_run(client, experiment_id, f"cccc222{i}", f"{2 + i}.0", {}, "RUNNING") for i in range(2)]
    other = client.create_run(experiment_id, tags={"sweep_id": "another-sweep", "tune_trial_id": "dddd3333"})
    summary = client.create_run(experiment_id, tags={"sweep_id": SWEEP, "sweep_summary": "true"})

    _end_stopped_runs(client.tracking_uri, experiment_id, SWEEP, "stopped")
    for run_id in stopped:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == STOPPED
    assert [client.get_run(r).info.status for r in (done, failed)] == ["FINISHED", "FAILED"]
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # another sweep's
    assert client.get_run(summary.info.run_id).info.status == "RUNNING"  # being written, not a trial
    assert "stopped with 2 trial(s) unfinished" in capsys.readouterr().err
    assert close_open_runs(client, experiment_id, SWEEP, None, "KILLED", STOPPED) == []  # nothing left to end

    # a trial's worker ended its own run when Tune stopped it (it got there before the driver): it counts
    # too, unless it ended before this driver started or ASHA pruned it
    import time

    from farfield.orchestrator.trial import STOPPED_REASON

    earlier = _run(client, experiment_id, "eeee4444", "4.0", {}, "RUNNING")
    client.set_tag(earlier, "failure_reason", f"{STOPPED_REASON} (SystemExit) before it finished")
    client.set_terminated(earlier, status="KILLED")
    time.sleep(0.01)
    since = time.time()
    for i, outcome in enumerate([None, "pruned"]):
        run_id = _run(client, experiment_id, f"ffff555{i}", f"{5 + i}.0", {}, "RUNNING")
        client.set_tag(run_id, "failure_reason", f"{STOPPED_REASON} (SystemExit) before it finished")
        if outcome:
            client.set_tag(run_id, "sweep_outcome", outcome)
        client.set_terminated(run_id, status="KILLED")
    _end_stopped_runs(client.tracking_uri, experiment_id, SWEEP, "stopped", since=since)
    assert "stopped with 1 trial(s) unfinished" in capsys.readouterr().err

    # the tracking store is unusable: one line, no exception (an interruption may be propagating)
    (tmp_path / "not-a-folder").write_text("")
    _end_stopped_runs(f"sqlite:///{tmp_path / 'not-a-folder' / 'mlflow.db'}", experiment_id, SWEEP, "stopped")
    err = capsys.readouterr().err
    assert "could not end its unfinished trials' MLflow runs" in err and "--resume stopped" in err


def test_a_sweep_saved_before_the_sweep_modules_moved_can_be_restored():
    """Tune pickled an old sweep's searcher under farfield.orchestrator.grid_search (and the other
    pre-move names); Tuner.restore resolves them once resolve_moved_modules has run."""
    import pickle
    import sys

    from farfield.orchestrator.sweep import grid_search
    from farfield.orchestrator.sweep.run import MOVED_MODULES, resolve_moved_modules

    old = "farfield.orchestrator.grid_search"
    assert MOVED_MODULES[old] == grid_search.__name__
    searcher = grid_search.GridCrossedTPE
    try:
        searcher.__module__, sys.modules[old] = old, grid_search  # pickled as a sweep saved it then
        payload = pickle.dumps(searcher)
    finally:
        searcher.__module__ = grid_search.__name__
        sys.modules.pop(old, None)
    assert old.encode() in payload
    try:
        with pytest.raises(ModuleNotFoundError):
            pickle.loads(payload)
        resolve_moved_modules()
        assert pickle.loads(payload) is searcher
    finally:
        for name in MOVED_MODULES:
            sys.modules.pop(name, None)


def test_the_summary_table_tells_a_stopped_trial_from_a_pruned_one(client):
    """Tune's last result of both lacks ``trial_complete``; the trial's MLflow run tells them apart."""
    import pandas as pd

    from farfield.orchestrator.sweep.summary import _attach_runs
    from farfield.orchestrator.trial import STOPPED_REASON

    experiment_id = client.create_experiment("table")
    reasons = {"aaaa0000": (STOPPED, None),                                        # ended by the driver
               "bbbb1111": (f"{STOPPED_REASON} (SystemExit) before it finished", None),  # by its worker
               "cccc2222": ("stopped by the ASHA scheduler after epoch 1", "pruned"),
               "dddd3333": (f"{STOPPED_REASON} (SystemExit) before it finished", "pruned")}  # worker after ASHA
    for i, (trial_id, (reason, outcome)) in enumerate(reasons.items()):
        run_id = _run(client, experiment_id, trial_id, f"{i}.0", {}, "RUNNING")
        client.set_tag(run_id, "failure_reason", reason)
        if outcome:
            client.set_tag(run_id, "sweep_outcome", outcome)
        client.set_terminated(run_id, status="KILLED")
    table = pd.DataFrame({"trial_id": list(reasons), "outcome": ["pruned"] * 4})
    table = _attach_runs(table, client, experiment_id, SWEEP)
    assert table["outcome"].tolist() == ["stopped", "stopped", "pruned", "pruned"]
