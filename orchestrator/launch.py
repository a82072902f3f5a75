"""Run trials as Ray tasks, on an in-process local Ray or on a running cluster.

``address=None`` starts a local Ray inside this process (the embedded default);
``"auto"`` or ``ray://...`` connects to a running cluster (or set ``RAY_ADDRESS``).
Tasks receive the validated config as JSON-able data and build everything inside the
worker.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ray

from farfield.data.ray_runtime import start_ray
from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.tracking import ensure_experiment
from farfield.orchestrator.trial import run_trial
from farfield.orchestrator.trial_logging import TrialResult
from farfield.orchestrator.trial_pipeline import prepare_graph_cache

log = logging.getLogger(__name__)


def absolute_paths(config: TrialConfig) -> TrialConfig:
    """Copy of ``config`` whose workspace, dataset and split paths are absolute (workers may run elsewhere)."""
    update = {"workspace": Path(config.workspace).resolve()}
    data, split = config.data, config.split
    if data.dataset != "bundled":
        data = data.model_copy(update={"dataset": str(Path(data.dataset).expanduser().resolve())})
    if split.file is not None:
        split = split.model_copy(update={"file": Path(split.file).resolve()})
    return config.model_copy(update={**update, "data": data, "split": split})


def _trial_task(config_data: dict, progress: bool) -> TrialResult:
    return run_trial(TrialConfig.model_validate(config_data), progress=progress)


def run_trial_on_ray(config: TrialConfig, address: str | None = None, progress: bool = True) -> TrialResult:
    """Run one trial as a Ray task and wait for its result.

    The MLflow experiment is created here on the driver first, so concurrent trials
    never race to create it.
    """
    config = absolute_paths(config)
    ensure_experiment(config.tracking, config.workspace)
    start_ray(address)
    try:  # graphs on Ray here (one task per missing shard); the trial then only reads the cache
        prepare_graph_cache(config, progress=progress)
    except Exception as err:  # noqa: BLE001 - the trial reports dataset problems in its own MLflow run
        log.warning("could not precompute graphs on the driver (%s: %s); the trial will build them",
                    type(err).__name__, err)
    task = ray.remote(num_cpus=config.resources.num_cpus, num_gpus=config.resources.num_gpus, max_retries=0)(
        _trial_task
    )
    return ray.get(task.remote(config.model_dump(mode="json"), progress))
