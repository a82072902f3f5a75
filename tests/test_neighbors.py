"""vesin neighbour lists against ASE's ``neighbor_list`` (an independent implementation)."""

from __future__ import annotations

import ase.build
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from farfield.data.graphs import neighbor_pairs
from farfield.models.graph import AtomicGraph, collate


def _pair_set(i, j, shifts):
    return {(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, shifts)}


def _check_against_ase(atoms, cutoff):
    pairs = neighbor_pairs(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    i, j, shifts = neighbor_list("ijS", atoms, cutoff)
    assert len(pairs.center) == len(i)
    assert _pair_set(pairs.center, pairs.neighbor, pairs.cell_shifts) == _pair_set(i, j, shifts)


@pytest.mark.parametrize("cutoff", [3.0, 5.0])
def test_matches_ase_on_rattled_rocksalt(nacl_cell, cutoff):
    _check_against_ase(nacl_cell, cutoff)


def test_matches_ase_on_triclinic_cell_smaller_than_cutoff():
    atoms = ase.build.bulk("Cu", "fcc", a=3.6)  # 1 atom, primitive cell ~2.5 Å
    atoms.rattle(0.05, seed=3)
    _check_against_ase(atoms, 6.0)  # many images of the atom itself


def test_matches_ase_on_mixed_periodicity():
    slab = ase.build.fcc111("Al", size=(2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=4)
    assert list(slab.pbc) == [True, True, False]
    _check_against_ase(slab, 4.5)


def test_matches_ase_on_molecule(water_dimer):
    water_dimer.pbc = False
    _check_against_ase(water_dimer, 3.5)


def test_edge_vectors_are_image_distances(triclinic_cell):
    graph = AtomicGraph.from_atoms(triclinic_cell, cutoff=5.0)
    _, _, d = neighbor_list("ijd", triclinic_cell, 5.0)
    lengths = graph.edge_vectors().norm(dim=1).numpy()
    np.testing.assert_allclose(np.sort(lengths), np.sort(d), rtol=0, atol=1e-12)


def test_collate_offsets_indices(nacl_cell, water_dimer):
    a = AtomicGraph.from_atoms(nacl_cell, 4.0)
    b = AtomicGraph.from_atoms(water_dimer, 4.0)
    batch = collate([a, b])
    assert batch.n_graphs == 2
    assert batch.edge_index.shape[1] == a.edge_index.shape[1] + b.edge_index.shape[1]
    assert int(batch.edge_index[:, a.edge_index.shape[1]:].min()) == len(nacl_cell)
    assert batch.batch.tolist() == [0] * len(nacl_cell) + [1] * len(water_dimer)
    lengths = batch.edge_vectors().norm(dim=1)
    torch_cat = np.concatenate([a.edge_vectors().norm(dim=1).numpy(), b.edge_vectors().norm(dim=1).numpy()])
    np.testing.assert_allclose(lengths.numpy(), torch_cat, atol=1e-12)


def test_collate_rejects_mixed_cutoffs(nacl_cell):
    with pytest.raises(ValueError, match="different cutoffs"):
        collate([AtomicGraph.from_atoms(nacl_cell, 4.0), AtomicGraph.from_atoms(nacl_cell, 5.0)])
