"""Per-structure views of a batch for heads that sum over whole structures (Ewald, EFA, D3).

Atoms of one structure are contiguous in a batch (``collate`` concatenates them), so a
structure is a slice of the atom axis; working per structure keeps batch mates isolated
by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from farfield.models.graph import AtomicGraph


@dataclass
class StructureView:
    """One structure of a batch: ``index`` in the batch, atom ``slice``, ``periodic``
    (all three directions), ``positions`` (n, 3) Å and ``cell`` (3, 3) Å (possibly strained)."""

    index: int
    atoms: slice
    periodic: bool
    positions: torch.Tensor
    cell: torch.Tensor


def iter_structures(graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor, head: str) -> Iterator[StructureView]:
    """Structures of ``graph`` with their coordinates; mixed periodicity is an error."""
    counts = graph.n_atoms.tolist()
    pbc = graph.pbc.cpu()
    start = 0
    for k, count in enumerate(counts):
        flags = pbc[k]
        if bool(flags.any()) and not bool(flags.all()):
            name = graph.structure_ids[k] if k < len(graph.structure_ids) else str(k)
            raise ValueError(
                f"long-range head {head!r}: structure {name!r} has pbc={flags.tolist()}; "
                "heads support fully periodic or non-periodic structures only"
            )
        atoms = slice(start, start + count)
        yield StructureView(k, atoms, bool(flags.all()), positions[atoms], cell[k])
        start += count
