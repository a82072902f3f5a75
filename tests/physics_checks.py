"""Reusable physics checks for any energy model ``f(atoms) -> (energy eV, forces eV/Å, stress eV/Å³)``.

Each check raises ``AssertionError`` with the size of the violation; tests/test_physics.py
runs them on every registered backbone and on deliberately broken models to show
that they can fail.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from scipy.spatial.transform import Rotation

Model = Callable[[Atoms], tuple[float, np.ndarray, np.ndarray | None]]


def check_forces_are_energy_gradient(model: Model, atoms: Atoms, h: float = 1e-4, atol: float = 1e-6, n: int = 6):
    """Central finite differences of the energy equal minus the forces (a few coordinates)."""
    _, forces, _ = model(atoms)
    rng = np.random.default_rng(0)
    for _ in range(n):
        i, k = int(rng.integers(len(atoms))), int(rng.integers(3))
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        numeric = -(model(plus)[0] - model(minus)[0]) / (2 * h)
        assert abs(numeric - forces[i, k]) < atol, f"F[{i},{k}]={forces[i, k]:.10g} but -dE/dx={numeric:.10g}"


def check_stress_is_strain_derivative(model: Model, atoms: Atoms, h: float = 1e-5, atol: float = 1e-7):
    """σ_ab = (1/V) ∂E/∂ε_ab for symmetric strains applied to cell and positions."""
    _, _, stress = model(atoms)
    volume = atoms.get_volume()
    for a in range(3):
        for b in range(a, 3):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = h if a != b else h
            energies = []
            for sign in (1, -1):
                strained = atoms.copy()
                deformation = np.eye(3) + sign * eps
                strained.set_cell(atoms.cell.array @ deformation, scale_atoms=False)
                strained.positions = atoms.positions @ deformation
                energies.append(model(strained)[0])
            factor = 2.0 if a != b else 1.0  # off-diagonal strain moves both ε_ab and ε_ba
            numeric = (energies[0] - energies[1]) / (2 * h) / volume / factor
            assert abs(numeric - stress[a, b]) < atol, f"σ[{a},{b}]={stress[a, b]:.10g} but (1/V)dE/dε={numeric:.10g}"


def check_rotation(model: Model, atoms: Atoms, atol: float = 1e-8, seed: int = 0):
    """Energy invariant and forces equivariant under a random rotation of positions and cell."""
    energy, forces, _ = model(atoms)
    rot = Rotation.random(random_state=seed).as_matrix()
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rot.T
    rotated.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    energy_r, forces_r, _ = model(rotated)
    assert abs(energy_r - energy) < atol, f"rotation changed E by {energy_r - energy:.3g} eV"
    np.testing.assert_allclose(forces_r, forces @ rot.T, atol=atol, err_msg="forces not equivariant")


def check_translation(model: Model, atoms: Atoms, atol: float = 1e-8):
    energy, forces, _ = model(atoms)
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.21, 2.05])
    energy_t, forces_t, _ = model(moved)
    assert abs(energy_t - energy) < atol, f"translation changed E by {energy_t - energy:.3g} eV"
    np.testing.assert_allclose(forces_t, forces, atol=atol)


def check_permutation(model: Model, atoms: Atoms, atol: float = 1e-8, seed: int = 0):
    energy, forces, _ = model(atoms)
    order = np.random.default_rng(seed).permutation(len(atoms))
    energy_p, forces_p, _ = model(atoms[order])
    assert abs(energy_p - energy) < atol, f"permutation changed E by {energy_p - energy:.3g} eV"
    np.testing.assert_allclose(forces_p, forces[order], atol=atol)


def check_wrapping(model: Model, atoms: Atoms, atol: float = 1e-8):
    """Moving atoms by whole lattice vectors (another periodic image) changes nothing."""
    energy, forces, _ = model(atoms)
    shifted = atoms.copy()
    shifts = np.random.default_rng(1).integers(-2, 3, size=(len(atoms), 3)) * atoms.pbc
    shifted.positions += shifts @ atoms.cell.array
    energy_w, forces_w, _ = model(shifted)
    assert abs(energy_w - energy) < atol, f"image choice changed E by {energy_w - energy:.3g} eV"
    np.testing.assert_allclose(forces_w, forces, atol=atol)


def check_supercell(model: Model, atoms: Atoms, repeat=(2, 1, 1), rtol: float = 1e-9):
    """E(supercell) = (number of copies) × E(cell)."""
    energy = model(atoms)[0]
    copies = int(np.prod(repeat))
    energy_super = model(atoms.repeat(repeat))[0]
    assert abs(energy_super - copies * energy) <= rtol * abs(copies * energy) + 1e-9, (
        f"E(supercell {repeat}) = {energy_super:.10g} but {copies} × E(cell) = {copies * energy:.10g}"
    )
