"""LES reference worker: the ``les`` package's ``Ewald`` on the shared inputs.

Runs inside the torch environment that ``run.py`` builds (torch and the ``les`` package
from its repository); imports no farfield. ``Ewald(dl=λ_c, sigma=σ)`` with LES's own
defaults (σ = 1 Å, dl = 2 Å, self-interaction removed) gives the energy (eV) of the given
charges; forces (eV/Å) by autograd. A structure without a cell is passed with a zero cell,
which LES sums directly in real space. Usage: ``python les_reference.py INPUTS.json OUT.json``.
"""

from __future__ import annotations

import json
import sys

import torch
from les.module.ewald import Ewald

SMEARING, WAVELENGTH_CUTOFF = 1.0, 2.0


def _energy_and_forces(structure: dict, charges: list[float]) -> tuple[float, list]:
    positions = torch.tensor(structure["positions"], dtype=torch.float64, requires_grad=True)
    q = torch.tensor(charges, dtype=torch.float64)
    cell = torch.tensor(structure["cell"], dtype=torch.float64)[None] if structure["periodic"] else torch.zeros(1, 3, 3, dtype=torch.float64)
    ewald = Ewald(dl=WAVELENGTH_CUTOFF, sigma=SMEARING)
    energy = ewald(q, positions, cell)[0].sum()
    (grad,) = torch.autograd.grad(energy, positions)
    return float(energy), (-grad).tolist()


def main(inputs_path: str, out_path: str) -> None:
    data = json.loads(open(inputs_path).read())
    results = []
    for name, structure in data["structures"].items():
        for kind, charges in data["les"][name].items():
            energy, forces = _energy_and_forces(structure, charges)
            results.append({"structure": name, "charges": kind, "smearing": SMEARING,
                            "wavelength_cutoff": WAVELENGTH_CUTOFF, "energy": energy, "forces": forces,
                            "norm_factor": Ewald().norm_factor})
    versions = {"torch": torch.__version__}
    open(out_path, "w").write(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
