"""D3(BJ) dispersion (Grimme et al. 2010/2011, Becke–Johnson damping) as a fixed energy term.

``dftd3`` (the reference library, via its Python API) gives the energy, its analytic
gradient and the virial; ``_D3Energy`` wraps them as a torch autograd function of
positions and cell, so forces and stress of the total energy include dispersion and
training on forces works. The term has no trainable parameters: its second
derivatives are not needed and are treated as zero.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.graph import AtomicGraph
from farfield.models.heads._structures import iter_structures
from farfield.models.heads.config import D3Config

#: Bohr radius in Å and Hartree in eV (CODATA 2018), for dftd3's atomic units.
BOHR = 0.529177210903
HARTREE = 27.211386245988


def d3_energy_gradient_virial(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, config: D3Config):
    """Energy (eV), gradient ∂E/∂r (n, 3) eV/Å and ``∂E/∂ε`` (3, 3) eV of one structure.

    ``positions``: (n, 3) Å; ``cell``: (3, 3) Å rows or None for a molecule.
    """
    from dftd3.interface import DispersionModel, RationalDampingParam

    periodic = cell is not None
    model = DispersionModel(
        numbers, positions / BOHR, None if cell is None else cell / BOHR, np.array([periodic] * 3) if periodic else None
    )
    model.set_realspace_cutoff(config.cutoff / BOHR, config.three_body_cutoff / BOHR, config.coordination_cutoff / BOHR)
    try:
        param = RationalDampingParam(method=config.functional, atm=config.three_body)
    except Exception as err:  # dftd3 raises its own error type for unknown functionals
        raise ValueError(f"model.heads.d3.functional: dftd3 has no D3(BJ) parameters for {config.functional!r}") from err
    result = model.get_dispersion(param, grad=True)
    return result["energy"] * HARTREE, result["gradient"] * HARTREE / BOHR, result["virial"] * HARTREE


class _D3Energy(torch.autograd.Function):
    """E_D3(positions, cell) with gradients from dftd3; ``∂E/∂cell = cell⁻ᵀ (∂E/∂ε − rᵀ ∂E/∂r)``."""

    @staticmethod
    def forward(ctx, positions: torch.Tensor, cell: torch.Tensor, numbers: np.ndarray, periodic: bool, config: D3Config):
        pos = positions.detach().cpu().double().numpy()
        box = cell.detach().cpu().double().numpy() if periodic else None
        energy, gradient, strain_derivative = d3_energy_gradient_virial(numbers, pos, box, config)
        grad_positions = torch.as_tensor(gradient, dtype=positions.dtype, device=positions.device)
        if periodic:
            cell_term = strain_derivative - pos.T @ gradient
            grad_cell = torch.as_tensor(np.linalg.solve(box.T, cell_term), dtype=cell.dtype, device=cell.device)
        else:
            grad_cell = torch.zeros_like(cell)
        ctx.save_for_backward(grad_positions, grad_cell)
        return positions.new_tensor(energy)

    @staticmethod
    def backward(ctx, grad_energy: torch.Tensor):
        grad_positions, grad_cell = ctx.saved_tensors
        return grad_energy * grad_positions, grad_energy * grad_cell, None, None, None


class D3Head(nn.Module):
    """Fixed D3(BJ) dispersion; ``channels`` is unused (kept for the common builder signature)."""

    def __init__(self, channels: int = 0, config: D3Config | None = None):
        super().__init__()
        self.config = config or D3Config()

    def forward(
        self, graph: AtomicGraph, features: BackboneOutput, positions: torch.Tensor, cell: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        numbers = graph.numbers.cpu().numpy()
        energies = [
            _D3Energy.apply(s.positions, s.cell, numbers[s.atoms], s.periodic, self.config)
            for s in iter_structures(graph, positions, cell, "d3")
        ]
        return {"energy": torch.stack(energies)}
