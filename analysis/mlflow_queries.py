"""The thin MLflow layer of the analysis: find trial runs, fetch artifacts, log a report.

This is the only module of ``farfield.analysis`` that imports MLflow (DESIGN.md puts
"MLflow queries" under ``analysis/``; STYLE.md's "only orchestrator imports MLflow" is
kept for models and data, see docs/analysis.md). Everything else in the analysis works
on the plain records and pandas tables this module returns.

Trial runs are the runs that carry a ``backbone`` tag (``orchestrator/trial.py``); the
sweep's summary run carries ``sweep_summary = "true"`` and ``sweep_id``
(``orchestrator/sweep/summary.py``); every name is in ``run_layout``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.tracking import MlflowClient

from farfield.analysis import run_layout

__all__ = ["TrialRun", "artifact_location", "download_artifact", "find_trial_runs", "log_report",
           "report_target_run", "resolve_sweep_id"]

SUMMARY_TAG = run_layout.TAG_SWEEP_SUMMARY
SWEEP_TAG = run_layout.TAG_SWEEP_ID
REPORT_TAG = run_layout.TAG_REPORT
TRUE = run_layout.TRUE
MAX_RUNS = 50_000


@dataclass
class TrialRun:
    """One finished trial's MLflow record (values as strings/floats, exactly as logged)."""

    run_id: str
    run_name: str
    status: str
    experiment_id: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifact_uri: str = ""


def _experiment_id(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"experiment {experiment!r} not found on the tracking server; "
                         f"known experiments: {', '.join(names) or '(none)'}")
    return found.experiment_id


def find_trial_runs(tracking_uri: str, experiment: str, sweep_id: str | None = None,
                    include_unfinished: bool = False) -> list[TrialRun]:
    """Trial runs of ``experiment`` (only those of ``sweep_id`` if given), oldest first.

    Runs without a ``backbone`` tag (summary and report runs) are skipped; so are runs
    not ``FINISHED`` unless ``include_unfinished``.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = _experiment_id(client, experiment)
    query = f"tags.{SWEEP_TAG} = '{sweep_id}'" if sweep_id else ""
    runs = client.search_runs([experiment_id], query, max_results=MAX_RUNS, order_by=["attributes.start_time ASC"])
    records = []
    for run in runs:
        tags = dict(run.data.tags)
        if run_layout.TAG_BACKBONE not in tags or tags.get(SUMMARY_TAG) == TRUE:
            continue
        if run.info.status != "FINISHED" and not include_unfinished:
            continue
        records.append(TrialRun(run.info.run_id, run.info.run_name or run.info.run_id, run.info.status,
                                experiment_id, tags, dict(run.data.params), dict(run.data.metrics),
                                run.info.artifact_uri or ""))
    return records


def download_artifact(tracking_uri: str, run_id: str, artifact_path: str, destination: str | Path,
                      local_dir: Path | None = None) -> Path | None:
    """Download ``artifact_path`` of ``run_id`` into ``destination``; None if the run lacks it.

    ``local_dir``: the run's artifact folder on this machine (``run_layout.local_artifact_dir``):
    the artifact is then read there in place, not downloaded (a folder of thousands of files,
    such as ``charges/``, is one HTTP request per file through a server)."""
    if local_dir is not None:
        path = Path(local_dir) / artifact_path
        return path if path.exists() else None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = str(Path(artifact_path).parent) if "/" in artifact_path else None
    listed = {item.path for item in client.list_artifacts(run_id, parent)}
    if artifact_path not in listed:
        return None
    Path(destination).mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, artifact_path, str(destination)))


def report_target_run(tracking_uri: str, experiment: str, sweep_id: str | None = None) -> tuple[str, bool]:
    """``(run_id, is_summary)``: the sweep summary run to attach a report to.

    With ``sweep_id``: that sweep's summary run (an error if it has none). Without: the
    most recent summary run of the experiment; if the experiment has no sweep (plain
    ``farfield train`` trials), the run tagged ``farfield_report = "true"`` (created once).
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = _experiment_id(client, experiment)
    query = f"tags.{SUMMARY_TAG} = '{TRUE}'" + (f" and tags.{SWEEP_TAG} = '{sweep_id}'" if sweep_id else "")
    summaries = client.search_runs([experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"])
    if summaries:
        return summaries[0].info.run_id, True
    if sweep_id:
        raise ValueError(f"sweep {sweep_id!r} of experiment {experiment!r} has no summary run "
                         f"(tag {SUMMARY_TAG} = '{TRUE}'); did the sweep finish?")
    previous = client.search_runs([experiment_id], f"tags.{REPORT_TAG} = '{TRUE}'", max_results=1,
                                  order_by=["attributes.start_time DESC"])
    if previous:
        return previous[0].info.run_id, False
    run = client.create_run(experiment_id, run_name="analysis report", tags={REPORT_TAG: TRUE})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id, False


def log_report(tracking_uri: str, run_id: str, folder: str | Path, artifact_path: str = run_layout.REPORT_DIR) -> None:
    """Log every file under ``folder`` as artifacts of ``run_id`` under ``artifact_path``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"report folder not found: {folder}")
    forget_artifact_repository(run_id)
    MlflowClient(tracking_uri=tracking_uri).log_artifacts(run_id, str(folder), artifact_path)


def forget_artifact_repository(run_id: str) -> None:
    """Drop MLflow's process-wide cache entry of ``run_id``'s artifact repository.

    MLflow keeps one artifact repository per run id for the whole process, bound to the server
    it was first reached through, whatever tracking URI a later client uses. A study that
    resumes a sweep (its own server, stopped at the end) and then reports through another
    server would upload to the dead one (seen: ``farfield study --resume`` of a finished
    sweep failed with "connection refused" on the sweep's old port)."""
    from mlflow.tracking._tracking_service import utils

    cache = getattr(utils, "_artifact_repos_cache", None)
    if cache is not None:
        cache.pop(run_id, None)


def artifact_location(tracking_uri: str, experiment: str) -> str:
    """Artifact root of ``experiment`` (``mlflow-artifacts:/…`` means: read through a server)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    return client.get_experiment(_experiment_id(client, experiment)).artifact_location


def resolve_sweep_id(tracking_uri: str, experiment: str, sweep: str) -> str:
    """``sweep`` as a sweep id, or the most recent sweep id of the sweep named ``sweep``;
    ``"latest"``: the sweep of the experiment's most recent summary run."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = _experiment_id(client, experiment)
    if sweep == "latest":
        runs = client.search_runs([experiment_id], f"tags.{SUMMARY_TAG} = '{TRUE}'", max_results=1,
                                  order_by=["attributes.start_time DESC"])
        if not runs:
            raise ValueError(f"--sweep latest: experiment {experiment!r} has no sweep summary run")
        return runs[0].data.tags[SWEEP_TAG]
    for tag in (SWEEP_TAG, run_layout.TAG_SWEEP_NAME):
        runs = client.search_runs([experiment_id], f"tags.{tag} = '{sweep}'", max_results=1,
                                  order_by=["attributes.start_time DESC"])
        if runs:
            return runs[0].data.tags[SWEEP_TAG]
    known = {r.data.tags.get(SWEEP_TAG) for r in client.search_runs([experiment_id], f"tags.{SUMMARY_TAG} = '{TRUE}'")}
    raise ValueError(f"experiment {experiment!r} has no sweep with id or name {sweep!r}; "
                     f"known sweep ids: {', '.join(sorted(k for k in known if k)) or '(none)'}")
