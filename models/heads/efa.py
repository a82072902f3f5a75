"""EFA: Euclidean fast attention (Frank, Unke, Müller, Chmiela, 2024) in PyTorch, made periodic.

Queries, keys and values ``q_i, k_i, v_i`` (n_heads × head_dim) are linear maps of the
backbone's invariant features. Euclidean rotary positional encodings ``e^{i k·r}``
make the attention between ``i`` and ``j`` depend on ``r_j − r_i`` through a learned,
isotropic spectral kernel ``f_h(|k|)`` per head:

    y_i^h = Σ_j K_h(r_j − r_i) (q_i^h · k_j^h) v_j^h,
    K_h(r) = (2π)⁻³ ∫ d³k f_h(|k|) cos(k·r)                      (non-periodic)
    K_h(r) = V⁻¹ Σ_{G ≠ 0} f_h(|G|) cos(G·r)                      (periodic)

and is evaluated in linear time: ``Σ_j e^{ik·r_j} k_j v_jᵀ`` is formed once per wave
vector. Non-periodic structures integrate over wave vectors with a Lebedev grid of
directions × Gauss–Legendre nodes in |k| (the reference EFA); periodic cells sum over
reciprocal-lattice vectors instead, which makes the kernel periodic, independent of
the image chosen for each atom, and identical per cell in supercells (docs/long_range.md).
``f_h`` is a Gaussian radial basis with learned weights times a smooth envelope that
vanishes at ``k_max``, so the energy stays continuous as lattice vectors cross it.

Reads ``features.node_features``; returns ``energy`` (n_graphs,) eV (the readout of
``y_i``, summed per structure).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import AtomwiseReadout, PolynomialCutoff
from farfield.models.electrostatics.ewald import half_space_wavevectors
from farfield.models.graph import AtomicGraph
from farfield.models.heads._structures import StructureView, iter_structures
from farfield.models.heads.config import EfaConfig


@functools.lru_cache(maxsize=1)
def lebedev_degrees() -> tuple[int, ...]:
    """Degrees of the Lebedev rules scipy provides."""
    from scipy.integrate import lebedev_rule

    degrees = []
    for degree in range(3, 132, 2):
        try:
            lebedev_rule(degree)
        except (ValueError, NotImplementedError):
            continue
        degrees.append(degree)
    return tuple(degrees)


@functools.lru_cache(maxsize=8)
def _aperiodic_grid(degree: int, radial_nodes: int, max_frequency: float) -> tuple[np.ndarray, np.ndarray]:
    """Wave vectors (n_k, 3) 1/Å and weights (n_k,) 1/Å³ of ``(2π)⁻³ ∫_{|k|<k_max} d³k``."""
    from scipy.integrate import lebedev_rule

    directions, direction_weights = lebedev_rule(degree)  # (3, n_dir), sums to 4π
    nodes, node_weights = np.polynomial.legendre.leggauss(radial_nodes)
    k = 0.5 * max_frequency * (nodes + 1.0)
    radial_weights = 0.5 * max_frequency * node_weights * k**2
    vectors = (k[:, None, None] * directions.T[None, :, :]).reshape(-1, 3)
    weights = (radial_weights[:, None] * direction_weights[None, :]).reshape(-1) / (2 * math.pi) ** 3
    return vectors, weights


class EfaHead(nn.Module):
    """Periodic Euclidean fast attention; ``channels``: width of the backbone's invariant features."""

    def __init__(self, channels: int, config: EfaConfig | None = None):
        super().__init__()
        self.config = config or EfaConfig()
        c = self.config
        self.n_heads, self.head_dim = c.n_heads, c.head_dim
        self.project = nn.Linear(channels, 3 * c.n_heads * c.head_dim)
        self.spectral = nn.Parameter(torch.randn(c.n_heads, c.n_basis) / math.sqrt(c.n_basis))
        self.register_buffer("centers", torch.linspace(0.0, c.max_frequency, c.n_basis))
        self.basis_width = c.max_frequency / c.n_basis
        self.envelope = PolynomialCutoff(c.max_frequency)
        self.readout = AtomwiseReadout(c.n_heads * c.head_dim)

    def spectral_kernel(self, frequencies: torch.Tensor) -> torch.Tensor:
        """``f_h(|k|)`` (n_k, n_heads), dimensionless, from ``frequencies`` (n_k,) 1/Å."""
        basis = torch.exp(-0.5 * ((frequencies[:, None] - self.centers) / self.basis_width) ** 2)
        return (basis @ self.spectral.T) * self.envelope(frequencies)[:, None]

    def _wavevectors(self, s: StructureView) -> tuple[torch.Tensor, torch.Tensor]:
        """Wave vectors (n_k, 3) 1/Å and kernel weights (n_k, n_heads) 1/Å³ of one structure."""
        c = self.config
        if s.periodic:
            k = half_space_wavevectors(s.cell, c.max_frequency)
            volume = torch.linalg.det(s.cell).abs()
            return k, 2.0 * self.spectral_kernel(torch.linalg.vector_norm(k, dim=1)) / volume
        vectors, weights = _aperiodic_grid(c.lebedev_degree, c.radial_nodes, c.max_frequency)
        k = torch.as_tensor(vectors, dtype=s.positions.dtype, device=s.positions.device)
        w = torch.as_tensor(weights, dtype=s.positions.dtype, device=s.positions.device)
        return k, w[:, None] * self.spectral_kernel(torch.linalg.vector_norm(k, dim=1))

    def attend(self, s: StructureView, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``y`` (n, n_heads, head_dim) from ``q, k, v`` (n, n_heads, head_dim) of one structure."""
        wavevectors, weights = self._wavevectors(s)
        phase = s.positions @ wavevectors.T  # (n, n_k)
        cos, sin = torch.cos(phase), torch.sin(phase)
        kv = k[:, :, :, None] * v[:, :, None, :]  # (n, H, d, d)
        m_cos = torch.einsum("jk,jhde->khde", cos, kv) * weights[:, :, None, None]
        m_sin = torch.einsum("jk,jhde->khde", sin, kv) * weights[:, :, None, None]
        mixed = torch.einsum("ik,khde->ihde", cos, m_cos) + torch.einsum("ik,khde->ihde", sin, m_sin)
        return torch.einsum("ihd,ihde->ihe", q, mixed)

    def forward(
        self, graph: AtomicGraph, features: BackboneOutput, positions: torch.Tensor, cell: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        n = features.node_features.shape[0]
        q, k, v = self.project(features.node_features).view(n, 3, self.n_heads, self.head_dim).unbind(dim=1)
        outputs = [self.attend(s, q[s.atoms], k[s.atoms], v[s.atoms]) for s in iter_structures(graph, positions, cell, "efa")]
        atomic = self.readout(torch.cat(outputs).reshape(n, -1))
        energy = atomic.new_zeros(graph.n_graphs).index_add(0, graph.batch, atomic)
        return {"energy": energy}
