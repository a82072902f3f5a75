"""``farfield study``: the sweep, then its report and a provenance record, in one folder.

The sweep itself is the four real tiny trials of tests/analysis_runs.py (already in MLflow);
``run_sweep`` is replaced by a stand-in that returns that sweep, so the test checks what the
study command adds — the report with verdicts into the chosen folder, provenance.json, the
MLflow log, ``--resume`` — without running Ray here (tests/test_sweep*.py cover the sweep).
"""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.analysis_runs import EXPERIMENT, SWEEP_ID, real_report

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return real_report(tmp_path_factory)


@pytest.fixture
def study_config(real, tmp_path):
    path = tmp_path / "study-test.yaml"
    path.write_text(yaml.safe_dump({
        "name": "analysis-test", "seed": 0, "workspace": str(real.workspace),
        "split": {"strategy": "random", "seed": 0},
        "model": {"backbone": "painn", "channels": 8, "layers": 1, "cutoff": 4.0, "n_radial": 4},
        "training": {"epochs": 2, "batch_size": 8},
        "tracking": {"experiment": EXPERIMENT}, "resources": {"device": "cpu", "torch_threads": 1},
        "sweep": {"grid": {"split": ["random", "size"]}},
    }))
    return path


@pytest.fixture
def sweeps_run(real, monkeypatch):
    """Replace ``run_sweep`` by the finished sweep of tests/analysis_runs.py; records its calls."""
    from farfield.orchestrator.sweep import run as sweeps

    calls = []

    def finished_sweep(config, address=None, resume=False, archive=None):
        calls.append({"name": config.name, "resume": resume, "address": address,
                      "archive": None if archive is None else str(archive)})
        return sweeps.SweepResult(SWEEP_ID, config.name, "unused", real.tracking_uri, real.results[0].experiment_id,
                                  real.summary_run_id, None, wall_s=12.0)

    monkeypatch.setattr(sweeps, "run_sweep", finished_sweep)
    return calls


def test_study_writes_the_report_and_provenance_and_logs_them(real, study_config, sweeps_run, tmp_path):
    from farfield.orchestrator.cli import app

    out = tmp_path / "docs" / "study" / "analysis-test"
    result = CliRunner().invoke(app, ["study", str(study_config), "--out", str(out), "--no-charges"])
    assert result.exit_code == 0, result.output
    assert sweeps_run == [{"name": "analysis-test", "resume": False, "address": None, "archive": str(out / "runs")}]
    for name in ("index.html", "report.md", "claims.json", "findings.json", "provenance.json",
                 "figures/headline.png", "tables/claims.csv", "tables/headline.csv", "tables/yardstick.csv"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "claims.json").read_text())["claims"]) == 5
    assert "the paper's five claims" in result.output and "provenance" in result.output
    assert "archive" in result.output and "0 finished runs, 0 training states" in result.output

    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["command"] == f"farfield study {study_config} --out {out} --no-charges"
    assert provenance["config_sha256"] == hashlib.sha256(study_config.read_bytes()).hexdigest()
    assert provenance["config"]["name"] == "analysis-test" and provenance["config"]["sweep"]["grid"]["split"]
    assert provenance["versions"]["torch"] and provenance["versions"]["mlflow"] and provenance["versions"]["python"]
    assert len(provenance["git"]["commit"]) in (40, len("unknown"))
    trials = real.report.diagnostics.trials
    assert provenance["dataset_hashes"] == sorted(trials["dataset_hash"].unique())
    assert provenance["split_hashes"] == {split: sorted(group["split_hash"].unique())
                                          for split, group in trials.groupby("split")}
    assert provenance["trials"]["run_ids"] == sorted(r.run_id for r in real.results)
    assert provenance["sweep"]["sweep_id"] == SWEEP_ID and provenance["sweep"]["sweep_wall_s"] == 12.0
    assert set(provenance["wall_s"]) == {"sweep", "report", "total"} and provenance["wall_s"]["total"] > 0
    assert provenance["archive"] == {"folder": "runs", "runs": 0, "training_states": 0, "origin_run_ids": {}}  # the stand-in archives nothing

    listed = {a.path for a in MlflowClient(real.tracking_uri).list_artifacts(real.summary_run_id, "report")}
    assert {"report/provenance.json", "report/claims.json", "report/index.html"} <= listed


def test_study_resume_continues_the_sweep_then_reports(real, study_config, sweeps_run, tmp_path):
    from farfield.orchestrator.cli import app

    out = tmp_path / "resumed"
    result = CliRunner().invoke(app, ["study", str(study_config), "--resume", "analysis-test", "--out", str(out),
                                      "--no-charges", "--no-log", "--no-archive"])
    assert result.exit_code == 0, result.output
    assert sweeps_run == [{"name": "analysis-test", "resume": True, "address": None, "archive": None}]
    assert json.loads((out / "provenance.json").read_text())["argv"][:4] == [
        "farfield", "study", str(study_config), "--resume"]


def test_study_errors_name_the_problem(study_config, sweeps_run, tmp_path):
    from farfield.orchestrator.cli import app

    result = CliRunner().invoke(app, ["study"])
    assert result.exit_code == 1 and "give the study's sweep CONFIG file" in result.output
    result = CliRunner().invoke(app, ["study", str(study_config), "--resume", "other-name", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "names the sweep 'analysis-test'" in result.output
    assert sweeps_run == []


def test_study_resume_on_a_machine_that_never_ran_it_takes_the_config_from_the_archive(real, study_config,
                                                                                        sweeps_run, tmp_path):
    from farfield.orchestrator.cli import app
    from farfield.orchestrator.sweep import archive

    out = tmp_path / "published"
    config = yaml.safe_load(study_config.read_text())
    archive.write_sweep(out / "runs", archive.ArchivedSweep("analysis-test-0001", "analysis-test", EXPERIMENT, config))
    result = CliRunner().invoke(app, ["study", "--resume", "analysis-test", "--out", str(out), "--no-charges",
                                      "--no-log", "--workspace", str(real.workspace)])
    assert result.exit_code == 0, result.output
    assert sweeps_run == [{"name": "analysis-test", "resume": True, "address": None, "archive": str(out / "runs")}]
    result = CliRunner().invoke(app, ["study", "--resume", "analysis-test", "--out", str(tmp_path / "nothing"),
                                      "--workspace", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "holds no sweep archive" in result.output
