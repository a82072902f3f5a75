"""MLflow bookkeeping without a server: experiment kind, run names, key metrics, UI addresses,
quiet checkpoint logs, and the sweep's progress lines (also after --resume)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from farfield.orchestrator.config import TrackingConfig, TrialConfig
from farfield.orchestrator.sweep.grid_search import TRIAL_COMPLETE
from farfield.orchestrator.mlflow_server import ui_url
from farfield.orchestrator.quickstart import quickstart_sweep_config
from farfield.orchestrator.sweep.config import SweepConfig, grid_cells
from farfield.orchestrator.sweep.progress import ACTIVE, SweepProgress
from farfield.orchestrator.sweep.summary import summary_run_name
from farfield.orchestrator.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING,
    ensure_experiment,
    key_metrics,
    tracking_uri,
    trial_title,
)
from farfield.orchestrator.sweep.tune_reporter import CHECKPOINT_LOGGERS, quiet_checkpoint_logs, run_title, sweep_trial_config


def test_experiments_are_model_training_experiments_new_or_old(tmp_path):
    tracking = TrackingConfig(experiment="kind")
    experiment_id = ensure_experiment(tracking, tmp_path)
    client = MlflowClient(tracking_uri(tracking, tmp_path))
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"
    old = client.create_experiment("made-before")  # by an older farfield: no kind
    assert ensure_experiment(TrackingConfig(experiment="made-before"), tmp_path) == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def test_run_names_say_what_the_trial_is():
    config = TrialConfig.model_validate({"model": {"backbone": "painn", "long_range": ["les"]},
                                         "split": {"strategy": "size"}})
    assert trial_title(config) == "painn+les · size · seed 0"
    plain = TrialConfig.model_validate({"model": {"backbone": "nequip", "long_range": []}, "seed": 3})
    assert trial_title(plain) == "nequip · random · seed 3"
    assert trial_title(plain, "short-range-4L") == "nequip [short-range-4L] · random · seed 3"
    assert trial_title(config, "les") == trial_title(config)  # a variant named for its head adds nothing
    assert summary_run_name("quickstart-sweep-20260101-120000").startswith("Σ sweep summary · quickstart-sweep")


def test_sweep_trials_are_named_by_cell_and_sample(tmp_path):
    sweep = quickstart_sweep_config(tmp_path)
    cells = grid_cells(sweep)
    meta = {"dataset": str(tmp_path), "split_files": [str(tmp_path / "s.json")] * len(cells),
            "tracking_uri": "http://127.0.0.1:5000"}
    names = {sweep_trial_config(sweep, {"cell_index": i, "cell": c, "sampled": {}, "slot": f"{i}.0"}, meta,
                                f"t{i}").tracking.run_name for i, c in enumerate(cells)}
    assert len(names) == len(cells) and "painn+les · size · seed 0" in names and "nequip · random · seed 0" in names
    twice = SweepConfig.model_validate({**sweep.model_dump(mode="json"),
                                        "sweep": {**sweep.sweep.model_dump(mode="json"), "samples_per_cell": 2}})
    assert run_title(twice, {"cell": cells[0], "sampled": {}, "slot": "0.1"}) == "painn · random · seed 0 · sample 2"


def test_grid_variants_of_one_model_get_different_run_names(tmp_path):
    """study-paper.yaml's celli with and without reference charges (and the 2- and 4-layer
    short-range twins) are one model each: the variant's name tells their runs apart."""
    from pathlib import Path

    from farfield.orchestrator.sweep.run import sweep_config_for

    sweep = sweep_config_for(Path("configs/study-paper.yaml"), None, {})
    cells = grid_cells(sweep)
    names = [run_title(sweep, {"cell": c, "sampled": {}, "slot": f"{i}.0"}) for i, c in enumerate(cells)]
    assert len(set(names)) == len(cells)
    assert any("[celli-q]" in n for n in names) and any("[short-range-4L]" in n for n in names)


def _graph(numbers, energy, forces):
    return SimpleNamespace(numbers=torch.tensor(numbers), energy=torch.tensor([energy]),
                           forces=torch.tensor(forces, dtype=torch.float64))


def test_key_metrics_sort_together_and_skill_is_relative_to_the_dummy_baseline():
    reference = np.zeros(119)
    reference[1], reference[8] = -1.0, -2.0
    graphs = [_graph([8, 1, 1], -4.3, [[0.1, 0.0, 0.0], [0.0, -0.2, 0.0], [0.0, 0.0, 0.3]]),  # baseline error 100 meV/atom
              _graph([1, 1], -2.0, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])]  # 0 meV/atom
    metrics = {"test/f_mae": 25.0, "test/e_mae": 10.0}
    key = key_metrics(metrics, reference, graphs)
    assert sorted(key) == ["key/e_skill", "key/f_skill", "key/test_e_mae", "key/test_f_mae"]
    assert key["key/test_f_mae"] == 25.0 and key["key/test_e_mae"] == 10.0
    assert key["key/e_skill"] == pytest.approx(1 - 10.0 / 50.0)  # baseline e_mae = (100 + 0) / 2 meV/atom
    assert key["key/f_skill"] == pytest.approx(1 - 25.0 / (1e3 * 0.6 / 15))  # baseline = mean |F| over components
    assert key_metrics({"val/f_mae": 1.0}, reference, graphs) == {}


