"""Reciprocal-space part of the Ewald sum by smooth particle-mesh Ewald (Essmann et al.,
J. Chem. Phys. 103, 8577 (1995)).

Charges are spread on a periodic ``mesh`` (K₁, K₂, K₃) of the cell with cardinal
B-splines of order ``p``; the long-range potential is the convolution of the mesh
charge with ``(4π/V) exp(−η²k²/2)/k²`` corrected by the B-spline factors ``|b(m)|²``,
done by FFT, and interpolated back with the same splines. It approximates
``ewald.kspace_potential`` (same units: e/Å for ``charges`` in e) at O(n + K log K)
cost. Spreading and interpolation are plain tensor operations, so the result is
differentiable in positions, cell and charges by autograd.
"""

from __future__ import annotations

import math

import torch

from farfield.models.electrostatics.ewald import reciprocal_cell


def bspline_weights(fraction: torch.Tensor, order: int) -> torch.Tensor:
    """Cardinal B-spline ``M_p(t + j)`` for ``j = 0..p-1``: (..., p) from ``fraction`` t ∈ [0, 1).

    Recursion ``M_n(x) = x/(n−1) M_{n−1}(x) + (n−x)/(n−1) M_{n−1}(x−1)`` from ``M_1 = 1`` on [0, 1).
    """
    weights = [torch.ones_like(fraction)]
    for n in range(2, order + 1):
        new = []
        for j in range(n):
            x = fraction + j
            term = torch.zeros_like(fraction)
            if j < n - 1:
                term = term + x / (n - 1) * weights[j]
            if j >= 1:
                term = term + (n - x) / (n - 1) * weights[j - 1]
            new.append(term)
        weights = new
    return torch.stack(weights, dim=-1)


def _bspline_moduli(size: int, order: int, dtype, device) -> torch.Tensor:
    """``|b(m)|²`` (size,) of one mesh axis: ``|Σ_{k=0}^{p−2} M_p(k+1) e^{2πi m k/K}|^{−2}``."""
    knots = bspline_weights(torch.zeros((), dtype=dtype, device=device), order)  # M_p(j), j = 0..p-1
    m = torch.arange(size, dtype=dtype, device=device)
    k = torch.arange(order - 1, dtype=dtype, device=device)
    angle = 2.0 * math.pi * m[:, None] * k[None, :] / size
    values = knots[1:order]  # M_p(k + 1) for k = 0..p-2
    real = (values * torch.cos(angle)).sum(dim=1)
    imag = (values * torch.sin(angle)).sum(dim=1)
    return 1.0 / (real**2 + imag**2)


def pme_kspace_potential(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    splitting: float,
    mesh: tuple[int, int, int],
    order: int = 6,
) -> torch.Tensor:
    """Long-range potential (n_atoms, n_channels), e/Å, of ``charges`` (n_atoms, n_channels) e.

    ``positions``: (n_atoms, 3) Å; ``cell``: (3, 3) Å rows; ``splitting`` η (Å);
    ``mesh``: points per cell vector; ``order``: B-spline order p (even, ≥ 4).
    """
    if order < 3:
        raise ValueError(f"PME spline order must be >= 3, got {order}")
    sizes = torch.tensor(mesh, device=positions.device)
    if bool((sizes < order).any()):
        raise ValueError(f"PME mesh {mesh} must have at least `order` = {order} points per axis")
    n_atoms, n_channels = charges.shape
    scaled = positions @ torch.linalg.inv(cell) * sizes.to(positions.dtype)  # (n_atoms, 3) in mesh units
    base = torch.floor(scaled.detach())
    weights = bspline_weights(scaled - base, order)  # (n_atoms, 3, p)
    offsets = torch.arange(order, device=positions.device)
    # mesh point of weight j along axis a: (base_a - j) mod K_a
    points = (base.long()[:, :, None] - offsets[None, None, :]) % sizes[None, :, None]  # (n_atoms, 3, p)
    flat = (points[:, 0, :, None, None] * mesh[1] + points[:, 1, None, :, None]) * mesh[2] + points[:, 2, None, None, :]
    w3 = weights[:, 0, :, None, None] * weights[:, 1, None, :, None] * weights[:, 2, None, None, :]
    flat, w3 = flat.reshape(n_atoms, -1), w3.reshape(n_atoms, -1)  # (n_atoms, p³)

    n_mesh = mesh[0] * mesh[1] * mesh[2]
    grid = charges.new_zeros(n_mesh, n_channels)
    grid = grid.index_add(0, flat.reshape(-1), (w3[:, :, None] * charges[:, None, :]).reshape(-1, n_channels))
    grid_k = torch.fft.fftn(grid.view(*mesh, n_channels), dim=(0, 1, 2))

    freqs = [torch.fft.fftfreq(size, d=1.0 / size, device=positions.device).to(positions.dtype) for size in mesh]
    n = torch.stack(torch.meshgrid(*freqs, indexing="ij"), dim=-1)  # (K1, K2, K3, 3) integers
    k = n @ reciprocal_cell(cell)
    k2 = (k * k).sum(dim=-1)
    k2 = torch.where(k2 > 0, k2, torch.ones_like(k2))
    volume = torch.linalg.det(cell).abs()
    kernel = 4.0 * math.pi / volume * torch.exp(-0.5 * splitting**2 * k2) / k2
    kernel = kernel * (n.abs().sum(dim=-1) > 0)
    moduli = [_bspline_moduli(size, order, positions.dtype, positions.device) for size in mesh]
    kernel = kernel * moduli[0][:, None, None] * moduli[1][None, :, None] * moduli[2][None, None, :]
    potential_mesh = torch.fft.ifftn(grid_k * kernel[..., None], dim=(0, 1, 2)).real * n_mesh
    potential_mesh = potential_mesh.reshape(n_mesh, n_channels)
    return (w3[:, :, None] * potential_mesh[flat]).sum(dim=1)
