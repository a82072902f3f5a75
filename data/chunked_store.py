"""Write a dataset store from records already formatted in chunk files, one shard at a time.

A sharded import (:mod:`farfield.data.aselmdb_import`) leaves every valid record as text in
the store's lossless format (:func:`~farfield.data.extxyz.format_frame`) in chunk files,
plus a table saying where each one is. :func:`write_store_from_chunks` cuts the store's
shards out of those files by byte range: no record is parsed again and no process holds more
than one shard. Shards are packed by parent with :func:`~farfield.data.store._pack_shards`,
and the index, manifest and content hash are those of :func:`~farfield.data.store.write_store`,
so both writers give the same store for the same records in the same order.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from farfield.data.records import PARENT_ID
from farfield.data.selection import EXCLUDED_FILE
from farfield.data.store import (
    INDEX,
    INDEX_COLUMNS,
    MANIFEST,
    SCHEMA_VERSION,
    SHARD_DIR,
    DatasetStore,
    StoreError,
    _content_hash,
    _pack_shards,
    _replace_dir,
    _versions,
)

__all__ = ["check_out", "write_store_from_chunks"]


class _Ref:
    """Stands for one record in :func:`~farfield.data.store._pack_shards` (which reads only
    ``info["parent_id"]``): ``position`` is its row in the kept metadata."""

    __slots__ = ("info", "position")

    def __init__(self, parent_id: str, position: int):
        self.info, self.position = {PARENT_ID: parent_id}, position


def _cut_shard(frames_dir: Path, rows: pd.DataFrame) -> bytes:
    """The store shard holding ``rows`` (in order), cut from the chunks' frames files."""
    pieces: dict[int, bytes] = {}
    for chunk, group in rows.groupby("chunk", sort=False):
        with open(frames_dir / f"{chunk}.extxyz", "rb") as handle:
            for position, offset, length in zip(group.index, group["offset"], group["length"]):
                handle.seek(int(offset))
                pieces[position] = handle.read(int(length))
    return b"".join(pieces[position] for position in rows.index)


def write_store_from_chunks(frames_dir: Path, kept: pd.DataFrame, out: Path, *,
                            label_method: str, shard_size: int, sources: list[str],
                            provenance: dict, require_forces: bool, extra_files: dict[str, str],
                            excluded: pd.DataFrame | None) -> DatasetStore:
    """Write the records of ``kept`` as a store at ``out``, one shard in memory at a time.

    ``kept``: one row per record, in store order before packing, with the store's index
    columns, ``has_forces``, and where its text is: ``chunk`` (``frames_dir/<chunk>.extxyz``),
    ``offset`` and ``length`` (bytes). ``excluded``: written as
    :data:`~farfield.data.selection.EXCLUDED_FILE` when given. The manifest has the keys and
    meaning of :func:`~farfield.data.store.write_store`'s; the write is atomic like its."""
    kept = kept.reset_index(drop=True)
    refs = [_Ref(parent, position) for position, parent in enumerate(kept[PARENT_ID])]
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / SHARD_DIR).mkdir(parents=True)
        names, index_parts = [], []
        for number, shard in enumerate(_pack_shards(refs, shard_size)):
            name = f"shard-{number:05d}.extxyz"
            rows = kept.iloc[[ref.position for ref in shard]]
            (tmp / SHARD_DIR / name).write_bytes(_cut_shard(frames_dir, rows))
            part = rows[list(INDEX_COLUMNS)].copy()
            part["shard"], part["frame"] = name, range(len(part))
            names.append(name)
            index_parts.append(part)
        index = pd.concat(index_parts, ignore_index=True)
        index.to_parquet(tmp / INDEX, index=False)
        with_charges, with_forces = int(index["has_charges"].sum()), int(kept["has_forces"].sum())
        manifest = {
            "schema_version": SCHEMA_VERSION, "n_structures": len(index),
            "n_parents": int(index["parent_id"].nunique()), "n_shards": len(names),
            "elements": sorted({e for row in index["elements"] for e in row.split()}),
            "label_method": label_method,
            "has_charges": {"with": with_charges, "without": len(index) - with_charges},
            "forces_required": bool(require_forces),
            "has_forces": {"with": with_forces, "without": len(index) - with_forces},
            "sources": sources, "provenance": provenance, "created_with": _versions(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "content_hash": _content_hash((n, (tmp / SHARD_DIR / n).read_bytes()) for n in names),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for name, text in extra_files.items():
            (tmp / name).write_text(text)
        if excluded is not None:
            excluded.to_parquet(tmp / EXCLUDED_FILE, index=False)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DatasetStore.open(out)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite``, and never overwrite a non-store."""
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) "
                                  f"to replace it")
        if not (out / MANIFEST).is_file() and (not out.is_dir() or any(out.iterdir())):
            raise StoreError(f"refusing to overwrite {out}: it is not a dataset store")