def test_ui_addresses_open_the_model_training_layout():
    assert ui_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    assert ui_url("http://h:1/", "7") == "http://h:1/#/experiments/7/runs?workflowType=machine_learning"


def test_ray_checkpoint_lines_are_quiet_unless_verbose():
    quiet_checkpoint_logs()
    assert all(not logging.getLogger(name).isEnabledFor(logging.INFO) for name in CHECKPOINT_LOGGERS)
    quiet_checkpoint_logs(verbose=True)
    assert all(logging.getLogger(name).isEnabledFor(logging.INFO) for name in CHECKPOINT_LOGGERS)
    quiet_checkpoint_logs()


def _trial(trial_id, status, cell, result=None):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result or {},
                           config={"cell_index": 0, "cell": cell, "sampled": {}, "slot": "0.0"})


def test_progress_names_trials_and_counts_those_finished_before_a_resume(tmp_path, capsys):
    import pickle

    sweep = quickstart_sweep_config(tmp_path)
    cells = grid_cells(sweep)
    ACTIVE["qs-1"] = {"config": sweep}
    try:
        progress = pickle.loads(pickle.dumps(SweepProgress("qs-1", total=8, metric="val_f_mae", mode="min")))
        ended = [_trial(f"t{i}", "TERMINATED", cells[i], {TRIAL_COMPLETE: 1, "val_f_mae": 50.0 + i}) for i in range(4)]
        pending = [_trial(f"t{i}", "PENDING", cells[i]) for i in range(4, 8)]
        progress.on_step_begin(0, ended + pending)
        assert "4/8 trials done (4 complete)" in progress.status_line(0)
        assert "best val_f_mae 50 (t0)" in progress.status_line(0)
        progress.on_trial_start(1, ended + pending, pending[0])
        for epoch in range(3):  # a trial continued from its training state reports its first 3 epochs again
            progress.on_trial_result(1, ended + pending, pending[0], {"epoch": epoch, "resumed_at_epoch": 3})
        progress.on_trial_result(1, ended + pending, pending[0], {"epoch": 3})
        pending[0].last_result = {TRIAL_COMPLETE: 1, "val_f_mae": 61.0}
        progress._finish(pending[0], "complete")
        err = capsys.readouterr().err
        assert "4 of 8 trials had finished before the interruption" in err
        assert "started  nequip · random · seed 0  (t4)" in err
        assert err.count("resumed  nequip · random · seed 0  (t4) at epoch 3, from its training state") == 1
        progress.echo("started  painn [celli-q] · random · seed 0  (t9)")
        assert "painn [celli-q] · random" in capsys.readouterr().err  # not eaten as rich markup
        assert "finished nequip · random · seed 0  (t4): complete, val_f_mae 61" in err
        assert "5/8 trials done" in progress.status_line(0)
    finally:
        ACTIVE.pop("qs-1", None)


def test_report_upload_does_not_reuse_a_run_artifact_repository_cached_for_another_server(tmp_path):
    """MLflow caches a run's artifact repository per run id for the whole process; a repository
    cached while a now-stopped server was in use must not receive the report."""
    from mlflow.tracking._tracking_service import utils

    from farfield.analysis.mlflow_queries import log_report

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("cached", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id

    class DeadServer:
        def log_artifacts(self, *args, **kwargs):
            raise ConnectionRefusedError("the sweep's server is gone")

    utils._artifact_repos_cache[run_id] = DeadServer()
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "index.html").write_text("<html></html>")
    log_report(uri, run_id, folder)
    assert [f.path for f in client.list_artifacts(run_id, "report")] == ["report/index.html"]


def test_run_layout_names_what_the_writer_logs():
    """The reader's param names are fields of the trial config the writer flattens, and the
    charge tables the writer logs (models.heads.report) have the columns the reader expects."""
    import ase.io

    from farfield.analysis import run_layout
    from farfield.analysis.loading import charge_rows
    from farfield.models import AtomicGraph, ModelConfig, build_potential
    from farfield.models.heads.report import head_report
    from tests.conftest import DATA

    params = TrialConfig.model_validate({"name": "layout"}).flat_params()
    read = {value for name, value in vars(run_layout).items() if name.startswith("PARAM_")}
    read |= {run_layout.split_param(field) for field in ("metric", "weight", "min_cluster_size", "min_samples",
                                                         "pca_components", "noise", "cluster_selection")}
    assert len(read) > 10 and read <= set(params), sorted(read - set(params))

    torch.manual_seed(0)
    atoms = ase.io.read(DATA / "nacl_rocksalt.extxyz")
    potential = build_potential(ModelConfig(channels=8, layers=1, cutoff=4.0, long_range=["les"], dtype="float64"))
    report = head_report(potential, [AtomicGraph.from_atoms(atoms, 4.0)])
    (sid, table), = report.charges.items()
    assert tuple(table.columns) == run_layout.LOGGED_CHARGE_COLUMNS
    rows = charge_rows(report.charges)
    assert list(rows["element"]) == atoms.get_chemical_symbols() and (rows["structure_id"] == sid).all()
    np.testing.assert_array_equal(rows["q_pred"], table["charge"])
    name = run_layout.charge_file_name("mof/1:a b")  # earlier layout: one plain file per structure
    assert not set(name) - set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert run_layout.CHARGES_ARTIFACT.startswith(f"{run_layout.PREDICTIONS_DIR}/")
