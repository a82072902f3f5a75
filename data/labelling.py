"""Label structures with GFN-xTB single points from tblite.

:func:`label_gfn_xtb` runs one tblite single point (periodic when ``atoms.pbc`` is
set, molecular otherwise) and returns a labelled copy in farfield's record format
(see :mod:`farfield.data.records`):

- ``info["energy"]``: total energy, eV (float)
- ``arrays["forces"]``: eV/Å, shape (n_atoms, 3)
- ``arrays["charges"]``: Mulliken partial charges, e, shape (n_atoms,)
- ``info["stress"]``: eV/Å³, Voigt (6,) xx yy zz yz xz xy, ASE sign convention
  σ = (1/V) ∂E/∂ε (fully periodic cells only)
- ``info["total_charge"]`` (e), ``info["label_method"]`` (e.g. ``"GFN1-xTB"``)

tblite works in atomic units (Hartree, Bohr); conversions use ``ase.units``. Its
``virial`` result is W = ∂E/∂ε (Hartree), so the ASE stress is **+W/V** (not −W/V);
:func:`check_stress_sign` verifies this against a central finite difference of the
energy under strain (the same sign ``tblite.ase`` uses).

Performance notes. tblite parallelises with OpenMP; for many small structures it is
faster to run one process per core with one thread each, so set
``OMP_NUM_THREADS=1`` *before* importing tblite (:func:`limit_threads` does this for
worker processes). If Debian's ``libopenblas0-pthread`` is installed, starting Python
with ``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0``
(path varies by distribution) is reported to make tblite 3–10× faster than with the
reference BLAS its wheel may pick up; an optional speed-up (not measured here, not
required).
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
from ase import Atoms
from ase.units import Bohr, Hartree
from pydantic import Field

from .config import StrictModel
from .records import CHARGES, ENERGY, FORCES, STRESS, STRUCTURE_ID, TOTAL_CHARGE

METHODS = ("GFN1-xTB", "GFN2-xTB", "IPEA1-xTB")


class XtbSettings(StrictModel):
    """How tblite labels a structure: ``method`` (one of ``METHODS``), the SCF ``accuracy``
    (tblite's multiplier of its convergence thresholds, smaller is tighter) and the SCF's
    ``max_iterations``. The one definition of these settings: the labelling functions, the
    labelling actors and ``BuildSettings`` take them from here."""

    method: Literal[METHODS] = "GFN1-xTB"
    accuracy: float = Field(default=1.0, gt=0.0)
    max_iterations: int = Field(default=250, ge=1)

    def tblite_options(self) -> dict:
        """Keyword arguments of ``tblite.ase.TBLite`` for these settings (quiet)."""
        return {"method": self.method, "accuracy": self.accuracy, "max_iterations": self.max_iterations,
                "verbosity": 0}


#: ``info`` key naming the method a structure was labelled with.
LABEL_METHOD = "label_method"


#: Environment variables that set OpenMP/BLAS thread counts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(n: int = 1) -> None:
    """Set OpenMP/BLAS thread counts for this process (call before importing tblite)."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)


def _name(atoms: Atoms) -> str:
    return str(atoms.info.get(STRUCTURE_ID, atoms.get_chemical_formula()))


def tblite_single_point(
    atoms: Atoms, xtb: XtbSettings | None = None, total_charge: float = 0.0
) -> dict[str, np.ndarray | float]:
    """Raw tblite results in ASE units: energy (eV), forces (eV/Å, (n, 3)),
    charges (e, (n,)), virial (eV, (3, 3), = ∂E/∂ε), volume (Å³ or ``nan``).

    ``xtb``: the settings (default ``XtbSettings()``); ``total_charge``: e.
    Raises ``ValueError`` naming the structure if tblite rejects the input or the SCF
    does not converge within ``xtb.max_iterations``.
    """
    from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError
    from tblite.interface import Calculator

    xtb = xtb or XtbSettings()
    method = xtb.method
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and atoms.cell.rank < 3:
        raise ValueError(f"{_name(atoms)}: periodic structure needs a full 3D cell")
    lattice = atoms.cell.array / Bohr if pbc.any() else None
    try:
        calc = Calculator(
            method, atoms.numbers, atoms.positions / Bohr, float(total_charge), None,
            lattice, pbc if pbc.any() else None, logger=lambda _msg: None, color=False,
        )
        calc.set("verbosity", 0)
        calc.set("accuracy", float(xtb.accuracy))
        calc.set("max-iter", int(xtb.max_iterations))
        res = calc.singlepoint()
    except (TBLiteRuntimeError, TBLiteValueError) as exc:
        raise ValueError(f"{_name(atoms)}: {method} single point failed: {exc}") from exc
    return {
        "energy": float(res.get("energy")) * Hartree,
        "forces": -np.asarray(res.get("gradient")) * Hartree / Bohr,
        "charges": np.asarray(res.get("charges"), dtype=np.float64),
        "virial": np.asarray(res.get("virial")) * Hartree,
        "volume": atoms.get_volume() if pbc.all() else float("nan"),
    }


def label_gfn_xtb(atoms: Atoms, xtb: XtbSettings | None = None, total_charge: float = 0.0) -> Atoms:
    """Return a copy of ``atoms`` labelled with a single point of ``xtb`` (default ``XtbSettings()``).

    The copy keeps ``info``/``arrays`` of the input (minus any calculator), and gets
    energy, forces, Mulliken charges, stress (fully periodic only), total charge and
    method as described in the module docstring. ``uhf`` is left to tblite (lowest
    spin compatible with the electron count). Raises ``ValueError`` naming the
    structure on SCF non-convergence or invalid input; never returns partial labels.
    """
    xtb = xtb or XtbSettings()
    method = xtb.method
    raw = tblite_single_point(atoms, xtb, total_charge)
    out = atoms.copy()
    out.calc = None
    out.info.pop(STRESS, None)
    out.info[ENERGY] = raw["energy"]
    out.arrays[FORCES] = np.ascontiguousarray(raw["forces"], dtype=np.float64)
    out.arrays[CHARGES] = raw["charges"]
    if np.all(atoms.pbc):
        sigma = raw["virial"] / raw["volume"]
        out.info[STRESS] = sigma.flat[[0, 4, 8, 5, 2, 1]].astype(np.float64)
    out.info[TOTAL_CHARGE] = float(total_charge)
    out.info[LABEL_METHOD] = method
    if not np.all(np.isfinite(out.arrays[FORCES])) or not np.isfinite(out.info[ENERGY]):
        raise ValueError(f"{_name(atoms)}: {method} returned non-finite energy or forces")
    return out


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """Copy with cell ``cell @ (I + strain)`` and atoms scaled with it; strain (3, 3)."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return out


def check_stress_sign(
    atoms: Atoms, method: str = "GFN1-xTB", h: float = 1e-4, rtol: float = 0.05
) -> dict[str, object]:
    """Compare the labelled stress with a central finite difference of the energy.

    For each Voigt component the symmetric strain ε (amplitude ``h``) is applied both
    ways and σ_fd = (E(+ε) − E(−ε)) / (2 h V). Returns the analytic and finite-
    difference stresses (eV/Å³, Voigt 6), the maximum absolute deviation, and
    ``"sign": "+virial/V"`` or ``"-virial/V"`` (whichever matches). Raises
    ``ValueError`` if neither matches within ``rtol`` of the largest component.
    """
    xtb = XtbSettings(method=method, accuracy=0.01)  # tight SCF: finite differences of the energy
    labelled = label_gfn_xtb(atoms, xtb)
    plus_w = labelled.info[STRESS]  # = +virial/V in Voigt order
    fd = np.zeros(6)
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for k, (i, j) in enumerate(pairs):
        energies = []
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[i, j] += sign * h / (1 if i == j else 2)
            if i != j:
                eps[j, i] += sign * h / 2
            raw = tblite_single_point(strained(atoms, eps), xtb)
            energies.append(raw["energy"])
        fd[k] = (energies[0] - energies[1]) / (2 * h * atoms.get_volume())
    scale = max(np.abs(fd).max(), 1e-6)
    dev_plus, dev_minus = np.abs(plus_w - fd).max(), np.abs(-plus_w - fd).max()
    if min(dev_plus, dev_minus) > rtol * scale:
        raise ValueError(
            f"{_name(atoms)}: stress matches neither ±virial/V (fd {fd}, virial/V {plus_w})"
        )
    return {
        "stress": labelled.info[STRESS].tolist(),
        "stress_fd": fd.tolist(),
        "max_abs_dev": float(dev_plus),
        "sign": "+virial/V" if dev_plus <= dev_minus else "-virial/V",
    }
