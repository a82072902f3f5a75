"""Programmatic submission of trials and sweeps to a running Ray cluster, through Ray Jobs.

    from farfield.orchestrator import load_trial_config, submit_trial
    handle = submit_trial(load_trial_config("configs/quickstart-trial.yaml"), address="http://127.0.0.1:8265")
    handle.status()          # "PENDING" / "RUNNING" / "SUCCEEDED" / "FAILED" / "STOPPED"
    result = handle.result() # waits; {"run_ids": [...], "metrics": {...}, "tracking_uri": ...}

A submission is exactly the shell command ``ray job submit --working-dir DIR --
farfield train trial.json`` (or ``farfield sweep sweep.json``): the validated config is
written to a fresh folder uploaded as the job's working directory, the job's driver
runs on the cluster and prints one ``FARFIELD_RESULT {json}`` line that the handle
reads back from the job logs — so it works the same against a local or a remote
cluster. Paths inside the config are read *on the cluster*: give ``workspace`` (and
dataset/split paths) as absolute paths on the cluster's shared storage.

``address``: the cluster's dashboard/Jobs address (``http://HOST:8265``); None uses
``RAY_ADDRESS`` or a cluster running on this machine.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.sweep.config import SweepConfig

RESULT_PREFIX = "FARFIELD_RESULT "
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


def result_line(data: dict) -> str:
    """The one log line a submitted job ends with; ``SubmissionHandle.result`` parses it."""
    return RESULT_PREFIX + json.dumps(data, default=str)


def trial_result_data(result) -> dict:
    """The JSON-able part of a ``TrialResult`` for ``result_line``."""
    return {"kind": "trial", "run_id": result.run_id, "run_ids": [result.run_id], "tracking_uri": result.tracking_uri,
            "experiment_id": result.experiment_id, "metrics": result.metrics, "best_epoch": result.best_epoch}


@dataclass
class SubmissionHandle:
    """A submitted trial or sweep: ``status()``, ``wait()``, ``result()``, ``run_ids``, ``logs()``, ``stop()``."""

    job_id: str
    kind: str
    client: JobSubmissionClient = field(repr=False)
    _result: dict | None = field(default=None, repr=False)

    def status(self) -> str:
        return str(self.client.get_job_status(self.job_id).value)

    def logs(self) -> str:
        return self.client.get_job_logs(self.job_id)

    def stop(self) -> bool:
        return self.client.stop_job(self.job_id)

    def wait(self, timeout_s: float | None = None, poll_s: float = 2.0) -> str:
        """Block until the job ends (or ``timeout_s`` passes: ``TimeoutError``); returns the final status."""
        deadline = None if timeout_s is None else time.time() + timeout_s
        while (status := self.client.get_job_status(self.job_id)) not in TERMINAL:
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"job {self.job_id} still {status.value} after {timeout_s:.0f} s")
            time.sleep(poll_s)
        return str(status.value)

    def result(self, timeout_s: float | None = None) -> dict:
        """Wait, then the job's result: ``run_ids``, ``tracking_uri`` and for a trial ``metrics``.

        Raises ``RuntimeError`` with the end of the job's log if the job did not succeed.
        """
        if self._result is not None:
            return self._result
        status = self.wait(timeout_s)
        logs = self.logs()
        lines = [line for line in logs.splitlines() if line.startswith(RESULT_PREFIX)]
        if status != JobStatus.SUCCEEDED.value or not lines:
            tail = "\n".join(logs.splitlines()[-20:])
            raise RuntimeError(f"{self.kind} job {self.job_id} ended {status} without a result; log tail:\n{tail}")
        self._result = json.loads(lines[-1][len(RESULT_PREFIX):])
        return self._result

    @property
    def run_ids(self) -> list[str]:
        """MLflow run id(s) of the finished job (one for a trial, one per trial for a sweep)."""
        return list(self.result()["run_ids"])


def _client(address: str | None) -> JobSubmissionClient:
    return JobSubmissionClient(address)


def _submit(kind: str, command: str, config_data: dict, address: str | None, job_name: str,
            env_vars: dict[str, str] | None) -> SubmissionHandle:
    client = _client(address)
    folder = Path(tempfile.mkdtemp(prefix=f"farfield-{kind}-"))
    (folder / f"{kind}.json").write_text(json.dumps(config_data, indent=1))
    runtime_env: dict = {"working_dir": str(folder)}
    if env_vars:
        runtime_env["env_vars"] = dict(env_vars)
    job_id = client.submit_job(
        entrypoint=f"farfield {command} {kind}.json",
        runtime_env=runtime_env,
        metadata={"farfield_kind": kind, "farfield_name": job_name},
    )
    return SubmissionHandle(job_id, kind, client)


def submit_trial(config: TrialConfig, address: str | None = None,
                 env_vars: dict[str, str] | None = None) -> SubmissionHandle:
    """Submit one trial (``farfield train``) as a Ray job; returns its handle at once."""
    config = TrialConfig.model_validate(config.model_dump())
    return _submit("trial", "train", config.model_dump(mode="json"), address, config.name, env_vars)


def submit_sweep(config: SweepConfig, address: str | None = None,
                 env_vars: dict[str, str] | None = None) -> SubmissionHandle:
    """Submit a sweep (``farfield sweep``) as a Ray job; returns its handle at once."""
    config = SweepConfig.model_validate(config.model_dump())
    return _submit("sweep", "sweep", config.model_dump(mode="json"), address, config.name, env_vars)
