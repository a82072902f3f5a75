"""Kill the sweep driver mid-sweep, then `farfield sweep --resume`: one finished MLflow run per trial (slow).

The driver is the real CLI in its own process group (it starts its own local Ray); the
MLflow server belongs to the test and outlives the driver, as `farfield mlflow-server`
would on a cluster head.

Two kill points, chosen by reading Tune's experiment snapshot (what `Tuner.restore`
reads), not by timing:

* ``tracked``: the second trial is training and Tune's snapshot has it RUNNING — the
  restored experiment re-runs it;
* ``untracked``: the second trial has created its MLflow run but Tune's snapshot was
  taken before the trial existed (snapshots only at trial checkpoints here) — the
  restored experiment does not know it, the searcher issues its slot again under a new
  Tune trial id, and that trial must take over the lost trial's run instead of leaving a
  trial with no FINISHED run behind.

* ``stale_searcher``: as ``tracked``, but the searcher's files in the sweep folder are then put
  back to what they were while the first trial ran — what a kill lands on when Tune's
  background copy of its state had written the experiment's trials but not yet the
  searcher: the restored searcher must not issue the interrupted trial's slot a second time.

In the ``tracked`` and ``stale_searcher`` cases every finished trial (the one done before the kill and the one
continued from its training state) is then trained again in this process, in one go, and
its final metrics must be equal to the last bit.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.mlflow_server import ManagedServer
from farfield.orchestrator.trial import run_trial
from tests.test_sweep import tiny_sweep

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _farfield(*args: str) -> list[str]:
    return [sys.executable, "-m", "farfield.orchestrator.cli", *args]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HOME": str(home), "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray"), **extra})
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _runs(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return [r for r in client.search_runs([found.experiment_id]) if "tune_trial_id" in r.data.tags]


def snapshot_trials(experiment_dir: Path) -> dict[str, str]:
    """Trial id → status in Tune's newest experiment snapshot ({} while none is readable)."""
    files = sorted(experiment_dir.glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except (OSError, ValueError):  # being copied into place
        return {}
    trials = {}
    for trial_state, _ in state["trial_data"]:
        trial = json.loads(trial_state) if isinstance(trial_state, str) else trial_state
        trials[trial["trial_id"]] = trial["status"]
    return trials


def assert_same_as_uninterrupted(client: MlflowClient, run, tracking_uri: str) -> None:
    """``run``, a sweep trial's FINISHED run, has the final metrics and best epoch of its config
    trained by ``run_trial`` in this process without interruption, to the last bit. For a trial
    killed with its driver and continued from its training state in a new Ray worker, this is
    the check that training, the choice of the best epoch and the evaluation all continued
    exactly."""
    with tempfile.TemporaryDirectory() as folder:
        logged = client.download_artifacts(run.info.run_id, run_layout.CONFIG_ARTIFACT, folder)
        config = TrialConfig.model_validate(json.loads(Path(logged).read_text()))
    config.tracking.uri, config.tracking.experiment = tracking_uri, "uninterrupted"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # as in a trial's worker: conftest makes tests float64, and
    try:                                   # the initial weights are drawn in the default dtype
        twin = run_trial(config, progress=False)
    finally:
        torch.set_default_dtype(previous)
    final = {k: v for k, v in run.data.metrics.items() if k.startswith(("train/", "val/", "test/"))}
    assert final
    for name, value in final.items():  # NaN (no charges to compare) equals NaN here
        assert value == twin.metrics[name] or (math.isnan(value) and math.isnan(twin.metrics[name])), \
            f"{run.data.tags.get('tune_trial_id')} {name}: {value!r} in the sweep, {twin.metrics[name]!r} in one go"
    assert twin.best_epoch == int(run.data.metrics[run_layout.METRIC_BEST_EPOCH])


def searcher_files(experiment_dir: Path) -> dict[Path, bytes]:
    """The searcher's saved state in the sweep folder (Tune's ``searcher-state-*.pkl`` and
    ``search_gen_state-*.json``), path → bytes."""
    files = {}
    for pattern in ("searcher-state-*.pkl", "search_gen_state-*.json"):
        for path in experiment_dir.glob(pattern):
            try:
                files[path] = path.read_bytes()
            except OSError:  # being copied into place
                return {}
    return files


@pytest.mark.parametrize("kill_point", ["tracked", "untracked", "stale_searcher"])
def test_killed_driver_then_resume_gives_one_finished_run_per_trial(tmp_path, isolated_home, kill_point):
    workspace = tmp_path / "ws"
    config = tiny_sweep(workspace, name="resumable", grid={"seed": [0, 1, 2]}, max_concurrent=1,
                        ranges={"training.lr": {"low": 0.002, "high": 0.004}})
    config.training.epochs = 40  # long enough that the kill lands mid-training, not after a trial's last epoch
    config.training.patience = None
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    experiment_dir = workspace / "sweeps" / "resumable"
    # untracked: no periodic snapshots, only the forced ones at trial checkpoints (every epoch), so a
    # trial that has not reported its first epoch yet is in no snapshot
    extra = {"TUNE_GLOBAL_CHECKPOINT_S": "3600"} if kill_point == "untracked" else {}

    early_searcher: dict[Path, bytes] = {}  # stale_searcher: as saved while the first trial ran
    with ManagedServer.start(workspace) as server:
        client = MlflowClient(server.uri)
        driver = subprocess.Popen(_farfield("sweep", str(config_file)), env=_env(isolated_home, **extra),
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 600
            while True:  # one trial finished, the next one started
                runs = _runs(client, "resumable")
                finished = [r for r in runs if r.info.status == "FINISHED"]
                running = [r for r in runs if r.info.status == "RUNNING"]
                if kill_point == "stale_searcher" and not finished and running and not early_searcher and \
                        "curve/train_loss" in running[0].data.metrics:
                    early_searcher = searcher_files(experiment_dir)
                if finished and running:
                    if kill_point == "untracked":
                        break
                    snapshot = snapshot_trials(experiment_dir)
                    if any(snapshot.get(r.data.tags["tune_trial_id"]) == "RUNNING" and "curve/train_loss" in
                           r.data.metrics for r in running):
                        break
                assert driver.poll() is None, "the sweep ended before it could be interrupted"
                assert time.time() < deadline, "the sweep made no progress"
                time.sleep(0.1)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
            driver.wait(timeout=60)
        before = _runs(client, "resumable")
        finished_before = {r.data.tags["tune_trial_id"]: r.info.run_id for r in before if r.info.status == "FINISHED"}
        interrupted_id = next(r.data.tags["tune_trial_id"] for r in before if r.info.status == "RUNNING")
        snapshot = snapshot_trials(experiment_dir)
        if kill_point == "untracked":  # the race this case is about: MLflow has a trial Tune will not restore
            assert interrupted_id not in snapshot, f"killed too late: the snapshot has {interrupted_id}"
        else:
            assert snapshot[interrupted_id] == "RUNNING"
        if kill_point == "stale_searcher":  # the searcher Tune restores has issued the first trial only
            assert early_searcher, "no searcher state was saved while the first trial ran"
            for path, content in early_searcher.items():
                path.write_bytes(content)

        result_file = tmp_path / "result.json"
        resumed = subprocess.run(
            _farfield("sweep", "--resume", "resumable", "--workspace", str(workspace), "--result-json",
                      str(result_file)),
            env=_env(isolated_home), capture_output=True, text=True, timeout=900, check=False,
        )
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        progress = [line for line in resumed.stderr.splitlines() if " trials done" in line]
        assert progress and "3/3 trials done" in progress[-1], progress[-3:]  # those finished before count too
        console = resumed.stdout + resumed.stderr  # farfield's own progress, not Ray's banners
        for noise in ("Token authentication is enabled", "Started a local Ray instance",
                      "Configuration for experiment", "View detailed results here",
                      "from checkpoint: Checkpoint("):  # a restored trial's worker-side line
            assert noise not in console, f"library log on the console: {noise!r}"
        if kill_point != "untracked":  # Tune's snapshot has the first trial ended (untracked: still running, it
            # reports its FINISHED run again after the restore)
            assert "1 of 3 trials had finished before the interruption" in resumed.stderr
        result = json.loads(result_file.read_text())
        runs = _runs(client, "resumable")
        if kill_point != "untracked":  # it had finished epochs: its training continued from the last one
            continued = [r for r in runs
                         if r.data.tags["tune_trial_id"] == interrupted_id and r.info.status == "FINISHED"]
            seen = [(r.data.tags["tune_trial_id"], r.info.status, r.data.tags.get("lost_tune_trial_id")) for r in runs]
            assert continued, (f"no FINISHED run of the interrupted trial {interrupted_id}; runs (trial, status, "
                               f"lost trial id): {seen}; the resume's stderr ends: {resumed.stderr[-1500:]}")
            run = continued[0]
            assert int(run.data.tags["resumed_at_epoch"]) >= 1
            assert f"({interrupted_id}) at epoch {run.data.tags['resumed_at_epoch']}, from its training state" \
                in resumed.stderr  # farfield's progress line
            commit = run.data.tags[run_layout.TAG_GIT_COMMIT]  # both stretches trained by this checkout
            assert json.loads(run.data.tags[run_layout.TAG_TRAINING_SEGMENTS]) == [
                {"from_epoch": 0, "git_commit": commit},
                {"from_epoch": int(run.data.tags["resumed_at_epoch"]), "git_commit": commit}]
            curve = client.get_metric_history(run.info.run_id, "curve/train_loss")
            assert sorted(m.step for m in curve) == list(range(40))  # the earlier epochs' curve too, once each
            # continued = never interrupted, bit for bit: each trial's config trained in one go, here
            for finished in [client.get_run(run_id) for run_id in finished_before.values()] + [run]:
                assert_same_as_uninterrupted(client, finished, server.uri)
    assert not list((experiment_dir / "trial_state").glob("*.pt"))  # a FINISHED run's state is deleted

    trial_ids = {r.data.tags["tune_trial_id"] for r in runs}
    assert len(trial_ids) == 3, sorted(trial_ids)
    assert len({r.data.tags["sweep_slot"] for r in runs}) == 3
    for trial_id in trial_ids:
        finished = [r for r in runs if r.data.tags["tune_trial_id"] == trial_id and r.info.status == "FINISHED"]
        assert len(finished) == 1, f"trial {trial_id}: {len(finished)} finished runs"
        assert {r.data.tags["sampled_json"] for r in runs if r.data.tags["tune_trial_id"] == trial_id} == {
            finished[0].data.tags["sampled_json"]}  # a taken-over attempt had the same sampled values
    for trial_id, run_id in finished_before.items():  # kept, not re-run
        assert [r.info.run_id for r in runs if r.data.tags["tune_trial_id"] == trial_id] == [run_id]
    interrupted = [r for r in runs if r.info.status != "FINISHED"]
    assert interrupted and all(r.info.status == "KILLED" and "interrupted" in r.data.tags["failure_reason"]
                               for r in interrupted)
    if kill_point == "untracked":  # its run now belongs to the trial that replaced it
        assert interrupted_id not in trial_ids
        assert [r.data.tags.get("lost_tune_trial_id") for r in interrupted] == [interrupted_id]
    else:
        assert interrupted_id in trial_ids
    assert all(r.data.tags["sweep_id"] == result["sweep_id"] for r in runs)
    assert sorted(result["run_ids"]) == sorted(r.info.run_id for r in runs if r.info.status == "FINISHED")
