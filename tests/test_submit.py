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
from farfield.orchestrator.mlflow_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]


#: `ray start` options whose defaults are fixed ports (10001, 52365, ...) that another Ray on a shared
#: machine may hold; each gets a free port of its own.
PORT_OPTIONS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
                "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port",
                "--node-manager-port", "--object-manager-port")
START_TIMEOUT_S = 300  # a loaded 2-core machine can take minutes to start a head with its dashboard


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _start_head(bin_dir: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`ray start --head --block` on free ports; its Jobs address once that answers (else an error with the log)."""
    ports = dict(zip(PORT_OPTIONS, _free_ports(len(PORT_OPTIONS))))
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(Path(bin_dir) / "ray"), "start", "--head", "--block", "--num-cpus=2", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", *(f"{option}={port}" for option, port in ports.items()),
             "--min-worker-port=0", "--max-worker-port=0",  # workers on random ports, not 10002-19999
             f"--temp-dir={tempfile.mkdtemp(prefix='ray')}", "--disable-usage-stats"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    started = time.time()
    while not _jobs_api_up(address):
        if process.poll() is not None or time.time() > started + START_TIMEOUT_S:
            exited = process.poll()
            _stop(process)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            state = f"exited with {exited}" if exited is not None else "still not answering"
            raise RuntimeError(f"ray start --head did not come up: {state} after {time.time() - started:.0f} s "
                               f"(Jobs API {address}); last lines of {log}:\n{tail}")
        time.sleep(0.5)
    return process, address


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()  # --block: ray stops the processes it started
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def running_cluster(isolated_home, monkeypatch, tmp_path):
    """A `ray start --head --block` cluster with token auth and the Jobs API on free ports; stopped with its process.

    The token is made here in the test HOME (`ray get-auth-token --generate`): `ray start --head`
    with RAY_AUTH_MODE=token refuses to start without one, and relying on an earlier test's local
    Ray to have written it made this test fail when it ran alone or first. A start that dies
    because a port was taken between choosing and binding it is tried once more on new ports.
    """
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    subprocess.run([str(Path(bin_dir) / "ray"), "get-auth-token", "--generate"], check=True, capture_output=True,
                   timeout=120)  # HOME is isolated_home: the token lands in <HOME>/.ray/auth_token
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the head and the client use that token
    try:
        process, address = _start_head(bin_dir, tmp_path / "ray-start.log")
    except RuntimeError as err:
        if "in use" not in str(err):
            raise
        process, address = _start_head(bin_dir, tmp_path / "ray-start-2.log")
    yield address
    _stop(process)


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
                          capture_output=True, text=True, timeout=900, env=dict(os.environ), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] in ("PENDING", "RUNNING", "SUCCEEDED") and out["final"] == "SUCCEEDED"
    result = out["result"]

    run = MlflowClient(result["tracking_uri"]).get_run(result["run_id"])
    assert out["run_ids"] == [run.info.run_id] and run.info.status == "FINISHED"
    assert run.data.tags["trial_name"] == "submitted"
    for name in ("test/f_mae", "test/e_mae", "val/f_mae"):
        assert result["metrics"][name] == pytest.approx(run.data.metrics[name], rel=1e-12)
