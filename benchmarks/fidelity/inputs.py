"""The shared inputs of the fidelity runs: structures and the per-atom quantities the heads
are evaluated for, written once and read by farfield and by every reference worker.

Structures: the ethanol molecule of ASE's g2 set (non-periodic) and the MOF cell of
tests/data/mof_small.extxyz (FIGXAU, erbium formate, triclinic) repeated 2×2×2 (104 atoms),
so that the references' minimum-image neighbour lists hold every pair within a 5.8 Å
real-space cutoff (half the smallest perpendicular width of the supercell is 5.9 Å).
Charge-equilibration inputs (χ per atom, J and σ per element) and LES charges (neutral and
not) are drawn from a seeded generator. Units: Å, e, eV; ``coulomb_constant`` is farfield's
k_e in eV·Å/e², which the workers use to convert to their own units.
"""

from __future__ import annotations

from pathlib import Path

import ase.build
import ase.io
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MOF_FILE = ROOT / "tests" / "data" / "mof_small.extxyz"

#: CELLI hardness J_Z (eV/e²) and Gaussian width σ_Z (Å) per element (H, C, O, Er). Widths stay
#: ≤ 0.6 Å so that the reference's real-space sum, cut at 5.8 Å, is converged to ~1e-10.
HARDNESS = {1: 9.0, 6: 8.0, 8: 11.0, 68: 6.0}
WIDTHS = {1: 0.45, 6: 0.55, 8: 0.5, 68: 0.6}
#: Mean electronegativity χ per element (eV/e); each atom gets this plus N(0, 0.5²).
ELECTRONEGATIVITY = {1: -0.8, 6: 0.2, 8: 1.5, 68: -2.0}
#: Net latent charge (e) of the non-neutral LES inputs.
NET_CHARGE = 0.7
#: CELLI cases: (structure, total charge in e).
CELLI_CASES = (("ethanol", 0.0), ("ethanol", 1.0), ("figxau_2x2x2", 0.0))


def _structure(atoms) -> dict:
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "periodic": bool(atoms.pbc.all()),
    }


def make_inputs(coulomb_constant: float, seed: int = 17) -> dict:
    """Every input of the fidelity runs as JSON-ready lists (see module docstring)."""
    rng = np.random.default_rng(seed)
    molecule = ase.build.molecule("CH3CH2OH")
    mof = ase.io.read(MOF_FILE).repeat((2, 2, 2))
    structures = {"ethanol": _structure(molecule), "figxau_2x2x2": _structure(mof)}
    celli, les = {}, {}
    for name, s in structures.items():
        numbers = np.asarray(s["numbers"])
        chi = np.array([ELECTRONEGATIVITY[int(z)] for z in numbers]) + 0.5 * rng.standard_normal(len(numbers))
        celli[name] = {"chi": chi.tolist(), "hardness": [HARDNESS[int(z)] for z in numbers],
                       "widths": [WIDTHS[int(z)] for z in numbers]}
        charges = 0.4 * rng.standard_normal(len(numbers))
        neutral = charges - charges.mean()
        les[name] = {"neutral": neutral.tolist(), "non_neutral": (neutral + NET_CHARGE / len(numbers)).tolist()}
    celli_cases = [{"structure": name, "total_charge": total} for name, total in CELLI_CASES]
    return {
        "coulomb_constant": coulomb_constant,
        "seed": seed,
        "structures": structures,
        "celli": celli,
        "celli_cases": celli_cases,
        "les": les,
        "sources": {
            "ethanol": "ase.build.molecule('CH3CH2OH') (ASE g2 set)",
            "figxau_2x2x2": "tests/data/mof_small.extxyz (FIGXAU-c0, CoRE MOF 2019) repeated 2x2x2",
        },
    }
