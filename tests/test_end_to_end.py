"""One trial end to end: a Ray task on an in-process local Ray, logged to a local MLflow store.

The run must hold every metric, tag and artifact DESIGN.md names, and its checkpoint must
reload (weights_only) and reproduce the logged test metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from farfield.data.datasets import bundled_store
from farfield.data.splits import Split
from farfield.models import TrainingConfig
from farfield.models.training import Trainer, build_graphs, load_checkpoint
from farfield.orchestrator.config import TrialConfig

pytestmark = pytest.mark.integration

SIDES = ("train", "val", "test")
METRICS = ("e_mae", "e_rmse", "f_mae", "f_rmse", "q_mae")
MAX_STRUCTURES = 500  # a prefix of the bundled index keeps the trial to about a minute


@pytest.fixture(scope="module")
def ray_session(isolated_home):
    import ray

    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def finished_trial(ray_session, tmp_path_factory):
    from farfield.orchestrator.launch import run_trial_on_ray

    workspace = tmp_path_factory.mktemp("workspace")
    config = TrialConfig.model_validate({
        "name": "e2e",
        "workspace": str(workspace),
        "data": {"max_structures": MAX_STRUCTURES},
        "model": {"channels": 8, "layers": 2, "cutoff": 4.5},
        "training": {"epochs": 3, "batch_size": 8, "lr": 0.003},
        "tracking": {"experiment": "e2e"},
    })
    result = run_trial_on_ray(config, progress=False)
    return config, result


def test_run_has_metrics_tags_params_and_curves(finished_trial):
    config, result = finished_trial
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    for side in SIDES:
        for metric in METRICS:
            assert f"{side}/{metric}" in run.data.metrics, f"missing metric {side}/{metric}"
    for side in SIDES:
        assert run.data.metrics[f"{side}/f_mae"] > 0
    tags = run.data.tags
    assert tags["backbone"] == "painn" and tags["long_range"] == "none" and tags["split"] == "random"
    assert tags["dataset_hash"].startswith("sha256:") and tags["split_hash"].startswith("sha256:")
    assert "git_commit" in tags
    assert run.data.params["model.channels"] == "8"
    assert run.data.params["training.epochs"] == "3"
    history = client.get_metric_history(result.run_id, "curve/train_loss")
    assert [m.step for m in history] == [0, 1, 2]
    assert result.tracking_uri.startswith("sqlite:///") and str(config.workspace.resolve()) in result.tracking_uri


def test_checkpoint_reloads_and_reproduces_test_metrics(finished_trial, tmp_path):
    config, result = finished_trial
    client = MlflowClient(result.tracking_uri)
    checkpoint = client.download_artifacts(result.run_id, "checkpoint/model.pt", str(tmp_path))
    split_file = client.download_artifacts(result.run_id, "split/split.json", str(tmp_path))
    predictions = pd.read_parquet(client.download_artifacts(result.run_id, "predictions/test_predictions.parquet",
                                                            str(tmp_path)))
    payload = torch.load(checkpoint, weights_only=True)
    assert json.loads(payload["trial_config"])["name"] == "e2e"
    potential, _ = load_checkpoint(checkpoint)

    split = Split(**json.loads(Path(split_file).read_text()))
    store = bundled_store(config.workspace)
    assert split.dataset_hash == store.content_hash
    capped = set(store.index["structure_id"].iloc[:MAX_STRUCTURES])  # the trial saw the index's prefix only
    frames = [f for f in store.read_parents(split.test) if f.info["structure_id"] in capped]
    graphs = build_graphs(frames, potential.cutoff, torch.float32)
    evaluation = Trainer(potential, TrainingConfig(ema_decay=None), progress=False).evaluate(graphs)
    logged = client.get_run(result.run_id).data.metrics
    for metric in ("e_mae", "e_rmse", "f_mae", "f_rmse"):
        assert evaluation.metrics[metric] == pytest.approx(logged[f"test/{metric}"], rel=1e-5)
    assert sorted(predictions["structure_id"]) == sorted(f.info["structure_id"] for f in frames)
    assert set(predictions["parent_id"]) <= set(split.test)


def test_split_is_over_parents(finished_trial):
    config, result = finished_trial
    client = MlflowClient(result.tracking_uri)
    split = client.download_artifacts(result.run_id, "split/split.json")
    data = json.loads(Path(split).read_text())
    sides = [set(data[s]) for s in SIDES]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert all(sides)
