"""Workers of the local Ray that farfield starts run at normal priority, not Ray's nice 15
(at nice 15 a trial or a labelling worker starves beside any other process), and with Ray's
worker-side INFO lines that precede farfield's code (a restored trial's "Restored on ...") off."""

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


LOG_SCRIPT = """
import logging, ray
from farfield.data.ray_runtime import WORKER_QUIET_LOGGERS, ray_running, start_ray
@ray.remote
def info_enabled():
    return all(logging.getLogger(name).isEnabledFor(logging.INFO) for name in WORKER_QUIET_LOGGERS)
with ray_running(1, env_vars={"FARFIELD_PROBE": "1"}):
    print("BLOCK", ray.get(info_enabled.remote()))
start_ray(num_cpus=1)
print("DRIVER", ray.get(info_enabled.remote()))
ray.shutdown()
"""


def _worker_info_lines(env: dict) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", LOG_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    answers = dict(line.split() for line in done.stdout.splitlines() if line.startswith(("BLOCK ", "DRIVER ")))
    assert len(answers) == 2, f"no answer from the workers (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return answers


def test_ray_worker_info_lines_are_off_unless_farfield_ray_log_level_lets_them_through():
    env = {k: v for k, v in os.environ.items() if k not in ("FARFIELD_RAY_LOG_LEVEL", "RAY_ADDRESS")}
    assert _worker_info_lines(env) == {"BLOCK": "False", "DRIVER": "False"}
    assert _worker_info_lines({**env, "FARFIELD_RAY_LOG_LEVEL": "INFO"}) == {"BLOCK": "True", "DRIVER": "True"}
