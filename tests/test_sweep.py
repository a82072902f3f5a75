"""A real (tiny) sweep on an in-process Ray, logged over HTTP to a managed MLflow server.

Two trials of one grid cell; TPE picks the learning rate from two choices, one of which
(1e12) blows the loss up. The seeded sampler is checked to give one of each, and each
trial's expected fate follows from the learning rate it actually got.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from farfield.models.training import load_checkpoint
from farfield.orchestrator.mlflow_server import RECORD, ManagedServer
from farfield.orchestrator.sweep.config import SweepConfig

pytestmark = pytest.mark.integration

BLOW_UP_LR = 1.0e12


def tiny_sweep(workspace: Path, name: str = "tiny", **sweep) -> SweepConfig:
    """A sweep of small fast trials on the bundled data (used by the other sweep tests too)."""
    return SweepConfig.model_validate({
        "name": name,
        "workspace": str(workspace),
        "data": {"dataset": "bundled", "max_structures": 48},  # 12 parents
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "model": {"channels": 8, "layers": 1, "cutoff": 4.0, "n_radial": 4},
        "training": {"epochs": 2, "batch_size": 8, "ema_decay": None, "lr": 0.003},
        "tracking": {"experiment": name},
        "resources": {"num_cpus": 1},
        "sweep": {"max_concurrent": 2, **sweep},
    })


@pytest.fixture(scope="module")
def local_ray(isolated_home):
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ray")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def served_workspace(tmp_path_factory):
    """A workspace whose MLflow server is already running (as `farfield mlflow-server` leaves it)."""
    workspace = tmp_path_factory.mktemp("ws")
    with ManagedServer.start(workspace) as server:
        yield workspace, server


@pytest.fixture(scope="module")
def finished_sweep(local_ray, served_workspace):
    from farfield.orchestrator.sweep.run import run_sweep

    workspace, server = served_workspace
    config = tiny_sweep(workspace, ranges={"training.lr": {"choices": [0.003, BLOW_UP_LR]}}, samples_per_cell=2,
                        search_seed=0)
    return config, run_sweep(config, progress_every_s=600)


def _trial_runs(result) -> list:
    client = MlflowClient(result.tracking_uri)
    runs = client.search_runs([result.experiment_id], f"tags.sweep_id = '{result.sweep_id}'")
    return [r for r in runs if "tune_trial_id" in r.data.tags]


def test_one_tagged_run_per_trial_logged_through_the_server(finished_sweep):
    config, result = finished_sweep
    assert result.tracking_uri.startswith("http://127.0.0.1:")
    runs = _trial_runs(result)
    assert sorted(r.data.tags["tune_trial_id"] for r in runs) == sorted(result.trials["trial_id"])
    for run in runs:
        tags = run.data.tags
        assert tags["sweep_name"] == "tiny" and tags["backbone"] == "painn" and tags["long_range"] == "none"
        assert tags["split"] == "random"
        assert tags["dataset_hash"].startswith("sha256:") and tags["split_hash"].startswith("sha256:")
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # uploaded through the server
    hashes = {r.data.tags["split_hash"] for r in runs}
    assert len(hashes) == 1  # the split was made once, on the driver


def test_blown_up_trial_fails_with_reason_and_the_other_finishes(finished_sweep):
    config, result = finished_sweep
    runs = _trial_runs(result)
    lrs = sorted(float(r.data.params["training.lr"]) for r in runs)
    assert lrs == [0.003, BLOW_UP_LR], "the seeded sampler no longer gives one of each choice"
    for run in runs:
        if float(run.data.params["training.lr"]) == BLOW_UP_LR:
            assert run.info.status == "FAILED"
            assert "NonFiniteLossError" in run.data.tags["failure_reason"]
            assert run.data.tags["sweep_outcome"] == "failed"
        else:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["test/f_mae"] > 0
            assert run.data.tags["sweep_outcome"] == "complete"
    outcomes = dict(zip(result.trials["trial_id"], result.trials["outcome"]))
    assert sorted(outcomes.values()) == ["complete", "failed"]


def test_summary_run_names_the_best_trial_and_holds_the_table(finished_sweep, tmp_path):
    config, result = finished_sweep
    client = MlflowClient(result.tracking_uri)
    summary = client.get_run(result.summary_run_id)
    assert summary.data.tags["sweep_summary"] == "true" and summary.info.status == "FINISHED"
    finished = [r for r in _trial_runs(result) if r.info.status == "FINISHED"]
    assert summary.data.tags["best_run_id"] == finished[0].info.run_id
    assert summary.data.metrics["n_complete"] == 1 and summary.data.metrics["n_failed"] == 1
    table = pd.read_csv(client.download_artifacts(result.summary_run_id, "sweep/trials.csv", str(tmp_path)))
    assert len(table) == 2 and set(table["mlflow_status"]) == {"FINISHED", "FAILED"}
    best_val = finished[0].data.metrics["val/f_mae"]
    assert summary.data.metrics["best_val_f_mae"] == pytest.approx(best_val, rel=1e-6)


def test_trials_checkpoint_each_epoch_and_checkpoints_reload(finished_sweep):
    config, result = finished_sweep
    checkpoints = sorted(Path(result.experiment_path).glob("*/checkpoint_*/model.pt"))
    assert checkpoints, "no Tune checkpoints written"
    potential, trial_config = load_checkpoint(checkpoints[-1])
    assert trial_config["model"]["channels"] == 8 and sum(p.numel() for p in potential.parameters()) > 0


def test_sweep_reuses_the_running_server_of_its_workspace(finished_sweep, served_workspace):
    config, result = finished_sweep
    workspace, server = served_workspace
    assert result.tracking_uri == server.uri
    assert (workspace / RECORD).exists() and server.process.poll() is None  # left running: not the sweep's


def test_asha_sweep_prunes_by_report_index_and_ends(local_ray, served_workspace):
    """ASHA counts reports by ``report_index`` (epoch + 1; a resumed trial's replayed epochs keep
    theirs): a sweep with it runs to the end, every trial complete or pruned at a rung."""
    from farfield.orchestrator.sweep.run import run_sweep

    workspace, _ = served_workspace
    config = tiny_sweep(workspace, name="asha", samples_per_cell=4, search_seed=0, max_concurrent=1,
                        ranges={"training.lr": {"choices": [0.003, 1e-5]}},
                        scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2})
    config.training.epochs = 4
    result = run_sweep(config, progress_every_s=600)
    outcomes = result.trials["outcome"].tolist()
    assert len(outcomes) == 4 and set(outcomes) <= {"complete", "pruned"}, outcomes
    assert "complete" in outcomes
    epochs = result.trials.loc[result.trials["outcome"] == "complete", "epochs"]
    assert (epochs == 4).all(), result.trials  # a complete trial ran its whole budget


@pytest.mark.slow
def test_an_archived_sweep_continues_in_a_new_workspace_without_training_again(local_ray, tmp_path):
    """The sweep keeps its archive (finished runs as files); a new workspace resumes from it: the
    archived trial is imported, not trained again, and the trial the archive lacks trains."""
    import json
    import shutil

    from farfield.orchestrator.sweep import archive
    from farfield.orchestrator.sweep.run import run_sweep

    folder = tmp_path / "published" / "runs"
    first = run_sweep(tiny_sweep(tmp_path / "here", name="archived", grid={"split": ["random", "size"]}),
                      progress_every_s=600, archive=folder)
    archived = archive.archived_run_ids(folder)
    assert archived == set(first.trials["mlflow_run_id"]) and len(archived) == 2
    assert archive.read_sweep(folder).sweep_id == first.sweep_id
    lost = sorted(archived)[0]
    lost_cell = json.loads((folder / lost / "run.json").read_text())["tags"]["grid_cell"]
    shutil.rmtree(folder / lost)  # as if the session ended before this trial was archived

    there = tmp_path / "there"
    with ManagedServer.start(there):  # kept running after the sweep, to read its runs
        second = run_sweep(tiny_sweep(there, name="archived", grid={"split": ["random", "size"]}), resume=True,
                           progress_every_s=600, archive=folder)
        assert second.sweep_id == first.sweep_id
        finished = [run for run in _trial_runs(second) if run.info.status == "FINISHED"]
    assert len(finished) == 2 and set(second.trials["mlflow_run_id"]) == {run.info.run_id for run in finished}
    imported = [run for run in finished if "origin_run_id" in run.data.tags]
    assert [run.data.tags["origin_run_id"] for run in imported] == sorted(archived - {lost})
    trained = [run for run in finished if "origin_run_id" not in run.data.tags]
    assert len(trained) == 1 and trained[0].data.tags["grid_cell"] == lost_cell
    assert archive.archived_run_ids(folder) == (archived - {lost}) | {trained[0].info.run_id}


def test_a_resumed_sweep_takes_the_split_files_it_recorded(tmp_path, monkeypatch):
    """The driver records which split file each split config got; a resumed sweep takes those
    files as they are instead of making the splits again (minutes for clustered splits)."""
    from farfield.orchestrator.sweep import run as sweeps

    monkeypatch.setattr(sweeps, "prepare_graph_cache", lambda config: None)
    config = tiny_sweep(tmp_path, name="recorded", grid={"split": ["random", "size"]})
    cells = sweeps.grid_cells(config)
    first = sweeps._shared_inputs(config, cells)
    assert len(first["splits"]) == 2 and all(Path(path).is_file() for path in first["split_files"])

    def no_split(*args, **kwargs):
        raise AssertionError("a recorded split was made again")

    monkeypatch.setattr(sweeps, "make_split", no_split)
    again = sweeps._shared_inputs(config, cells, first["splits"])
    assert again["split_files"] == first["split_files"]
    Path(first["split_files"][0]).unlink()  # a recorded file that is gone is made again
    monkeypatch.undo()
    monkeypatch.setattr(sweeps, "prepare_graph_cache", lambda config: None)
    assert sweeps._shared_inputs(config, cells, first["splits"])["split_files"] == first["split_files"]
