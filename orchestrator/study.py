"""A study: one sweep config run end to end — the sweep, then its report with the verdicts on
the paper's claims — into one folder with a provenance record (``farfield study``).

    OUT/index.html, report.md, claims.json, findings.json, tables/, figures/   (``analysis.report``)
    OUT/runs/             the sweep's archive: finished runs and training states, so that
                          ``--resume`` continues the study on another machine
    OUT/provenance.json   the exact command, the resolved config (and the file's SHA-256),
                          package versions, git commit, dataset and split hashes, the sweep's
                          id, summary run and trial run ids, wall times

It reuses ``orchestrator.sweep.run_sweep`` (``resume`` continues an interrupted sweep, whose
finished trials are kept) and ``analysis.report.make_report``; the folder is then logged as
``report/`` artifacts of the sweep's summary run.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from farfield.orchestrator.sweep.config import SweepConfig

__all__ = ["PACKAGES", "StudyResult", "archive_folder", "archive_record", "default_out", "default_out_for",
           "provenance_record", "run_study"]

#: Distributions whose versions the provenance records.
PACKAGES = ("farfield", "torch", "numpy", "scipy", "pandas", "ase", "e3nn", "vesin", "pydantic", "ray", "optuna",
            "mlflow", "matplotlib")


@dataclass
class StudyResult:
    """The sweep's result, the report, its files, the provenance record and the MLflow run it was logged to."""

    sweep: object  # orchestrator.sweep.SweepResult
    report: object  # analysis.report.Report
    paths: dict[str, Path]
    provenance: dict
    report_run_id: str | None


def default_out(config: SweepConfig) -> Path:
    """``docs/study/<sweep name>``: where a published study lives in the repository."""
    return default_out_for(config.name)


def default_out_for(name: str) -> Path:
    """``docs/study/<name>``: ``default_out`` of the sweep ``name``."""
    return Path("docs") / "study" / name


def archive_folder(out: str | Path) -> Path:
    """``<out>/runs``: the study's sweep archive (``orchestrator.sweep.archive``), committed with its report."""
    return Path(out) / "runs"


def archive_record(tracking_uri: str, experiment: str, sweep_id: str, folder: Path) -> dict:
    """The archive's folder, its numbers of runs and training states, and for each reported run imported from an archive
    the id it has there (``origin_run_id``: MLflow gave the imported run a new id)."""
    from farfield.analysis.mlflow_queries import find_trial_runs
    from farfield.orchestrator.sweep import archive

    origins = {run.run_id: run.tags[archive.TAG_ORIGIN_RUN_ID]
               for run in find_trial_runs(tracking_uri, experiment, sweep_id) if archive.TAG_ORIGIN_RUN_ID in run.tags}
    return {"folder": folder.name, "runs": len(archive.archived_run_ids(folder)),
            "training_states": len(list((folder / archive.STATE_DIR).glob("*.pt"))), "origin_run_ids": origins}


def _versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _git_state() -> dict:
    from farfield.orchestrator.tracking import git_commit

    here = Path(__file__).resolve().parent
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return {"commit": git_commit(), "uncommitted_changes": dirty}


def provenance_record(command: list[str], config: SweepConfig, config_file: Path | None, sweep, report,
                      wall: dict[str, float], started: datetime, git: dict | None = None) -> dict:
    """The JSON-able provenance of a study (see the module docstring); ``wall``: seconds per stage.
    ``git``: the repository's state when the study started (default: now) — taken before the
    study writes its report, so a report folder under version control does not count as a change."""
    trials = report.diagnostics.trials
    splits = {split: sorted(group["split_hash"].unique()) for split, group in trials.groupby("split", sort=True)}
    config_text = Path(config_file).read_bytes() if config_file is not None else None
    return {
        "command": " ".join(command), "argv": list(command),
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": {name: round(seconds, 1) for name, seconds in wall.items()},
        "git": git if git is not None else _git_state(), "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpus": _cpus()},
        "config_file": str(config_file) if config_file is not None else None,
        "config_sha256": hashlib.sha256(config_text).hexdigest() if config_text is not None else None,
        "config": config.model_dump(mode="json"),
        "dataset_hashes": sorted(trials["dataset_hash"].unique()), "split_hashes": splits,
        "sweep": {"name": sweep.name, "sweep_id": sweep.sweep_id, "experiment": config.tracking.experiment,
                  "tracking_uri": sweep.tracking_uri, "summary_run_id": sweep.summary_run_id,
                  "sweep_wall_s": round(sweep.wall_s, 1)},
        "trials": {"n_reported": len(trials), "run_ids": sorted(trials["run_id"]),
                   "skipped": [{"run_id": run, "reason": why} for run, why in report.skipped]},
    }


def _cpus() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def run_study(config: SweepConfig, out: str | Path | None = None, resume: bool = False, address: str | None = None,
              with_charges: bool = True, log_to_mlflow: bool = True, command: list[str] | None = None,
              config_file: str | Path | None = None, progress: Callable[[str], None] | None = None,
              archive: bool = True) -> StudyResult:
    """Run (or with ``resume`` continue) the sweep ``config``, report it into ``out`` (default
    ``default_out``), write ``provenance.json`` and log the folder to the summary run.

    ``command``: the command line to record (default ``sys.argv``); ``config_file``: the YAML
    the config came from (its SHA-256 is recorded); ``progress``: called with one line per
    step of the report (``make_report``'s). ``archive``: keep the sweep's finished runs and
    training states in ``out/runs`` (``archive_folder``), from which ``resume`` continues the
    study on a machine that never ran it.
    """
    from farfield.analysis import mlflow_queries
    from farfield.analysis.report import ReportOptions, make_report
    from farfield.orchestrator.sweep import run as sweeps
    from farfield.orchestrator.mlflow_server import report_tracking

    out = Path(out) if out is not None else default_out(config)
    started, t0, git = datetime.now(timezone.utc), time.monotonic(), _git_state()
    result = sweeps.run_sweep(config, address=address, resume=resume,
                              archive=archive_folder(out) if archive else None)
    t_sweep = time.monotonic()
    uri, server = report_tracking(Path(config.workspace), config.tracking.uri, config.tracking.experiment)
    try:
        options = ReportOptions(sweep_id=result.sweep_id, workspace=str(config.workspace), with_charges=with_charges,
                                log_to_mlflow=False)
        report, paths, _ = make_report(uri, config.tracking.experiment, out, options, progress)
        wall = {"sweep": t_sweep - t0, "report": time.monotonic() - t_sweep, "total": time.monotonic() - t0}
        provenance = provenance_record(command or sys.argv, config, Path(config_file) if config_file else None,
                                       result, report, wall, started, git)
        if archive:
            provenance["archive"] = archive_record(uri, config.tracking.experiment, result.sweep_id, archive_folder(out))
        paths["provenance"] = out / "provenance.json"
        paths["provenance"].write_text(json.dumps(provenance, indent=1, default=str) + "\n")
        run_id = None
        if log_to_mlflow:
            run_id, _ = mlflow_queries.report_target_run(uri, config.tracking.experiment, result.sweep_id)
            mlflow_queries.log_report(uri, run_id, out)
    finally:
        if server is not None:
            server.stop()
    return StudyResult(result, report, paths, provenance, run_id)
