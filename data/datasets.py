"""Resolve a trial's ``data.dataset`` to a dataset store.

``"bundled"`` is the real CoRE MOF + GFN1-xTB set shipped in ``data/bundled/`` (made by
``farfield data build``, see ``data/bundled/README.md``); it is
imported once into ``<workspace>/datasets/`` (validated like any user file) and reused
while its content is unchanged. Anything else must be a store directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from filelock import FileLock

from farfield.data.readers import read_structures
from farfield.data.store import DatasetStore, write_store

BUNDLED_DIR = Path(__file__).parent / "bundled"
BUNDLED_FILE = BUNDLED_DIR / "coremof-gfn1-eq.extxyz.xz"
BUNDLED_METHOD = "GFN1-xTB (tblite, periodic)"
#: Seconds a trial waits for another process building the bundled store in the same workspace.
BUILD_LOCK_TIMEOUT_S = 600


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def bundled_store(workspace: str | Path) -> DatasetStore:
    """The bundled dataset as a store under ``workspace/datasets`` (built on first use).

    The store is built once per bundled file (about 30 CPU-seconds: reading and validating
    3,272 frames) in the user cache (``$FARFIELD_CACHE`` or ``~/.cache/farfield``) and
    copied into each new workspace; where the cache cannot be written it is built in place.
    """
    if not BUNDLED_FILE.is_file():
        raise FileNotFoundError(f"bundled dataset missing: {BUNDLED_FILE} (reinstall farfield)")
    name = f"bundled-{_file_digest(BUNDLED_FILE)}"
    out = Path(workspace) / "datasets" / name
    if (out / "manifest.json").is_file():
        return DatasetStore.open(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # several trials may start at once on a fresh workspace: one builds the store, the others wait for it
    with FileLock(str(out.parent / f".{out.name}.lock"), timeout=BUILD_LOCK_TIMEOUT_S):
        if (out / "manifest.json").is_file():
            return DatasetStore.open(out)
        cached = _cached_bundled_store(name)
        if cached is None:
            return _build_bundled_store(out)
        partial = out.parent / f".{out.name}.copying"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(cached, partial)
        os.replace(partial, out)
        return DatasetStore.open(out)


def _build_bundled_store(out: Path) -> DatasetStore:
    result = read_structures(BUNDLED_FILE)
    if result.problems:
        raise ValueError(f"bundled dataset is invalid: {result.problems[0]}")
    return write_store(
        result.valid,
        out,
        label_method=BUNDLED_METHOD,
        sources=["bundled:" + BUNDLED_FILE.name],
        provenance={"bundled_file": BUNDLED_FILE.name, "bundled_sha256_16": _file_digest(BUNDLED_FILE)},
        overwrite=True,
    )


def _cached_bundled_store(name: str) -> Path | None:
    """The bundled store ``name`` in the user cache, built there first if needed; ``None``
    where the cache directory cannot be written."""
    from farfield.data.catalogue import default_cache_dir

    cache = default_cache_dir() / "stores"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(cache / f".{name}.lock"), timeout=BUILD_LOCK_TIMEOUT_S)
        lock.acquire()
    except OSError:
        return None
    try:
        store = cache / name
        if not (store / "manifest.json").is_file():
            _build_bundled_store(store)
        return store
    finally:
        lock.release()


def resolve_dataset(spec: str, workspace: str | Path) -> DatasetStore:
    """``"bundled"`` or a store directory → an opened ``DatasetStore``."""
    if spec == "bundled":
        return bundled_store(workspace)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data.dataset: {spec!r} is neither 'bundled' nor an existing store directory "
            f"(make one with `farfield data import FILES --out DIR`)"
        )
    return DatasetStore.open(path)
