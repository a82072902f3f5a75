"""Start or join Ray for one block of data work; shared by the data-side Ray pipelines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import logging
import os

__all__ = ["RAY_LOG_LEVEL", "local_ray_priority", "ray_running"]

#: Level of Ray's own driver-side log (its start banner, the token-authentication notice):
#: farfield shows its own progress instead. ``FARFIELD_RAY_LOG_LEVEL=INFO`` brings them back.
RAY_LOG_LEVEL = getattr(logging, os.environ.get("FARFIELD_RAY_LOG_LEVEL", "ERROR").upper(), logging.ERROR)


def local_ray_priority() -> None:
    """Workers of a Ray that farfield starts run at normal priority (``RAY_worker_niceness=0``).

    Ray starts its workers at nice 15 to keep its own services responsive; on one machine the
    workers *are* the job (trials, labelling), and at nice 15 anything else running starves
    them (measured: a sweep trial fell from 27 s to ~100 s per epoch beside one other
    process). A value the user set is kept (``RAY_worker_niceness=15`` restores Ray's default).
    Call before ``ray.init`` starts a local instance; a running cluster keeps its own setting.
    """
    os.environ.setdefault("RAY_worker_niceness", "0")


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
        runtime_env = {"env_vars": env_vars} if env_vars else None
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
