"""On-disk cache of what a report derives from inputs that never change under their key.

A report is written again after every session of a long study; most of it is read from
finished trials (immutable once ``FINISHED``) and from content-hashed datasets and splits. The
slow parts — a run's thousands of per-structure charge tables, a split's clustering — are
kept here under a key that names everything they depend on, so the next report reads one file
instead. Files are written under a temporary name and renamed into place, so two reports on
one workspace never read a half-written file (the second one to finish overwrites the first's
identical result).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["CACHE_VERSION", "cache_key", "cached_array", "cached_table", "write_atomic", "write_if_possible"]

#: Part of every key: bump it when what a cached computation returns changes, so older files are
#: no longer found.
CACHE_VERSION = 1


def cache_key(*parts: object) -> str:
    """A 24-hex-digit name for ``parts`` (their ``repr``s joined, with ``CACHE_VERSION``): equal
    parts, equal names."""
    return hashlib.sha256("\x1f".join(map(repr, (CACHE_VERSION, *parts))).encode()).hexdigest()[:24]


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary name next to ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_if_possible(path: Path, write: Callable[[Path], None]) -> None:
    """``write_atomic``, where the cache cannot be written (a read-only workspace) doing nothing:
    a cache saves time, its absence costs no result."""
    try:
        write_atomic(path, write)
    except OSError:
        pass


def cached_table(path: Path | None, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The table at ``path`` (Parquet) if it is there, else ``compute()``, stored at ``path``
    where it can be; ``path`` None: ``compute()`` alone."""
    if path is not None and path.is_file():
        return pd.read_parquet(path)
    table = compute()
    if path is not None:
        write_if_possible(path, lambda tmp: table.to_parquet(tmp, index=False))
    return table


def cached_array(path: Path | None, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array at ``path`` (``.npy``) if it is there, else ``compute()``, stored at ``path``
    where it can be; ``path`` None: ``compute()`` alone."""
    if path is not None and path.is_file():
        return np.load(path, allow_pickle=False)
    array = compute()
    if path is not None:
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
        write_if_possible(path, save)
    return array
