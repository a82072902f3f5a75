"""Real trial outputs for the analysis tests: four tiny trials of a 'sweep' on the bundled MOFs.

The trials run in this process (``run_trial``, no Ray) into a temporary workspace with a
SQLite MLflow store, tagged with a sweep id; a summary run tagged like the one
``orchestrator/sweep/summary.py`` makes receives the report. The report is built once per
test session (memoised here, because both ``test_analysis_report.py`` and
``test_report_browser.py`` use it):

    painn       random   seed 0  1 layer
    painn       random   seed 1  2 layers
    painn       size     seed 0  1 layer
    painn+les   size     seed 0  1 layer
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SWEEP_ID = "analysis-test-0001"
MAX_STRUCTURES = 1000  # a prefix of the bundled index (data.max_structures): four trials in a few minutes
EXPERIMENT = "analysis-test"
TRIALS = (
    {"name": "sr-random-s0", "seed": 0, "split": "random", "layers": 1, "long_range": []},
    {"name": "sr-random-s1", "seed": 1, "split": "random", "layers": 2, "long_range": []},
    {"name": "sr-size", "seed": 0, "split": "size", "layers": 1, "long_range": []},
    {"name": "les-size", "seed": 0, "split": "size", "layers": 1, "long_range": ["les"]},
)


@dataclass
class RealReport:
    workspace: Path
    tracking_uri: str
    out: Path
    report: object  # farfield.analysis.report.Report
    paths: dict
    summary_run_id: str
    logged_run_id: str
    results: list  # TrialResult per entry of TRIALS


_CACHE: dict[str, RealReport] = {}


def trial_config(workspace: Path, spec: dict):
    from farfield.orchestrator.config import TrialConfig

    return TrialConfig.model_validate({
        "name": spec["name"], "seed": spec["seed"], "workspace": str(workspace),
        "data": {"max_structures": MAX_STRUCTURES},
        "split": {"strategy": spec["split"], "seed": 0},
        "model": {"channels": 8, "layers": spec["layers"], "cutoff": 4.0, "n_radial": 4,
                  "long_range": spec["long_range"]},
        "training": {"epochs": 2, "batch_size": 8, "lr": 0.002, "patience": None},
        "tracking": {"experiment": EXPERIMENT},
        "resources": {"device": "cpu", "torch_threads": 1},
    })


def real_report(tmp_path_factory) -> RealReport:
    """Run the trials, make the summary run, build and log the report (once per session)."""
    if "report" in _CACHE:
        return _CACHE["report"]
    from farfield.analysis.report import ReportOptions, make_report
    from farfield.orchestrator.trial import run_trial
    from mlflow.tracking import MlflowClient

    workspace = tmp_path_factory.mktemp("analysis-workspace")
    results = [run_trial(trial_config(workspace, spec), progress=False,
                         tags={"sweep_id": SWEEP_ID, "sweep_name": "analysis-test"}) for spec in TRIALS]
    uri = results[0].tracking_uri
    client = MlflowClient(uri)
    summary = client.create_run(results[0].experiment_id, run_name="analysis-test (sweep summary)",
                                tags={"sweep_id": SWEEP_ID, "sweep_summary": "true", "sweep_name": "analysis-test"})
    client.set_terminated(summary.info.run_id, status="FINISHED")
    out = workspace / "report"
    options = ReportOptions(sweep_id=SWEEP_ID, md_trials="best", md_steps=8, md_structures=1,
                            yardstick_cache=str(workspace / "cache" / "yardstick"))
    report, paths, logged = make_report(uri, EXPERIMENT, out, options)
    _CACHE["report"] = RealReport(workspace, uri, out, report, paths, summary.info.run_id, logged, results)
    return _CACHE["report"]
