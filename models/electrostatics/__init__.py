"""Electrostatics shared by the long-range heads: Coulomb sums of point or Gaussian
charges in periodic cells (Ewald and PME) and in non-periodic structures (direct
sum), parameter tuning for a target accuracy, and charge-equilibration solvers.

Units: positions Å, charges e, potentials eV/e, energies eV (``COULOMB_CONSTANT``).
"""

from farfield.models.electrostatics.constants import COULOMB_CONSTANT
from farfield.models.electrostatics.coulomb import (
    coulomb_energy,
    energy_and_forces,
    molecular_matrix,
    molecular_potential,
    periodic_matrix,
    periodic_potential,
)
from farfield.models.electrostatics.tuning import EwaldParameters, check_accuracy, tune, tune_checked

__all__ = [
    "COULOMB_CONSTANT",
    "EwaldParameters",
    "check_accuracy",
    "coulomb_energy",
    "energy_and_forces",
    "molecular_matrix",
    "molecular_potential",
    "periodic_matrix",
    "periodic_potential",
    "tune",
    "tune_checked",
]
