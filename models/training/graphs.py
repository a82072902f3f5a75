"""Structures (or their cached arrays) → graphs, and seeded mini-batches of them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from tqdm.auto import tqdm

from farfield.data.graphs import GraphCache
from farfield.models.blocks import MAX_ATOMIC_NUMBER
from farfield.models.graph import AtomicGraph, collate


def build_graphs(
    frames: Sequence[Atoms], cutoff: float, dtype: torch.dtype, progress: bool = False, desc: str = "graphs"
) -> list[AtomicGraph]:
    """One ``AtomicGraph`` per frame (neighbour lists at ``cutoff`` Å)."""
    it = tqdm(frames, desc=desc, unit="struct", disable=not progress, leave=False)
    return [AtomicGraph.from_atoms(atoms, cutoff, dtype=dtype) for atoms in it]


def graphs_from_cache(cache: GraphCache, sets: Mapping[str, Sequence[str]], dtype: torch.dtype,
                      progress: bool = False) -> dict[str, list[AtomicGraph]]:
    """``{name: graphs of those structure ids, in the order given}`` from ``cache``'s arrays
    (the same graphs :func:`build_graphs` makes from the store's frames, bit for bit)."""
    out: dict[str, list] = {name: [None] * len(ids) for name, ids in sets.items()}
    for name, position, arrays in cache.iter_arrays(sets, progress):
        out[name][position] = AtomicGraph.from_arrays(arrays, cache.cutoff, dtype)
    return out


def iterate_batches(
    graphs: Sequence[AtomicGraph], batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[AtomicGraph]:
    """Yield collated batches of ``batch_size`` graphs (the last may be smaller).

    Shuffling uses ``generator`` so epochs are reproducible for a seed.
    """
    order = torch.randperm(len(graphs), generator=generator).tolist() if shuffle else range(len(graphs))
    order = list(order)
    for start in range(0, len(order), batch_size):
        yield collate([graphs[k] for k in order[start : start + batch_size]])


def element_count_matrix(graphs: Sequence[AtomicGraph]) -> np.ndarray:
    """(n_structures, MAX_ATOMIC_NUMBER + 1): atoms of each element per structure."""
    counts = np.zeros((len(graphs), MAX_ATOMIC_NUMBER + 1))
    for row, graph in enumerate(graphs):
        np.add.at(counts[row], graph.numbers.numpy(), 1)
    return counts


def force_rms(graphs: Sequence[AtomicGraph]) -> float:
    """RMS of all reference force components, eV/Å (1.0 if there are none)."""
    forces = torch.cat([g.forces.reshape(-1) for g in graphs])
    forces = forces[torch.isfinite(forces)]
    return float(forces.pow(2).mean().sqrt()) if forces.numel() else 1.0
