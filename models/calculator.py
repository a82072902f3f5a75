"""ASE calculator for a trained farfield ``Potential``, so a trial's model runs MD in ASE.

    from farfield.models.calculator import FarfieldCalculator
    atoms.calc = FarfieldCalculator.from_checkpoint("model.pt")

For a checkpoint logged to MLflow use ``farfield.orchestrator.checkpoints.calculator_from_run``
(only the orchestrator talks to MLflow). Results follow ASE's units and signs, which are
farfield's (docs/conventions.md): ``energy``/``free_energy`` eV, ``energies`` (per atom)
eV, ``forces`` eV/Å, ``stress`` eV/Å³ Voigt ``(xx, yy, zz, yz, xz, xy)`` (fully periodic
cells only), ``charges`` e when a head predicts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from farfield.models.graph import AtomicGraph
from farfield.models.graph.batch import matrix_to_voigt
from farfield.models.potential import Potential
from farfield.models.training.checkpoint import load_checkpoint


class FarfieldCalculator(Calculator):
    """Energy, forces, stress and (if predicted) charges of a ``Potential``.

    ``potential``: the model (put into eval mode). ``device``: where it runs.
    The graph is built in the potential's own dtype, exactly as the trainer builds it.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "charges"]

    def __init__(self, potential: Potential, device: str | torch.device = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.potential = potential.to(self.device).eval()
        self.dtype = next(potential.parameters()).dtype

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> FarfieldCalculator:
        """Load a trial checkpoint (``checkpoint/model.pt`` of an MLflow run, or any saved one)."""
        potential, _ = load_checkpoint(path, device=device)
        return cls(potential, device=device, **kwargs)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(np.all(atoms.pbc))
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                f"stress needs a cell periodic in all three directions; these atoms have pbc={atoms.pbc.tolist()}"
            )
        graph = AtomicGraph.from_atoms(atoms, self.potential.cutoff, dtype=self.dtype).to(self.device)
        out = self.potential(graph, compute_forces=True, compute_stress=periodic)
        energy = float(out["energy"][0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["atomic_energies"].detach().cpu().double().numpy(),
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if periodic:
            self.results["stress"] = matrix_to_voigt(out["stress"][0]).detach().cpu().double().numpy()
        if "charges" in out:
            self.results["charges"] = out["charges"].detach().cpu().double().numpy()
        elif "charges" in properties:
            raise PropertyNotImplementedError("this potential predicts no charges (no charge head)")
