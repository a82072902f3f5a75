"""Field names and units of a structure record (an ASE ``Atoms``).

Every reader converts its input into this form, every writer keeps it, and the
trainer reads only these fields. Units are fixed inside farfield: eV, Å, e, eV/Å;
convert at the reader boundary, never later.

=================  ==========================  ==========  ===========================
key                where                        unit        shape / dtype
=================  ==========================  ==========  ===========================
``energy``         ``atoms.info``               eV          float, total energy
``forces``         ``atoms.arrays``             eV/Å        (n_atoms, 3) float64
``charges``        ``atoms.arrays`` (optional)  e           (n_atoms,) float64, reference
                                                            partial charges
``stress``         ``atoms.info`` (optional)    eV/Å³       (6,) Voigt xx yy zz yz xz xy,
                                                            ASE sign: σ = (1/V) ∂E/∂ε
``total_charge``   ``atoms.info``               e           float, default 0
``structure_id``   ``atoms.info``               –           str, unique in a dataset
``parent_id``      ``atoms.info``               –           str, the MOF this configuration
                                                            was derived from; splits are
                                                            made over it
``source``         ``atoms.info``               –           str, where the frame came from
=================  ==========================  ==========  ===========================
"""

from __future__ import annotations

ENERGY = "energy"
FORCES = "forces"
CHARGES = "charges"
STRESS = "stress"
TOTAL_CHARGE = "total_charge"
STRUCTURE_ID = "structure_id"
PARENT_ID = "parent_id"
SOURCE = "source"

#: info keys that every stored record carries.
REQUIRED_INFO = (ENERGY, STRUCTURE_ID, PARENT_ID)
#: per-atom arrays that every stored record carries.
REQUIRED_ARRAYS = (FORCES,)

#: Tolerance (e) for reference charges summing to ``total_charge``.
CHARGE_SUM_TOLERANCE = 1e-3
#: Smallest allowed interatomic distance (Å); closer pairs are rejected as overlaps.
MIN_INTERATOMIC_DISTANCE = 0.5
