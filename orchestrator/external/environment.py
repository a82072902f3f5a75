"""The external trainer's own Python environment, made by Ray's ``runtime_env``, and running a script in it.

``runtime_env(external, workspace)`` turns the exact pins of ``model.external`` into Ray's
``pip`` (or ``uv``) field; Ray builds that environment once per node and pin set (a clone of
the interpreter's environment with the pins installed over it, so mace-torch's e3nn 0.4.4
shadows farfield's) and starts workers in it. ``run_script`` runs one farfield-shipped script
with that environment's Python as a Ray task on this node: the task's body (``script_task``)
uses only the standard library and is sent by value, so the environment never imports farfield.

torch is pinned like the project's (``model.external.torch``, default the running one).
Installing torch again is then a no-op where the environment inherits it; elsewhere pip takes
the wheel from the indexes it is configured with, plus ``model.external.index_urls`` (e.g.
``https://download.pytorch.org/whl/cpu`` for CPU wheels where that index is reachable).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from farfield.models.external import ExternalConfig, LesSource
from farfield.orchestrator.external import script_task

#: Seconds Ray may take to build an environment (pip resolves and installs; several minutes).
SETUP_TIMEOUT_S = 3600


def les_requirement(source: LesSource, workspace: Path) -> str:
    """The pip requirement of MACELES's ``les`` package at ``source.commit``.

    A local clone or mirror (``source.repository`` is an existing path) is exported at the
    commit into ``<workspace>/external/sources/les-<commit>`` and installed from there; a URL
    is installed by pip from git."""
    local = Path(source.repository).expanduser()
    if not local.exists():
        return f"les @ git+{source.repository}@{source.commit}"
    target = Path(workspace).resolve() / "external" / "sources" / f"les-{source.commit[:12]}"
    if not (target / "setup.py").is_file():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(local), "archive", source.commit], capture_output=True)
        if archive.returncode != 0:
            raise ValueError(f"model.external.les: cannot export commit {source.commit} of {local}: "
                             f"{archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return f"les @ {target.as_uri()}"


def requirements(external: ExternalConfig, workspace: Path) -> list[str]:
    """Every requirement the environment installs, each pinned (torch first)."""
    pins = external.pinned_requirements()
    if external.les is not None:
        pins.append(les_requirement(external.les, workspace))
    return pins


def runtime_env(external: ExternalConfig, workspace: Path) -> dict:
    """Ray's ``runtime_env`` of the trainer's environment (``pip`` or ``uv`` by ``external.installer``)."""
    options = [part for url in external.index_urls for part in ("--extra-index-url", url)]
    packages = requirements(external, workspace)
    if external.installer == "uv":
        field = {"uv": {"packages": packages, "uv_pip_install_options": options}}
    else:  # pip's cache kept: a new Ray session rebuilds the environment, from cached wheels
        field = {"pip": {"packages": packages, "pip_check": False,
                         "pip_install_options": ["--disable-pip-version-check", *options]}}
    return {**field, "config": {"setup_timeout_seconds": SETUP_TIMEOUT_S}}


@dataclass
class ScriptRun:
    """What running a script in the environment gave: exit status, that environment's Python, log tail."""

    returncode: int
    python: str
    log_tail: str


def run_script(env: dict, script: Path, arguments: list[str], log_path: Path,
               environment: dict[str, str] | None = None) -> ScriptRun:
    """Run ``python script arguments...`` with the Python of ``env`` on this node; output to ``log_path``.

    Starts a local Ray if none is running. The task asks for no CPU: it runs inside a trial
    that holds the CPUs (and GPUs; pass their ``CUDA_VISIBLE_DEVICES`` in ``environment``).
    Building the environment the first time on a node takes minutes; a failed build raises
    Ray's ``RuntimeEnvSetupError`` with pip's message.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from farfield.data.ray_runtime import start_ray

    start_ray()
    ray.cloudpickle.register_pickle_by_value(script_task)  # the environment need not import farfield
    node = ray.get_runtime_context().get_node_id()
    task = ray.remote(num_cpus=0, max_retries=0, runtime_env=env,
                      scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))(script_task.run)
    returncode, python, tail = ray.get(task.remote(str(script), arguments, str(log_path), environment or {}))
    return ScriptRun(returncode, python, tail)
