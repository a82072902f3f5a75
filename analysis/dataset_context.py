"""The dataset a trial was trained on, opened for the analysis and checked by content hash.

A trial run records ``data.dataset`` (``"bundled"`` or a store directory), the workspace
and the store's content hash (tag ``dataset_hash``). The analysis reopens that store to
add per-structure facts (elements, metals) to the predictions and to read reference
forces and charges; a store whose hash differs from the run's is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import atomic_numbers
from farfield.data.chemspace.elements import IS_METAL
from farfield.data.datasets import resolve_dataset
from farfield.data.store import DatasetStore
from farfield.models.blocks.embedding import MAX_ATOMIC_NUMBER

__all__ = ["DatasetContext", "open_dataset"]


class DatasetContext:
    """One opened store: per-structure facts, element-count matrices and a frame cache."""

    def __init__(self, store: DatasetStore):
        self.store = store
        self.index = store.index.reset_index(drop=True)
        self._row_of = {sid: row for row, sid in enumerate(self.index["structure_id"])}
        self._frames: dict[str, Atoms] = {}
        self._counts = self._count_matrix()

    @property
    def content_hash(self) -> str:
        return self.store.content_hash

    def _count_matrix(self) -> np.ndarray:
        counts = np.zeros((len(self.index), MAX_ATOMIC_NUMBER + 1))
        for row, text in enumerate(self.index["element_counts"]):
            for symbol, count in json.loads(text).items():
                counts[row, atomic_numbers[symbol]] = count
        return counts

    def element_counts(self, structure_ids) -> np.ndarray:
        """(n, MAX_ATOMIC_NUMBER + 1): atoms of each element of the given structures."""
        return self._counts[[self._row(sid) for sid in structure_ids]]

    def _row(self, structure_id: str) -> int:
        try:
            return self._row_of[structure_id]
        except KeyError:
            raise ValueError(f"structure {structure_id!r} is not in the dataset store {self.store.path} "
                             f"(hash {self.content_hash})") from None

    def facts(self) -> pd.DataFrame:
        """Per structure: ``structure_id``, ``formula``, ``elements`` and
        ``metals`` (space-separated symbols in Z order)."""
        metals = [" ".join(s for s in str(e).split() if IS_METAL[atomic_numbers[s]]) for e in self.index["elements"]]
        return pd.DataFrame({
            "structure_id": self.index["structure_id"], "formula": self.index["formula"],
            "elements": self.index["elements"].astype(str), "metals": metals,
        })

    def index_of(self, parent_ids, max_structures: int | None = None) -> pd.DataFrame:
        """Index rows of the given parents' structures, in index order (within the first
        ``max_structures``: a trial's ``data.max_structures`` prefix)."""
        index = self.index if max_structures is None else self.index.iloc[:max_structures]
        return index[index["parent_id"].isin(set(parent_ids))]

    def structure_ids_of(self, parent_ids, max_structures: int | None = None) -> list[str]:
        """Structures of the given parents, in index order (within the first ``max_structures``)."""
        return self.index_of(parent_ids, max_structures)["structure_id"].tolist()

    def energies(self, structure_ids) -> np.ndarray:
        """(n,) total reference energies, eV (energy per atom × atoms from the index)."""
        rows = self.index.iloc[[self._row(sid) for sid in structure_ids]]
        return rows["energy_per_atom"].to_numpy(dtype=np.float64) * rows["n_atoms"].to_numpy(dtype=np.float64)

    def frames(self, structure_ids) -> list[Atoms]:
        """The structures (cached after the first read), in the order asked."""
        missing = [sid for sid in structure_ids if sid not in self._frames]
        if missing:
            for atoms in self.store.read(missing):
                self._frames[atoms.info["structure_id"]] = atoms
        return [self._frames[sid] for sid in structure_ids]


_OPEN: dict[tuple[str, str, str], DatasetContext] = {}


def open_dataset(spec: str, workspace: str | Path, expected_hash: str | None,
                 override: str | Path | None = None) -> DatasetContext:
    """Open ``override`` or the run's ``spec`` (``data.dataset``) and check its content hash.

    ``expected_hash``: the run's ``dataset_hash`` tag (None = not checked). Contexts are
    cached per (location, workspace, hash) within the process.
    """
    location = str(override) if override is not None else spec
    key = (location, str(Path(workspace).resolve()), expected_hash or "")
    if key in _OPEN:
        return _OPEN[key]
    try:
        store = resolve_dataset(location, workspace)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}; pass the store the trials were trained on with --dataset PATH") from err
    if expected_hash is not None and store.content_hash != expected_hash:
        raise ValueError(f"dataset {location!r} (workspace {workspace}) has content hash {store.content_hash}, "
                         f"but the run was trained on {expected_hash}; pass the right store with --dataset PATH")
    _OPEN[key] = DatasetContext(store)
    return _OPEN[key]
