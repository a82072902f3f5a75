"""A sweep's archive: its finished runs exported to files and imported on another tracking store.

The runs are the four real tiny trials of tests/analysis_runs.py. "Another machine" is a new
workspace with its own SQLite store: the imported runs must be the same record (tags, params,
every metric point, the artifacts the report reads) and give the same report tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.analysis_runs import EXPERIMENT, SWEEP_ID, real_report

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return real_report(tmp_path_factory)


def _store(workspace):
    from farfield.orchestrator.config import TrackingConfig
    from farfield.orchestrator.tracking import ensure_experiment, tracking_uri

    tracking = TrackingConfig(experiment=EXPERIMENT)
    return tracking_uri(tracking, workspace), ensure_experiment(tracking, workspace)


def _same(numbers, others) -> bool:
    """Equal dicts of numbers, NaN equal to NaN (a q MAE without charges is logged as NaN)."""
    return numbers.keys() == others.keys() and all(
        numbers[k] == others[k] or (numbers[k] != numbers[k] and others[k] != others[k]) for k in numbers)


def _trial_runs(uri):
    from farfield.analysis.mlflow_queries import find_trial_runs

    return {run.tags.get("origin_run_id", run.run_id): run for run in find_trial_runs(uri, EXPERIMENT, SWEEP_ID)}


@pytest.fixture(scope="module")
def exported(real, tmp_path_factory):
    from farfield.orchestrator.sweep import archive

    folder = tmp_path_factory.mktemp("archive") / "runs"
    states = tmp_path_factory.mktemp("states")
    (states / "0.0-abc.pt").write_bytes(b"state of an unfinished trial")
    archive.write_sweep(folder, archive.ArchivedSweep(SWEEP_ID, "analysis-test", EXPERIMENT, {"name": "analysis-test"}))
    added = archive.export_runs(real.tracking_uri, real.results[0].experiment_id, SWEEP_ID, folder, states,
                                [real.workspace])
    return folder, states, added


def test_export_writes_every_finished_trial_once_without_checkpoints(real, exported):
    from farfield.orchestrator.sweep import archive

    folder, states, added = exported
    assert sorted(added) == sorted(result.run_id for result in real.results)
    client = MlflowClient(real.tracking_uri)
    for result in real.results:
        record = json.loads((folder / result.run_id / "run.json").read_text())
        run = client.get_run(result.run_id)
        assert record["params"] == run.data.params and record["tags"]["sweep_id"] == SWEEP_ID
        assert _same({key: history[-1][1] for key, history in record["metrics"].items()}, run.data.metrics)
        curve = [m.value for m in client.get_metric_history(result.run_id, "curve/train_loss")]
        assert [value for _, value, _ in record["metrics"]["curve/train_loss"]] == curve and len(curve) == 2
        files = {p.relative_to(folder / result.run_id / "artifacts").as_posix()
                 for p in (folder / result.run_id / "artifacts").rglob("*") if p.is_file()}
        assert {"predictions/test_predictions.parquet", "split/split.json", "config/trial_config.json"} <= files
        assert not any(name.startswith("checkpoint/") for name in files)
    charged = [path for path in folder.glob("*/artifacts/predictions/test_charges.parquet")]
    assert len(charged) == 1  # the LES trial's; the atom facts are kept once, in atoms.parquet
    assert list(pd.read_parquet(charged[0]).columns) == ["structure_id", "atom", "head", "charge"]
    atoms = pd.read_parquet(folder / "atoms.parquet")
    assert list(atoms.columns) == ["structure_id", "atom", "number", "reference_charge"]
    assert not atoms.duplicated(["structure_id", "atom"]).any() and len(atoms) > 0
    assert (folder / "trial_state" / "0.0-abc.pt").read_bytes() == b"state of an unfinished trial"
    # nothing new: a second export adds no run; a state gone (its trial finished) leaves the archive
    (states / "0.0-abc.pt").unlink()
    assert archive.export_runs(real.tracking_uri, real.results[0].experiment_id, SWEEP_ID, folder, states,
                               [real.workspace]) == []
    assert not (folder / "trial_state" / "0.0-abc.pt").exists()
    assert archive.read_sweep(folder).sweep_id == SWEEP_ID


def test_import_on_a_new_store_gives_the_same_runs_and_the_same_report_tables(real, exported, tmp_path):
    from farfield.analysis.loading import load_experiment
    from farfield.orchestrator.sweep import archive

    folder, _, _ = exported
    (folder / "trial_state").mkdir(exist_ok=True)
    (folder / "trial_state" / "1.0-def.pt").write_bytes(b"another state")
    workspace = tmp_path / "elsewhere"
    uri, experiment_id = _store(workspace)
    state_dir = workspace / "sweeps" / "analysis-test" / "trial_state"
    imported, restored = archive.import_runs(folder, uri, experiment_id, state_dir)
    assert len(imported) == len(real.results) and restored == 1
    assert (state_dir / "1.0-def.pt").read_bytes() == b"another state"

    original, copied = _trial_runs(real.tracking_uri), _trial_runs(uri)
    assert set(copied) == set(original)
    client, new_client = MlflowClient(real.tracking_uri), MlflowClient(uri)
    for origin, run in copied.items():
        assert run.run_id != origin and run.status == "FINISHED" and run.run_name == original[origin].run_name
        assert run.params == original[origin].params and _same(run.metrics, original[origin].metrics)
        assert {k: v for k, v in run.tags.items() if not k.startswith("mlflow.") and k != "origin_run_id"} == \
               {k: v for k, v in original[origin].tags.items() if not k.startswith("mlflow.")}
        assert [(m.step, m.value) for m in new_client.get_metric_history(run.run_id, "curve/val_f_mae")] == \
               [(m.step, m.value) for m in client.get_metric_history(origin, "curve/val_f_mae")]

    def tables(tracking_uri, ws):
        data = load_experiment(tracking_uri, EXPERIMENT, ws / "dl", SWEEP_ID, workspace=real.workspace)
        names = dict(zip(data.trials["run_id"], data.trials["run_name"]))
        keyed = [table.assign(run_id=table["run_id"].map(names)) for table in (data.trials, data.structures, data.charges)]
        return [table.sort_values([c for c in ("run_id", "structure_id", "atom", "head") if c in table])
                .reset_index(drop=True) for table in keyed]

    for before, after in zip(tables(real.tracking_uri, tmp_path / "a"), tables(uri, tmp_path / "b")):
        pd.testing.assert_frame_equal(before, after)
    assert len(tables(uri, tmp_path / "c")[2]) > 0  # the LES trial's charges came along

    # the study's provenance names each imported run's id in the archive
    from farfield.orchestrator.study import archive_record

    record = archive_record(uri, EXPERIMENT, SWEEP_ID, folder)
    assert record["runs"] == len(original) and record["origin_run_ids"] == {run.run_id: origin
                                                                            for origin, run in copied.items()}

    # a second import adds nothing; an interrupted one (a RUNNING run) is replaced
    assert archive.import_runs(folder, uri, experiment_id, state_dir) == ([], 0)
    victim = next(iter(copied.values()))
    new_client.set_terminated(victim.run_id, status="RUNNING")
    again, _ = archive.import_runs(folder, uri, experiment_id, state_dir)
    assert again == [victim.tags["origin_run_id"]] and len(_trial_runs(uri)) == len(real.results)
    # exporting the imported runs writes nothing new: they are the archive's runs
    assert archive.export_runs(uri, experiment_id, SWEEP_ID, folder, None, [workspace]) == []


def test_a_new_sweep_refuses_an_output_folder_that_holds_an_archive(exported, tmp_path):
    from farfield.orchestrator.sweep import SweepConfig
    from farfield.orchestrator.sweep.run import resumable_config, run_sweep

    folder, _, _ = exported
    config = SweepConfig.model_validate({"name": "analysis-test", "workspace": str(tmp_path / "ws"),
                                         "tracking": {"experiment": EXPERIMENT}})
    with pytest.raises(ValueError, match=f"holds the sweep {SWEEP_ID}.*--resume analysis-test"):
        run_sweep(config, archive=folder)
    with pytest.raises(ValueError, match="archives the sweep 'analysis-test', not 'other'"):
        run_sweep(config.model_copy(update={"name": "other"}), resume=True, archive=folder)
    # a machine that never ran the sweep: its config comes from the archive, overrides applied
    resumed = resumable_config("analysis-test", None, {"workspace": str(tmp_path / "ws")}, folder)
    assert resumed.name == "analysis-test" and str(resumed.workspace) == str(tmp_path / "ws")
    with pytest.raises(FileNotFoundError, match="holds no sweep archive"):
        resumable_config("analysis-test", None, {"workspace": str(tmp_path / "ws")}, tmp_path / "empty")


def test_charge_tables_split_into_run_columns_and_shared_atom_facts_and_join_back(tmp_path):
    """Two runs' charge tables over overlapping structures: the atom facts are kept once, each run
    keeps its charges, the join gives each table back with equal values; facts that differ between
    runs (another dataset) are refused."""
    import numpy as np

    from farfield.orchestrator.sweep.archive import compact_table, joined_charges, split_charges

    def logged(structures, seed):
        rng = np.random.default_rng(seed)
        rows = [(sid, atom, 6 + atom % 3, "les", float(np.float32(rng.normal())), float(np.float32(0.1 * atom)))
                for sid in structures for atom in range(4)]
        return pd.DataFrame(rows, columns=["structure_id", "atom", "number", "head", "charge", "reference_charge"])

    atoms = tmp_path / "atoms.parquet"
    tables = {"a": logged(["m1", "m2"], 0), "b": logged(["m2", "m3"], 1)}
    for name, table in tables.items():
        table.to_parquet(tmp_path / f"{name}.parquet", index=False)
        split_charges(tmp_path / f"{name}.parquet", atoms)
        compact_table(tmp_path / f"{name}.parquet", narrow=True)
    assert len(pd.read_parquet(atoms)) == 12  # 3 structures x 4 atoms, each once
    for name, table in tables.items():
        joined_charges(tmp_path / f"{name}.parquet", atoms, tmp_path / f"{name}-joined.parquet")
        back = pd.read_parquet(tmp_path / f"{name}-joined.parquet")
        pd.testing.assert_frame_equal(back.astype(table.dtypes.to_dict()), table)
    other = logged(["m3"], 2).assign(reference_charge=9.0)
    other.to_parquet(tmp_path / "c.parquet", index=False)
    with pytest.raises(ValueError, match="reference_charge of 4 atom"):
        split_charges(tmp_path / "c.parquet", atoms)


def test_the_archived_config_leaves_out_this_machines_folders(tmp_path):
    from farfield.orchestrator.sweep import archive

    here = Path.home() / "farfield-run"  # an absolute folder of the machine the sweep ran on
    config = {"name": "s", "workspace": str(here / "workspace"), "sweep": {"storage_path": str(here / "sweeps")},
              "data": {"dataset": "bundled"}}
    archive.write_sweep(tmp_path, archive.ArchivedSweep("s-1", "s", "s", config))
    assert archive.read_sweep(tmp_path).config == {"name": "s", "sweep": {}, "data": {"dataset": "bundled"}}
    relative = {"name": "s", "workspace": "ws", "sweep": {"storage_path": "ws/sweeps"}}
    archive.write_sweep(tmp_path, archive.ArchivedSweep("s-1", "s", "s", relative))
    assert archive.read_sweep(tmp_path).config == relative and config["workspace"] == str(here / "workspace")
