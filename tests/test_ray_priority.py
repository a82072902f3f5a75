"""Workers of the local Ray that farfield starts run at normal priority, not Ray's nice 15
(at nice 15 a trial or a labelling worker starves beside any other process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

SCRIPT = """
import os, ray
from farfield.data.ray_runtime import start_ray
start_ray(num_cpus=1)
@ray.remote
def niceness():
    return os.nice(0)
print("NICE", ray.get(niceness.remote()))
ray.shutdown()
"""


def _worker_niceness(env: dict) -> int:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("NICE ")]
    assert lines, f"no answer from the worker (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return int(lines[-1].split()[1])


def test_local_ray_workers_run_at_the_drivers_priority_unless_the_user_says_otherwise():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_worker_niceness", "RAY_ADDRESS")}
    base = os.nice(0)
    assert _worker_niceness(env) == base
    assert _worker_niceness({**env, "RAY_worker_niceness": "15"}) == min(19, base + 15)
