"""Start or join Ray for one block of data work, and fan a function out over shards.

Shared by the data-side Ray pipelines (graph cache, descriptors, catalogue, ``.aselmdb``
import): :func:`ray_running` starts or joins Ray for a block (:func:`start_ray`: for the rest of
the process, as a trial's or sweep's driver does); :func:`map_shards` runs a pure
function once per payload (a shard, a batch of CIFs, a chunk of rows) in Ray tasks of one
CPU each, or in this process when ``n_workers == 0``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["RAY_LOG_LEVEL", "WORKER_QUIET_LOGGERS", "local_ray_priority", "map_shards", "ray_is_initialized",
           "ray_running", "start_ray", "worker_log_level"]

#: Level of Ray's own driver-side log (its start banner, the token-authentication notice):
#: farfield shows its own progress instead. ``FARFIELD_RAY_LOG_LEVEL=INFO`` brings them back.
RAY_LOG_LEVEL = getattr(logging, os.environ.get("FARFIELD_RAY_LOG_LEVEL", "ERROR").upper(), logging.ERROR)

#: Ray loggers that write INFO lines in worker processes before farfield's code runs there, so only
#: a worker setup hook can quiet them: a Tune trial restored after ``--resume`` logs "Restored on
#: <ip> from checkpoint: Checkpoint(...)" (farfield prints its own "resumed ... at epoch N").
WORKER_QUIET_LOGGERS = ("ray.tune.trainable.trainable",)


def worker_log_level() -> int:
    """Level of ``WORKER_QUIET_LOGGERS`` in workers: WARNING, or ``RAY_LOG_LEVEL`` when that lets INFO through."""
    return RAY_LOG_LEVEL if RAY_LOG_LEVEL <= logging.INFO else logging.WARNING


def _runtime_env(env_vars: dict[str, str] | None = None) -> dict:
    """The job's runtime environment: a worker setup hook that sets ``WORKER_QUIET_LOGGERS`` to
    ``worker_log_level()``, and ``env_vars`` for the workers' start."""
    names, level = WORKER_QUIET_LOGGERS, worker_log_level()

    def quiet_worker_logs() -> None:  # local, so pickled by value: an external trainer's env may lack farfield
        import logging

        for name in names:
            logging.getLogger(name).setLevel(level)

    return {"worker_process_setup_hook": quiet_worker_logs, **({"env_vars": dict(env_vars)} if env_vars else {})}


def local_ray_priority() -> None:
    """Workers of a Ray that farfield starts run at normal priority (``RAY_worker_niceness=0``).

    Ray starts its workers at nice 15 to keep its own services responsive; on one machine the
    workers *are* the job (trials, labelling), and at nice 15 anything else running starves
    them (measured: a sweep trial fell from 27 s to ~100 s per epoch beside one other
    process). A value the user set is kept (``RAY_worker_niceness=15`` restores Ray's default).
    Call before ``ray.init`` starts a local instance; a running cluster keeps its own setting.
    """
    os.environ.setdefault("RAY_worker_niceness", "0")


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray with ``num_cpus`` (default:
    every CPU) for the rest of the process, its workers' output shown; no-op if already up. (A trial's
    or a sweep's driver; a data block that should leave no Ray behind uses :func:`ray_running`.)"""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=RAY_LOG_LEVEL, runtime_env=_runtime_env())
    else:
        local_ray_priority()
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True,
                 logging_level=RAY_LOG_LEVEL, runtime_env=_runtime_env())


@contextlib.contextmanager
def ray_running(n_workers: int, address: str | None = None,
                env_vars: dict[str, str] | None = None) -> Iterator[None]:
    """Connect to (``address``/``RAY_ADDRESS``) or start a local Ray with ``n_workers``
    CPUs for the block; shut it down afterwards only if it was started here.

    ``env_vars`` go into the job's runtime environment (worker processes start with them,
    so they may hold variables that only act at process start, such as ``LD_PRELOAD``).
    """
    import ray

    started = not ray.is_initialized()
    if started:
        runtime_env = _runtime_env(env_vars)
        if address:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env,
                     logging_level=RAY_LOG_LEVEL)
        else:
            local_ray_priority()
            ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False,
                     runtime_env=runtime_env, logging_level=RAY_LOG_LEVEL)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def ray_is_initialized() -> bool:
    """True when this process is connected to Ray; never imports Ray (no import cost when unused)."""
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _apply(function: Callable[[Any], Any], payload: Any) -> Any:
    """Body of a :func:`map_shards` task."""
    return function(payload)


def map_shards(function: Callable[[Any], Any], payloads: Iterable[Any], *, n_workers: int,
               address: str | None = None, max_in_flight: int | None = None, max_retries: int = 0,
               env_vars: dict[str, str] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(position, function(payload))`` for every payload, each as soon as it is done.

    ``function``: a picklable, pure function of one payload (shipped to the object store once).
    ``payloads``: consumed lazily, so a generator of large payloads (CIF texts) is never all
    in memory. ``n_workers``: 0 runs everything here, in order; otherwise one Ray task
    (``num_cpus=1``, ``max_retries``) per payload on the Ray of this process, or one joined or
    started for the block by :func:`ray_running` (``n_workers`` CPUs, ``address``, ``env_vars``).
    ``max_in_flight``: tasks submitted but not collected at once (default ``2 * n_workers``),
    which bounds both the payloads in flight and the results waiting to be collected.
    Results come in completion order; sort by position where order matters.
    """
    if not isinstance(n_workers, int) or n_workers < 0:
        raise ValueError(f"n_workers must be an integer >= 0, got {n_workers!r}")
    if n_workers == 0:
        for position, payload in enumerate(payloads):
            yield position, function(payload)
        return
    limit = max_in_flight if max_in_flight is not None else 2 * n_workers
    if limit < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {limit!r}")
    import ray

    with ray_running(n_workers, address, env_vars):
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_apply)
        shipped = ray.put(function)
        queue = enumerate(payloads)
        running: dict = {}
        exhausted = False
        while running or not exhausted:
            while not exhausted and len(running) < limit:
                item = next(queue, None)
                if item is None:
                    exhausted = True
                    break
                running[task.remote(shipped, item[1])] = item[0]
            if not running:
                break
            done, _ = ray.wait(list(running), num_returns=1)
            yield running.pop(done[0]), ray.get(done[0])
