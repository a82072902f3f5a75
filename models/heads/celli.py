"""CELLI: charge equilibration layer (Fuchs, Sanocki, Zavadlav) on any backbone.

Each atom gets an environment-dependent electronegativity ``χ_i`` (eV/e, an MLP of the
backbone's invariant features times ``initial_hardness``, so that order-one network
outputs give order-one charges), a per-element hardness ``J_Z > 0`` (eV/e²) and a
per-element Gaussian width ``σ_Z > 0`` (Å), both learnable through softplus. The
charges minimise

    E_Qeq(q) = Σ_i (χ_i q_i + ½ J_i q_i²) + E_elec(q),
    E_elec(q) = ½ Σ'_{ijT} q_i q_j erf(r/(√2γ_ij))/r · k_e + Σ_i k_e q_i² / (2√π σ_i)

subject to ``Σ_i q_i = Q_total`` of each structure (a Lagrange multiplier; dense or
conjugate-gradient solve, see ``farfield.models.electrostatics.solvers``), periodic
images included by Ewald/PME. The head adds the electrostatic energy of the
equilibrated charges to the energy, by default (``energy="electrostatic"``) ``E_elec``:
their pair interaction plus the Gaussian self-energies, which is what the paper's CELLI
models add (chemtrain's ``charge_eq_energy_neighborlist`` evaluated again at the
equilibrated charges without χ and J; checked side by side in docs/fidelity.md).
``"coulomb"`` adds the pair interaction ``½ Σ' q_i q_j erf(..)/r`` only (it fits the toy
point-charge system of tests/test_long_range_fit.py best: self-energies make the energy
first-order sensitive to small charge fluctuations) and ``"qeq"`` the whole minimised
``E_Qeq`` (what the reference function returns next to the charges). Forces
differentiate through the solve.

Reads ``features.node_features``; returns ``energy`` (n_graphs,) eV, ``charges``
(n_atoms,) e, ``electronegativity`` (n_atoms,) eV/e.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.functional import softplus

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import MAX_ATOMIC_NUMBER, MLP
from farfield.models.electrostatics import COULOMB_CONSTANT
from farfield.models.electrostatics.coulomb import (
    molecular_matrix,
    molecular_potential,
    periodic_matrix,
    periodic_potential,
    resolve_method,
)
from farfield.models.electrostatics.gaussian import gaussian_self_coefficient
from farfield.models.electrostatics.realspace import periodic_pairs
from farfield.models.electrostatics.solvers import equilibrate_cg, equilibrate_dense
from farfield.models.electrostatics.tuning import tune
from farfield.models.graph import AtomicGraph
from farfield.models.heads._structures import StructureView, iter_structures
from farfield.models.heads.config import CelliConfig


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class CelliHead(nn.Module):
    """Charge-equilibration head; ``channels``: width of the backbone's invariant features."""

    def __init__(self, channels: int, config: CelliConfig | None = None):
        super().__init__()
        self.config = config or CelliConfig()
        self.electronegativity = MLP([channels, self.config.hidden, 1])
        n_elements = MAX_ATOMIC_NUMBER + 1
        self.raw_hardness = nn.Parameter(torch.full((n_elements,), _inverse_softplus(self.config.initial_hardness)))
        self.raw_width = nn.Parameter(torch.full((n_elements,), _inverse_softplus(self.config.initial_width)))
        self.feeds_back_charges = self.config.feedback

    def hardness(self, numbers: torch.Tensor) -> torch.Tensor:
        """``J_Z`` (n_atoms,), eV/e²."""
        return softplus(self.raw_hardness)[numbers]

    def widths(self, numbers: torch.Tensor) -> torch.Tensor:
        """``σ_Z`` (n_atoms,), Å."""
        return softplus(self.raw_width)[numbers]

    def use_dense(self, n_atoms: int) -> bool:
        solver = self.config.solver
        return solver == "dense" or (solver == "auto" and n_atoms <= self.config.dense_max_atoms)

    def forward(
        self, graph: AtomicGraph, features: BackboneOutput, positions: torch.Tensor, cell: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        chi = self.electronegativity(features.node_features).squeeze(-1) * self.config.initial_hardness
        widths = self.widths(graph.numbers)
        self_coefficient = COULOMB_CONSTANT * gaussian_self_coefficient(widths)  # eV/e²
        diagonal = self.hardness(graph.numbers) + self_coefficient
        energies, charges = [], []
        for structure in iter_structures(graph, positions, cell, "celli"):
            a = structure.atoms
            q, coulomb = self._solve(structure, chi[a], diagonal[a], widths[a], graph.total_charge[structure.index])
            energy = coulomb
            if self.config.energy in ("electrostatic", "qeq"):
                energy = energy + 0.5 * (self_coefficient[a] * q * q).sum()
            if self.config.energy == "qeq":
                energy = energy + (chi[a] * q).sum() + 0.5 * (self.hardness(graph.numbers[a]) * q * q).sum()
            energies.append(energy)
            charges.append(q)
        return {"energy": torch.stack(energies), "charges": torch.cat(charges), "electronegativity": chi}

    def _solve(self, s: StructureView, chi, diagonal, widths, total_charge) -> tuple[torch.Tensor, torch.Tensor]:
        """Equilibrated charges (n,) e and their Coulomb energy (without self terms) () eV."""
        n = s.positions.shape[0]
        dense = self.use_dense(n)
        if s.periodic:
            method = "ewald" if dense else resolve_method(self.config.method, n)
            max_width = math.sqrt(2.0) * float(widths.detach().max())
            parameters = tune(s.cell, n, self.config.accuracy, method, max_width)
        if dense:
            if s.periodic:
                coulomb = periodic_matrix(s.positions, s.cell, widths, parameters)
            else:
                coulomb = molecular_matrix(s.positions, widths)
            q = equilibrate_dense(coulomb + torch.diag(diagonal), chi, total_charge)
            return q, 0.5 * q @ (coulomb @ q)

        if s.periodic:
            pairs = periodic_pairs(s.positions, s.cell, parameters.real_cutoff)  # reused by every CG step

            def coulomb_potential(v, positions, cell, widths_):
                return periodic_potential(positions, cell, v, widths_, parameters, method, pairs)
        else:

            def coulomb_potential(v, positions, cell, widths_):
                return molecular_potential(positions, v, widths_)

        def matvec(v, positions, cell, widths_, diagonal_):
            return coulomb_potential(v, positions, cell, widths_) + diagonal_[:, None] * v

        q = equilibrate_cg(
            matvec, (s.positions, s.cell, widths, diagonal), chi, total_charge,
            tol=self.config.cg_tolerance, max_iter=self.config.cg_max_iter, diagonal=diagonal,
        )
        potential = coulomb_potential(q[:, None], s.positions, s.cell, widths)[:, 0]
        return q, 0.5 * (q * potential).sum()
