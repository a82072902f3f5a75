"""Reciprocal-space part of the Ewald sum by explicit summation over wave vectors.

For charges ``q_j`` (e) in a cell of volume ``V`` (Å³) the long-range potential
(``erf(r/(√2η))/r`` summed over all images, the charge's own term included) is

    φ_i = (4π/V) Σ_{k≠0, |k|<k_c} exp(−η² k²/2)/k² Re[e^{−i k·r_i} S(k)],   S(k) = Σ_j q_j e^{i k·r_j}

(1/Å × e). Only half of k-space is enumerated (``k`` and ``−k`` contribute alike).
The cost is O(n_atoms × n_k); ``pme.py`` does the same on a mesh in O(n log n).

With per-atom ``widths`` σ_j (Å) each charge also carries its Gaussian form factor
``exp(−σ_j² k²/2)`` (in ``S(k)`` and at the receiving atom), so with η = 0 the sum is the
whole interaction ``erf(r/(√2γ_ij))/r`` of Gaussian charges, ``γ_ij² = σ_i² + σ_j²``:
no real-space part is left (``coulomb.periodic_potential`` with ``reciprocal_only``).
"""

from __future__ import annotations

import math

import torch


def reciprocal_cell(cell: torch.Tensor) -> torch.Tensor:
    """(3, 3), 1/Å: rows ``b_j`` with ``a_i · b_j = 2π δ_ij`` for the cell rows ``a_i`` (Å)."""
    return 2.0 * math.pi * torch.linalg.inv(cell).transpose(0, 1)


def half_space_wavevectors(cell: torch.Tensor, kspace_cutoff: float) -> torch.Tensor:
    """Wave vectors ``k = n @ B`` with ``0 < |k| ≤ kspace_cutoff`` (1/Å), one of each ±k pair.

    Returns (n_k, 3), 1/Å, differentiable in ``cell`` (3, 3) Å; the integer set ``n`` is
    chosen on the detached cell (``|n_a| ≤ k_c |a_a| / 2π``).
    """
    lengths = torch.linalg.vector_norm(cell.detach(), dim=1)
    n_max = [int(math.floor(kspace_cutoff * float(length) / (2 * math.pi))) for length in lengths]
    ranges = [torch.arange(-m, m + 1, device=cell.device) for m in n_max]
    n = torch.cartesian_prod(*ranges).reshape(-1, 3)
    half = (n[:, 0] > 0) | ((n[:, 0] == 0) & (n[:, 1] > 0)) | ((n[:, 0] == 0) & (n[:, 1] == 0) & (n[:, 2] > 0))
    n = n[half].to(cell.dtype)
    k = n @ reciprocal_cell(cell)
    inside = torch.linalg.vector_norm(k.detach(), dim=1) <= kspace_cutoff
    return k[inside]


def _kspace_weights(k: torch.Tensor, cell: torch.Tensor, splitting: float) -> torch.Tensor:
    """(n_k,), Å: ``2 × (4π/V) exp(−η²k²/2)/k²`` (factor 2 for the omitted −k)."""
    k2 = (k * k).sum(dim=1)
    volume = torch.linalg.det(cell).abs()
    return 8.0 * math.pi / volume * torch.exp(-0.5 * splitting**2 * k2) / k2


def _phases(
    positions: torch.Tensor, k: torch.Tensor, widths: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos(k·r_i)`` and ``sin(k·r_i)`` (n_atoms, n_k), times the form factors ``exp(−σ_i²k²/2)`` if ``widths``."""
    phase = positions @ k.T
    cos, sin = torch.cos(phase), torch.sin(phase)
    if widths is None:
        return cos, sin
    form = torch.exp(-0.5 * widths[:, None].pow(2) * (k * k).sum(dim=1)[None, :])
    return cos * form, sin * form


def kspace_potential(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    splitting: float,
    kspace_cutoff: float,
    widths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Long-range potential (n_atoms, n_channels), e/Å, of ``charges`` (n_atoms, n_channels) e.

    ``positions``: (n_atoms, 3) Å; ``cell``: (3, 3) Å; ``splitting`` η (Å); ``kspace_cutoff`` (1/Å);
    ``widths``: (n_atoms,) Å, Gaussian form factors of the charges, or None (points).
    """
    k = half_space_wavevectors(cell, kspace_cutoff)
    cos, sin = _phases(positions, k, widths)
    weights = _kspace_weights(k, cell, splitting)
    s_cos, s_sin = cos.T @ charges, sin.T @ charges  # (n_k, n_channels)
    return cos @ (weights[:, None] * s_cos) + sin @ (weights[:, None] * s_sin)


def kspace_matrix(
    positions: torch.Tensor, cell: torch.Tensor, splitting: float, kspace_cutoff: float,
    widths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dense matrix (n_atoms, n_atoms), 1/Å, of ``kspace_potential``: ``Σ_k w_k f_i f_j cos(k·(r_i − r_j))``."""
    k = half_space_wavevectors(cell, kspace_cutoff)
    cos, sin = _phases(positions, k, widths)
    weights = _kspace_weights(k, cell, splitting)
    return (cos * weights) @ cos.T + (sin * weights) @ sin.T
