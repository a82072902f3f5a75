"""Physical plausibility of a structure record: values no real structure can have.

:func:`farfield.data.validation.validate_atoms` first checks that each field is there,
has the right shape and is finite; these checks then catch what a corrupted or
unit-confused file looks like. Each returns a list of messages (empty when plausible);
each message says what was found, the limit, and the likely cause.

================================  ==============================================  ==================
check                             rejects                                         typical cause
================================  ==============================================  ==================
:func:`check_bonding`             ≥ 2 atoms whose median atom's nearest neighbour  positions in Bohr
                                  is farther than ``BOND_FACTOR`` × the sum of     (× 1.89) or pm
                                  their covalent radii (noble gases only: exempt)
:func:`check_cell_density`        periodic cell with mass density above            positions/cell in
                                  ``MAX_DENSITY``, volume per atom below           nm (× 0.1) or pm
                                  ``MIN_VOLUME_PER_ATOM`` or above
                                  ``MAX_VOLUME_PER_ATOM``
:func:`check_energy_scale`        |energy| above the all-electron bound of its    meV, kJ/mol, or a
                                  atoms, Σ 2 × 0.7687 Z^{7/3} Ha (twice the        corrupted number
                                  Thomas–Fermi total energy of each free atom)
:func:`check_force_scale`         an atom's force above ``MAX_FORCE``              meV/Å, kcal/mol/Å
:func:`check_stress_scale`        a stress component above ``MAX_STRESS``          kBar or GPa
:func:`check_charge_scale`        a reference charge beyond ± ``MAX_CHARGE``       not in e
================================  ==============================================  ==================

Units: Å, eV, eV/Å, eV/Å³, e.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, chemical_symbols, covalent_radii

__all__ = [
    "BOND_FACTOR", "MAX_CHARGE", "MAX_DENSITY", "MAX_FORCE", "MAX_STRESS", "MAX_VOLUME_PER_ATOM",
    "MIN_VOLUME_PER_ATOM", "check_bonding", "check_cell_density", "check_charge_scale", "check_energy_scale",
    "check_force_scale", "check_stress_scale", "energy_bound",
]

#: Largest median over atoms of nearest-neighbour distance / sum of covalent radii (real
#: structures: ≈ 1.0, up to ≈ 1.3 in LiH; noble-gas solids ≈ 1.8, exempt; Bohr read as Å: ≈ 1.9).
BOND_FACTOR = 1.5
#: Largest mass density (g/cm³) of a periodic cell; the densest solid (Os) has 22.6.
MAX_DENSITY = 30.0
#: Smallest volume per atom (Å³) of a periodic cell; diamond has 5.7, Be 8.1.
MIN_VOLUME_PER_ATOM = 1.0
#: Largest volume per atom (Å³) of a periodic cell; a molecule in a 40 Å vacuum box is below it.
MAX_VOLUME_PER_ATOM = 1e5
#: Largest force (eV/Å) on one atom; strained or hot configurations stay below ~50.
MAX_FORCE = 1e3
#: Largest stress component (eV/Å³); 10 eV/Å³ = 1.6 TPa.
MAX_STRESS = 10.0
#: Largest magnitude of a reference partial charge (e); the highest oxidation state is +8.
MAX_CHARGE = 10.0

_HARTREE = 27.211386245988  # eV
_THOMAS_FERMI = 0.7687  # |E_TF(Z)| = 0.7687 Z^{7/3} Ha, the Thomas–Fermi energy of a neutral atom
_AMU_PER_CUBIC_ANGSTROM_IN_G_PER_CM3 = 1.66053906660
_NOBLE_GASES = frozenset({2, 10, 18, 36, 54, 86, 118})
#: First, cheap neighbour search radius (Å) of the bonding check (vesin's cost grows with it).
_QUICK_BOND_SEARCH = 2.0
#: Radius (Å) used where ASE has no covalent radius (its placeholder 0.2 for Z ≥ 97).
_FALLBACK_RADIUS = 1.5


def _radii(numbers: np.ndarray) -> np.ndarray:
    radii = covalent_radii[numbers]
    return np.where(numbers >= 97, _FALLBACK_RADIUS, radii)


def energy_bound(numbers: np.ndarray) -> float:
    """Largest plausible |total energy| (eV) of atoms ``numbers`` (n_atoms,): twice the sum of
    the Thomas–Fermi energies of the free atoms, which bound all-electron total energies
    (Zn: TF 2150 Ha, Hartree–Fock 1778 Ha). Pseudopotential and referenced energies are far smaller."""
    return float(2.0 * _THOMAS_FERMI * _HARTREE * np.sum(np.asarray(numbers, dtype=float) ** (7.0 / 3.0)))


def check_energy_scale(atoms: Atoms, energy: float) -> list[str]:
    """``energy`` (eV, finite) within :func:`energy_bound` of the atoms."""
    bound = energy_bound(atoms.numbers)
    if abs(energy) <= bound:
        return []
    return [
        f"energy {energy:.6g} eV ({energy / len(atoms):.4g} eV/atom) is beyond any total energy of these "
        f"{len(atoms)} atoms (|E| ≤ {bound:.3g} eV even all-electron); are the energies in eV?"
    ]


def check_force_scale(forces: np.ndarray) -> list[str]:
    """``forces`` (n_atoms, 3), eV/Å, finite: no atom's force above ``MAX_FORCE``."""
    norms = np.linalg.norm(forces, axis=1)
    if not len(norms) or norms.max() <= MAX_FORCE:
        return []
    atom = int(np.argmax(norms))
    return [
        f"force on atom {atom} is {norms[atom]:.4g} eV/Å ({int((norms > MAX_FORCE).sum())} atom(s) above "
        f"{MAX_FORCE:g} eV/Å, which no physical structure reaches); are the forces in eV/Å?"
    ]


