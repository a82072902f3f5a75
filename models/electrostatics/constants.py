"""Physical constants of the electrostatics core, in farfield's internal units."""

from __future__ import annotations

#: Coulomb constant e²/(4πε₀) in eV·Å/e² (CODATA 2018; pymatgen and torch-pme use the same value).
COULOMB_CONSTANT = 14.399645478425668
