"""Per-element attributes used by the composition descriptor (Z = 1 … 86).

``PAULING_ELECTRONEGATIVITY[Z]``: Pauling electronegativity, NaN where undefined (He,
Ne, Ar); taken from pymatgen 2026.10 ``Element.X``. Covalent radii (Å) come from
``ase.data.covalent_radii`` (Cordero et al. 2008). ``NON_METALS`` follows the usual MOF
convention: metalloids B, Si, Ge, As, Sb, Te count as non-metals, so "metal" means
the framework's nodes.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, covalent_radii

__all__ = ["COVALENT_RADIUS", "IS_METAL", "MAX_Z", "NON_METALS", "PAULING_ELECTRONEGATIVITY"]

MAX_Z = 118

_PAULING_1_TO_86 = (
    2.20, np.nan, 0.98, 1.57, 2.04, 2.55, 3.04, 3.44, 3.98, np.nan, 0.93, 1.31, 1.61, 1.90, 2.19,
    2.58, 3.16, np.nan, 0.82, 1.00, 1.36, 1.54, 1.63, 1.66, 1.55, 1.83, 1.88, 1.91, 1.90, 1.65,
    1.81, 2.01, 2.18, 2.55, 2.96, 3.00, 0.82, 0.95, 1.22, 1.33, 1.60, 2.16, 1.90, 2.20, 2.28,
    2.20, 1.93, 1.69, 1.78, 1.96, 2.05, 2.10, 2.66, 2.60, 0.79, 0.89, 1.10, 1.12, 1.13, 1.14,
    1.13, 1.17, 1.20, 1.20, 1.10, 1.22, 1.23, 1.24, 1.25, 1.10, 1.27, 1.30, 1.50, 2.36, 1.90,
    2.20, 2.20, 2.28, 2.54, 2.00, 1.62, 2.33, 2.02, 2.00, 2.20, 2.20,
)

#: (MAX_Z + 1,) Pauling electronegativity indexed by Z; NaN where undefined or Z > 86.
PAULING_ELECTRONEGATIVITY = np.full(MAX_Z + 1, np.nan)
PAULING_ELECTRONEGATIVITY[1:87] = _PAULING_1_TO_86

#: (MAX_Z + 1,) covalent radius in Å indexed by Z.
COVALENT_RADIUS = np.asarray(covalent_radii[: MAX_Z + 1], dtype=np.float64)

NON_METALS = frozenset(
    "H He B C N O F Ne Si P S Cl Ar Ge As Se Br Kr Sb Te I Xe At Rn".split()
)

#: (MAX_Z + 1,) True for metals (everything that is not in NON_METALS; index 0 False).
IS_METAL = np.ones(MAX_Z + 1, dtype=bool)
IS_METAL[0] = False
IS_METAL[[atomic_numbers[s] for s in NON_METALS]] = False
