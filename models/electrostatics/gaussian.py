"""Pair kernels of Gaussian-smeared charges and their Ewald splitting.

A charge ``q_i`` smeared as a normalised Gaussian of standard deviation ``σ_i`` (Å)
interacts with another (``σ_j``) through

    φ(r) = erf(r / (√2 γ_ij)) / r,        γ_ij = sqrt(σ_i² + σ_j²)      (1/Å)

which tends to the point-charge ``1/r`` for ``γ → 0``. Ewald splits ``1/r`` with a
Gaussian of standard deviation ``η`` (the *splitting*, Å) into a long-range part
``erf(r/(√2η))/r`` (summed in reciprocal space) and the rest, so the real-space part
of the smeared kernel is

    φ_real(r) = [erfc(r/(√2η)) − erfc(r/(√2γ_ij))] / r,

short-ranged (it decays like ``erfc(r/(√2 max(η, γ)))``). All kernels here are in 1/Å;
multiply by ``COULOMB_CONSTANT`` for eV/e².
"""

from __future__ import annotations

import math

import torch

_SQRT2 = math.sqrt(2.0)


def pair_widths(widths_i: torch.Tensor | None, widths_j: torch.Tensor | None) -> torch.Tensor | None:
    """``γ_ij = sqrt(σ_i² + σ_j²)`` (n_pairs,), Å, or None for point charges."""
    if widths_i is None:
        return None
    return torch.sqrt(widths_i.pow(2) + widths_j.pow(2))


def _erfc_of_width(distances: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
    """``erfc(r/(√2γ))``, 0 for point charges (γ = 0 or None)."""
    if gamma is None:
        return torch.zeros_like(distances)
    safe = gamma.clamp_min(1e-12)
    return torch.where(gamma > 0, torch.special.erfc(distances / (_SQRT2 * safe)), torch.zeros_like(distances))


def smeared_kernel(distances: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
    """``erf(r/(√2γ))/r`` (n_pairs,), 1/Å, for ``distances`` (n_pairs,) Å > 0."""
    return (1.0 - _erfc_of_width(distances, gamma)) / distances


def real_space_kernel(distances: torch.Tensor, gamma: torch.Tensor | None, splitting: float) -> torch.Tensor:
    """``[erfc(r/(√2η)) − erfc(r/(√2γ))]/r`` (n_pairs,), 1/Å: the Ewald real-space part."""
    screened = torch.special.erfc(distances / (_SQRT2 * splitting))
    return (screened - _erfc_of_width(distances, gamma)) / distances


def ewald_self_coefficient(splitting: float) -> float:
    """``√(2/π)/η`` (1/Å): the long-range kernel at r = 0, removed from each charge's own potential."""
    return math.sqrt(2.0 / math.pi) / splitting


def gaussian_self_coefficient(widths: torch.Tensor) -> torch.Tensor:
    """``1/(√π σ_i)`` (n_atoms,), 1/Å: ``E_self = k_e Σ q_i² / (2√π σ_i)`` is the self-energy of each Gaussian."""
    return 1.0 / (math.sqrt(math.pi) * widths)
