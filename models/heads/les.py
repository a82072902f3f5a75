"""LES: latent Ewald summation (B. Cheng, "Latent Ewald summation for machine learning
of long-range interactions", npj Comput. Mater. 2025), written from the equations.

Latent charges ``q_i`` (e) are an MLP of the backbone's invariant features and
interact through Gaussian-smeared Coulomb with smearing σ, summed in reciprocal space
for periodic cells:

    E_lr = (2π k_e / V) Σ_{0<|k|≤k_c} exp(−σ²k²/2)/k² |S(k)|² − k_e Σ_i q_i²/(√(2π) σ) [− π k_e σ² Q²/V]

with ``S(k) = Σ_i q_i e^{ik·r_i}`` and ``k_c = 2π/λ_c``; the second term removes each
charge's interaction with itself. The bracketed neutralising-background term (zero for
neutral structures) is added only with ``background: true``; by default the energy is
the reference LES's for any net latent charge Q (docs/long_range.md). Non-periodic structures use the same kernel ``erf(r/(√2σ))/r``
by direct sum over pairs ``i ≠ j``. No neutrality constraint unless ``neutral``; the
head is trained on energies and forces only (it is not in ``CHARGE_HEADS``).

Reads ``features.node_features``; returns ``energy`` (n_graphs,) eV and ``charges``
(n_atoms,) e (the latent charges, reported for analysis).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import MLP, scatter_sum
from farfield.models.electrostatics.coulomb import coulomb_energy, molecular_potential, reciprocal_only_potential
from farfield.models.graph import AtomicGraph
from farfield.models.heads._structures import iter_structures
from farfield.models.heads.config import LesConfig


class LesHead(nn.Module):
    """Latent-charge head; ``channels``: width of the backbone's invariant features."""

    def __init__(self, channels: int, config: LesConfig | None = None):
        super().__init__()
        self.config = config or LesConfig()
        self.latent_charges = MLP([channels, self.config.hidden, 1])

    def charges(self, graph: AtomicGraph, features: BackboneOutput) -> torch.Tensor:
        """Latent charges (n_atoms,), e; shifted per structure to ``total_charge`` if ``neutral``."""
        q = self.latent_charges(features.node_features).squeeze(-1)
        if self.config.neutral:
            excess = scatter_sum(q, graph.batch, graph.n_graphs) - graph.total_charge.to(q.dtype)
            q = q - (excess / graph.n_atoms.to(q.dtype))[graph.batch]
        return q

    def forward(
        self, graph: AtomicGraph, features: BackboneOutput, positions: torch.Tensor, cell: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        q = self.charges(graph, features)
        sigma = self.config.smearing
        kspace_cutoff = 2.0 * math.pi / self.config.wavelength_cutoff
        energies = []
        for s in iter_structures(graph, positions, cell, "les"):
            qs = q[s.atoms]
            if s.periodic:
                potential = reciprocal_only_potential(s.positions, s.cell, qs, sigma, kspace_cutoff,
                                                      background=self.config.background)
            else:
                widths = torch.full_like(qs, sigma / math.sqrt(2.0))
                potential = molecular_potential(s.positions, qs, widths)
            energies.append(coulomb_energy(qs, potential)[0])
        return {"energy": torch.stack(energies), "charges": q}
