"""External trials end to end (slow): tiny mace-torch MACE and MACELES models trained by
``mace_run_train``, and a tiny NequIP model by ``nequip-train``, in their own environments (Ray
``runtime_env``), logged like farfield trials.

Building each environment takes minutes (pip installs mace-torch over a clone of this one).
MACELES needs the ``les`` package (ChengUCB/les, not on PyPI): from GitHub by default, or from
a local clone or mirror named by ``FARFIELD_LES_REPOSITORY`` on machines without GitHub.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from farfield.data.splits import Split
from farfield.orchestrator.config import TrialConfig

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MACE_VERSION = "0.3.16"


def _config(workspace, name: str, model: dict) -> TrialConfig:
    return TrialConfig.model_validate({
        "name": name, "workspace": str(workspace), "data": {"max_structures": 24},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25},
        "model": {"channels": 8, "layers": 1, "l_max": 1, "hidden_l_max": 0, "correlation": 2, "radial_mlp": [8],
                  "cutoff": 4.5, **model},
        "training": {"epochs": 2, "batch_size": 4, "lr": 0.005},
        "tracking": {"experiment": "external"},
    })


@pytest.fixture(scope="module")
def trials(isolated_home, tmp_path_factory):
    import ray

    from farfield.orchestrator.launch import run_trial_on_ray

    workspace = tmp_path_factory.mktemp("workspace")
    les = {"repository": os.environ["FARFIELD_LES_REPOSITORY"]} if "FARFIELD_LES_REPOSITORY" in os.environ else {}
    configs = {
        "farfield": _config(workspace, "painn-les", {"backbone": "painn", "long_range": ["les"]}),
        "mace": _config(workspace, "mace-torch", {"backbone": "external",
                                                   "external": {"trainer": "mace", "version": MACE_VERSION}}),
        "maceles": _config(workspace, "maceles", {"backbone": "external", "external": {
            "trainer": "maceles", "version": MACE_VERSION, **({"les": les} if les else {})}}),
    }
    try:
        results = {name: run_trial_on_ray(config, progress=False) for name, config in configs.items()}
    finally:
        ray.shutdown()
    client = MlflowClient(results["farfield"].tracking_uri)
    return {name: (configs[name], result, client.get_run(result.run_id)) for name, result in results.items()}


def _final_names(run) -> set[str]:
    return {name for name in run.data.metrics if not name.startswith("curve/")}


def test_external_runs_log_the_metric_names_of_a_farfield_trial(trials):
    farfield = _final_names(trials["farfield"][2])
    head_metrics = {name for name in farfield if "q_std" in name or "q_mean_abs" in name or "lr_energy" in name}
    assert {"test/f_mae", "key/f_skill", "n_parameters", "best_epoch", "test/q_std_les"} <= farfield
    assert _final_names(trials["mace"][2]) == farfield - head_metrics
    assert _final_names(trials["maceles"][2]) == farfield  # MACELES's latent charges: q_std_les, lr_energy_share_les
    for name in ("mace", "maceles"):
        run = trials[name][2]
        assert run.info.status == "FINISHED"
        assert run.data.metrics["test/f_mae"] > 0 and run.data.metrics["n_parameters"] > 0
        assert {"curve/val_f_mae", "curve/val_loss"} <= set(run.data.metrics)  # what a sweep optimises


def test_tags_name_the_library_and_the_scheme(trials):
    assert trials["mace"][2].data.tags["backbone"] == "ext-mace"
    assert trials["mace"][2].data.tags["long_range"] == "none"
    assert trials["maceles"][2].data.tags["long_range"] == "les"
    assert f"mace-torch=={MACE_VERSION}" in trials["maceles"][2].data.tags["external_trainer"]
    versions = trials["maceles"][2].data.tags["external_versions"]
    assert '"e3nn": "0.4.4"' in versions and '"les"' in versions  # its own environment, not farfield's e3nn


def test_predictions_parquet_like_a_farfield_trial_on_the_split_test_side(trials, tmp_path):
    client = MlflowClient(trials["farfield"][1].tracking_uri)
    tables = {}
    for name, (_config, result, _run) in trials.items():
        folder = tmp_path / name
        folder.mkdir()
        tables[name] = pd.read_parquet(client.download_artifacts(
            result.run_id, "predictions/test_predictions.parquet", str(folder)))
        split = Split.load(client.download_artifacts(result.run_id, "split/split.json", str(folder)))
        assert set(tables[name]["parent_id"]) <= set(split.test)
    assert list(tables["mace"].columns) == list(tables["farfield"].columns)
    assert list(tables["maceles"].columns) == list(tables["farfield"].columns)
    assert sorted(tables["mace"]["structure_id"]) == sorted(tables["farfield"]["structure_id"])


def test_checkpoint_is_the_librarys_file_and_maceles_charges_are_logged(trials):
    client = MlflowClient(trials["farfield"][1].tracking_uri)
    for name in ("mace", "maceles"):
        run_id = trials[name][1].run_id
        assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/model.model"]
        assert {a.path for a in client.list_artifacts(run_id, "external")} >= {
            "external/trainer.log", "external/trainer_spec.json", "external/runtime_env.json"}
    maceles = trials["maceles"][1].run_id
    charges = pd.read_parquet(client.download_artifacts(maceles, "predictions/test_charges.parquet"))
    tested = pd.read_parquet(client.download_artifacts(maceles, "predictions/test_predictions.parquet"))
    assert set(charges["structure_id"]) == set(tested["structure_id"])  # latent charges of every test structure
    assert len(charges) == tested["n_atoms"].sum()
    assert "predictions/test_charges.parquet" not in {
        a.path for a in client.list_artifacts(trials["mace"][1].run_id, "predictions")}


def test_the_report_loads_external_runs_with_maceles_charges(trials, tmp_path):
    from farfield.analysis.loading import load_experiment

    data = load_experiment(trials["farfield"][1].tracking_uri, "external", tmp_path)
    assert set(data.trials["model"]) == {"painn+les", "ext-mace", "ext-mace+les"}
    maceles = trials["maceles"][1].run_id
    charges = data.charges[data.charges["run_id"] == maceles]
    assert len(charges) == data.structures[data.structures["run_id"] == maceles]["n_atoms"].sum()


@pytest.mark.parametrize("external", [
    {"trainer": "nequip", "version": "0.19.1"},
    {"trainer": "allegro", "version": "0.8.3", "requirements": ["nequip==0.19.1"]},
], ids=["nequip", "allegro"])
def test_a_tiny_nequip_or_allegro_trial_logs_like_the_others(isolated_home, tmp_path, external):
    """NequIP 0.19.1 (and Allegro 0.8.3 on it) through ``nequip-train`` with the generated YAML,
    scored through its ASE calculator."""
    import ray

    from farfield.orchestrator.launch import run_trial_on_ray

    config = _config(tmp_path, external["trainer"], {"backbone": "external", "external": external})
    try:
        result = run_trial_on_ray(config, progress=False)
    finally:
        ray.shutdown()
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["backbone"] == f"ext-{external['trainer']}"
    for side in ("train", "val", "test"):
        assert run.data.metrics[f"{side}/f_mae"] > 0
    assert {"curve/val_f_mae", "key/f_skill", "n_parameters"} <= set(run.data.metrics)
    assert [a.path for a in client.list_artifacts(result.run_id, "checkpoint")] == ["checkpoint/best.ckpt"]
    assert [a.path for a in client.list_artifacts(result.run_id, "predictions")] == [
        "predictions/test_predictions.parquet"]