def check_stress_scale(stress: np.ndarray) -> list[str]:
    """``stress`` (6,) or (3, 3), eV/Å³, finite: every component within ± ``MAX_STRESS``."""
    largest = float(np.abs(stress).max()) if stress.size else 0.0
    if largest <= MAX_STRESS:
        return []
    return [
        f"stress component {largest:.4g} eV/Å^3 ({largest * 160.21766:.3g} GPa) above {MAX_STRESS:g} eV/Å^3; "
        f"is the stress in kBar or GPa instead of eV/Å^3?"
    ]


def check_charge_scale(charges: np.ndarray) -> list[str]:
    """Reference ``charges`` (n_atoms,), e, finite: each within ± ``MAX_CHARGE``."""
    magnitudes = np.abs(charges)
    if not len(magnitudes) or magnitudes.max() <= MAX_CHARGE:
        return []
    atom = int(np.argmax(magnitudes))
    return [f"charge of atom {atom} is {charges[atom]:.4g} e, beyond ±{MAX_CHARGE:g} e; are the charges in e?"]


def check_cell_density(atoms: Atoms) -> list[str]:
    """A fully periodic cell (non-degenerate) with a plausible mass density and volume per atom."""
    if not atoms.pbc.all() or len(atoms) == 0:
        return []
    volume = abs(float(np.linalg.det(atoms.cell.array)))
    per_atom = volume / len(atoms)
    density = float(atomic_masses[atoms.numbers].sum()) * _AMU_PER_CUBIC_ANGSTROM_IN_G_PER_CM3 / volume
    if density > MAX_DENSITY or per_atom < MIN_VOLUME_PER_ATOM:
        return [
            f"cell too small for its atoms: {per_atom:.3g} Å^3/atom, density {density:.3g} g/cm^3 (limits: "
            f"≥ {MIN_VOLUME_PER_ATOM:g} Å^3/atom, ≤ {MAX_DENSITY:g} g/cm^3); are positions and cell in Å (not nm)?"
        ]
    if per_atom > MAX_VOLUME_PER_ATOM:
        return [
            f"cell too large for its atoms: {per_atom:.3g} Å^3/atom, density {density:.3g} g/cm^3 (limit "
            f"{MAX_VOLUME_PER_ATOM:g} Å^3/atom); are positions and cell in Å (not pm or Bohr)?"
        ]
    return []


def check_bonding(atoms: Atoms) -> list[str]:
    """Atoms bonded to their nearest neighbours: for structures of ≥ 2 atoms that are not only
    noble gases, the median over atoms of (nearest-neighbour distance / sum of covalent radii),
    periodic images included, is at most ``BOND_FACTOR``. The median ignores a few dissociated
    atoms and adsorbed noble gases; positions read in the wrong length unit move every atom.

    ``atoms``: finite positions, non-degenerate cell if periodic."""
    numbers = atoms.numbers
    if len(atoms) < 2 or set(numbers.tolist()) <= _NOBLE_GASES:
        return []
    reach = BOND_FACTOR * 2.0 * float(_radii(numbers).max())
    for cutoff in (min(_QUICK_BOND_SEARCH, reach), reach, 4.0 * reach):  # most atoms have a bond within 2 Å
        ratios, partners, distances = _nearest_neighbour_ratios(atoms, cutoff)
        median = float(np.median(ratios))
        if median <= BOND_FACTOR:
            return []
        if np.isfinite(median):
            break
    if np.isfinite(median):
        atom = int(np.argsort(ratios)[(len(ratios) - 1) // 2])
        example = (f"e.g. atom {atom} ({chemical_symbols[numbers[atom]]}) is {distances[atom]:.3f} Å from atom "
                   f"{partners[atom]} ({chemical_symbols[numbers[partners[atom]]]})")
        typical = f"the median atom's nearest neighbour is {median:.2f}× their covalent bond length ({example})"
    else:
        typical = f"most atoms have no neighbour within {4.0 * reach:.3g} Å"
    return [
        f"atoms are not bonded: {typical}, at most {BOND_FACTOR:g}× expected; are positions in Å "
        f"(not Bohr, × 1.89, or pm)?"
    ]


def _nearest_neighbour_ratios(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per atom, over neighbours within ``cutoff`` (Å), periodic images included: the smallest
    ``distance / (r_i + r_j)`` (n_atoms,) (inf without neighbour), that neighbour's index and
    the distance (Å)."""
    import vesin  # local import: only needed here

    pbc = atoms.pbc
    box = atoms.cell.array if pbc.any() else np.zeros((3, 3))
    first, second, pair_distances = vesin.NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.ascontiguousarray(atoms.positions, dtype=np.float64),
        box=np.ascontiguousarray(box, dtype=np.float64),
        periodic=pbc.tolist(),
        quantities="ijd",
    )
    n = len(atoms)
    ratios, partners, distances = np.full(n, np.inf), np.full(n, -1), np.full(n, np.inf)
    if len(pair_distances):
        radii = _radii(atoms.numbers)
        pair_ratios = pair_distances / (radii[first] + radii[second])
        order = np.lexsort((pair_ratios, first))  # by atom, then ratio: the first of each atom is its nearest
        atom_of, firsts = np.unique(first[order], return_index=True)
        best = order[firsts]
        ratios[atom_of], partners[atom_of], distances[atom_of] = pair_ratios[best], second[best], pair_distances[best]
    return ratios, partners, distances
