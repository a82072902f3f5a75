"""CELLI: charge equilibration layer (Fuchs, Sanocki, Zavadlav) on any backbone.

Each atom gets an electronegativity ``χ_i`` (eV/e), a hardness ``J_i > 0`` (eV/e²) and a
Gaussian width ``σ_i > 0`` (Å) from the backbone, as ``parametrisation`` says
(``celli_parameters.py``: ``reference``, the paper's layer, by default). The charges minimise

    E_Qeq(q) = Σ_i (χ_i q_i + ½ J_i q_i²) + E_elec(q),
    E_elec(q) = ½ Σ'_{ijT} q_i q_j erf(r/(√2γ_ij))/r · k_e + Σ_i k_e q_i² / (2√π σ_i)

subject to ``Σ_i q_i = Q_total`` of each structure (a Lagrange multiplier; dense or
conjugate-gradient solve, see ``farfield.models.electrostatics.solvers``), periodic
images included by Ewald/PME (or one k-sum for wide Gaussians). The head adds the
electrostatic energy of the equilibrated charges to the energy, by default
(``energy="electrostatic"``) ``E_elec``: their pair interaction plus the Gaussian
self-energies, which is what the paper's CELLI models add (chemtrain's
``charge_eq_energy_neighborlist`` evaluated again at the equilibrated charges without χ and
J; checked side by side in docs/fidelity.md). ``"coulomb"`` adds the pair interaction
``½ Σ' q_i q_j erf(..)/r`` only (it fits the toy point-charge system of
tests/test_long_range_fit.py best: self-energies make the energy first-order sensitive to
small charge fluctuations) and ``"qeq"`` the whole minimised ``E_Qeq`` (what the reference
function returns next to the charges). Forces differentiate through the solve. With the
``reference`` parametrisation the widths enter the energy terms without gradient, as in the
paper's code (they still shape the charges; forces are unaffected).

Reads the backbone's features (node features, or edge features for ``reference``); returns
``energy`` (n_graphs,) eV, ``charges`` (n_atoms,) e, ``electronegativity`` (n_atoms,) eV/e.
With ``feedback`` the potential runs the backbone again with ``node_inputs(...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.electrostatics import COULOMB_CONSTANT, EwaldParameters
from farfield.models.electrostatics.coulomb import (
    molecular_matrix,
    molecular_potential,
    periodic_matrix,
    periodic_potential,
    resolve_method,
)
from farfield.models.electrostatics.gaussian import gaussian_self_coefficient
from farfield.models.electrostatics.realspace import PairList, periodic_pairs
from farfield.models.electrostatics.solvers import equilibrate_cg, equilibrate_dense
from farfield.models.electrostatics.tuning import tune
from farfield.models.graph import AtomicGraph
from farfield.models.heads._structures import StructureView, iter_structures
from farfield.models.heads.celli_parameters import PARAMETRISATIONS, QeqInputs
from farfield.models.heads.config import CelliConfig


@dataclass
class _Sums:
    """How one structure's Coulomb sums are done: ``dense`` solve, and for periodic cells the
    tuned ``parameters``, ``method`` and real-space ``pairs`` (reused by every CG step)."""

    dense: bool
    parameters: EwaldParameters | None = None
    method: str | None = None
    pairs: PairList | None = None


class CelliHead(nn.Module):
    """Charge-equilibration head. ``channels``: width of the backbone's invariant features;
    ``n_radial`` and ``cutoff`` (Å): width and cutoff of its radial basis (read by the
    ``reference`` parametrisation)."""

    def __init__(self, channels: int, config: CelliConfig | None = None, n_radial: int = 8, cutoff: float = 5.0):
        super().__init__()
        self.config = config or CelliConfig()
        self.inputs = PARAMETRISATIONS[self.config.parametrisation](channels, n_radial, cutoff, self.config)
        self.feeds_back_charges = self.config.feedback

    def hardness(self, numbers: torch.Tensor) -> torch.Tensor:
        """``J_Z`` (n_atoms,), eV/e²."""
        return self.inputs.hardness(numbers)

    def widths(self, numbers: torch.Tensor) -> torch.Tensor:
        """``σ_Z`` (n_atoms,), Å."""
        return self.inputs.widths(numbers)

    def use_dense(self, n_atoms: int) -> bool:
        solver = self.config.solver
        return solver == "dense" or (solver == "auto" and n_atoms <= self.config.dense_max_atoms)

    def forward(
        self, graph: AtomicGraph, features: BackboneOutput, positions: torch.Tensor, cell: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        inputs = self.inputs(graph, features)
        energy, charges = self.equilibrate(graph, positions, cell, inputs)
        return {"energy": energy, "charges": charges, "electronegativity": inputs.electronegativity}

    def node_inputs(self, graph: AtomicGraph, features: BackboneOutput, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the potential feeds back into the backbone (n_atoms, k), from this head's ``outputs``."""
        return self.inputs.feedback(graph, features, outputs["charges"])

    def equilibrate(
        self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor, inputs: QeqInputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy term (n_graphs,) eV and equilibrated charges (n_atoms,) e for given per-atom ``inputs``."""
        widths = inputs.widths
        self_coefficient = COULOMB_CONSTANT * gaussian_self_coefficient(widths)  # eV/e²
        energy_widths = widths.detach() if self.inputs.detach_widths_in_energy else widths
        energy_self = COULOMB_CONSTANT * gaussian_self_coefficient(energy_widths)
        diagonal = inputs.hardness + self_coefficient
        energies, charges = [], []
        for structure in iter_structures(graph, positions, cell, "celli"):
            a = structure.atoms
            sums = self._sums(structure, widths[a])
            q, matrix = self._solve(structure, sums, inputs.electronegativity[a], diagonal[a], widths[a],
                                    graph.total_charge[structure.index])
            if matrix is not None and energy_widths is widths:
                energy = 0.5 * q @ (matrix @ q)  # pair interaction, eV
            else:
                energy = 0.5 * (q * self._potential(structure, sums, q[:, None], energy_widths[a])[:, 0]).sum()
            if self.config.energy in ("electrostatic", "qeq"):
                energy = energy + 0.5 * (energy_self[a] * q * q).sum()
            if self.config.energy == "qeq":
                energy = energy + (inputs.electronegativity[a] * q).sum() + 0.5 * (inputs.hardness[a] * q * q).sum()
            energies.append(energy)
            charges.append(q)
        return torch.stack(energies), torch.cat(charges)

    def _sums(self, s: StructureView, widths: torch.Tensor) -> _Sums:
        n = s.positions.shape[0]
        dense = self.use_dense(n)
        if not s.periodic:
            return _Sums(dense)
        method = "ewald" if dense else resolve_method(self.config.method, n)
        sigma = widths.detach()
        parameters = tune(s.cell, n, self.config.accuracy, method,
                          max_width=math.sqrt(2.0) * float(sigma.max()), min_width=math.sqrt(2.0) * float(sigma.min()))
        pairs = None if dense or parameters.reciprocal_only else periodic_pairs(s.positions, s.cell, parameters.real_cutoff)
        return _Sums(dense, parameters, method, pairs)

    @staticmethod
    def _potential(s: StructureView, sums: _Sums, v: torch.Tensor, widths: torch.Tensor,
                   positions: torch.Tensor | None = None, cell: torch.Tensor | None = None) -> torch.Tensor:
        """Coulomb potential (n, k) eV/e of charges ``v`` (n, k) e without self terms."""
        positions = s.positions if positions is None else positions
        if s.periodic:
            cell = s.cell if cell is None else cell
            return periodic_potential(positions, cell, v, widths, sums.parameters, sums.method, sums.pairs)
        return molecular_potential(positions, v, widths)

    def _solve(self, s: StructureView, sums: _Sums, chi, diagonal, widths, total_charge
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Equilibrated charges (n,) e, and the Coulomb matrix (n, n) eV/e² (without self terms)
        when the solve was dense (None for CG)."""
        if sums.dense:
            if s.periodic:
                coulomb = periodic_matrix(s.positions, s.cell, widths, sums.parameters)
            else:
                coulomb = molecular_matrix(s.positions, widths)
            return equilibrate_dense(coulomb + torch.diag(diagonal), chi, total_charge), coulomb

        def matvec(v, positions, cell, widths_, diagonal_):
            return self._potential(s, sums, v, widths_, positions, cell) + diagonal_[:, None] * v

        q = equilibrate_cg(
            matvec, (s.positions, s.cell, widths, diagonal), chi, total_charge,
            tol=self.config.cg_tolerance, max_iter=self.config.cg_max_iter, diagonal=diagonal,
        )
        return q, None

