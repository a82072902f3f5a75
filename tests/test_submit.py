"""`submit_trial` against a running local Ray cluster (started with `ray start --head`): slow.

The handle's result must be the MLflow run the job logged: same run id, same metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.mlflow_server import free_port, is_serving

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def running_cluster(isolated_home, monkeypatch):
    """A `ray start --head --block` cluster with the Jobs API on a free port; stopped with its process."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the client sends the token `ray start` wrote into HOME
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    dashboard = free_port()
    process = subprocess.Popen(
        [str(Path(bin_dir) / "ray"), "start", "--head", "--block", f"--port={free_port()}", "--num-cpus=2",
         "--include-dashboard=true", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
         f"--temp-dir={tempfile.mkdtemp(prefix='ray')}", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 180
    while not is_serving(address, timeout=2) and not _jobs_api_up(address):
        assert process.poll() is None and time.time() < deadline, "ray start --head did not come up"
        time.sleep(1)
    yield address
    process.terminate()  # --block: ray stops the processes it started
    process.wait(timeout=120)


def _jobs_api_up(address: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=2):
            return True
    except OSError as err:
        return "401" in str(err) or "403" in str(err)  # up, asking for the token


SUBMIT = """
import json, sys
from farfield.orchestrator import TrialConfig, submit_trial
handle = submit_trial(TrialConfig.model_validate_json(sys.argv[1]), address=sys.argv[2])
first = handle.status()
result = handle.result(timeout_s=600)
print(json.dumps({"first": first, "final": handle.status(), "run_ids": handle.run_ids, "result": result}))
"""


def test_submit_trial_handle_result_matches_the_mlflow_run(running_cluster, tmp_path):
    config = TrialConfig.model_validate({
        "name": "submitted", "workspace": str(tmp_path / "ws"),
        "data": {"max_structures": 24}, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "model": {"channels": 8, "layers": 1, "cutoff": 4.0, "n_radial": 4},
        "training": {"epochs": 2, "batch_size": 8}, "tracking": {"experiment": "submitted"},
    })
    # A fresh process, as a user's script: Ray reads RAY_AUTH_MODE once per process.
    done = subprocess.run([sys.executable, "-c", SUBMIT, config.model_dump_json(), running_cluster],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] in ("PENDING", "RUNNING", "SUCCEEDED") and out["final"] == "SUCCEEDED"
    result = out["result"]

    run = MlflowClient(result["tracking_uri"]).get_run(result["run_id"])
    assert out["run_ids"] == [run.info.run_id] and run.info.status == "FINISHED"
    assert run.data.tags["trial_name"] == "submitted"
    for name in ("test/f_mae", "test/e_mae", "val/f_mae"):
        assert result["metrics"][name] == pytest.approx(run.data.metrics[name], rel=1e-12)
