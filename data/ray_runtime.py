"""Start or join Ray for one block of data work; shared by the data-side Ray pipelines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import logging
import os

__all__ = ["RAY_LOG_LEVEL", "ray_running"]

#: Level of Ray's own driver-side log (its start banner, the token-authentication notice):
#: farfield shows its own progress instead. ``FARFIELD_RAY_LOG_LEVEL=INFO`` brings them back.
RAY_LOG_LEVEL = getattr(logging, os.environ.get("FARFIELD_RAY_LOG_LEVEL", "ERROR").upper(), logging.ERROR)


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
            ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False,
                     runtime_env=runtime_env, logging_level=RAY_LOG_LEVEL)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
