"""MACE's symmetric contraction: higher body-order features from powers of the atomic basis.

For each channel ``c`` of the atomic basis ``A[n, c, i]`` (``i`` runs over the stacked
irreps ``0..l_in_max``, natural parity), the output irrep ``L`` is

    B[n, c, L M] = Σ_{ν=1..correlation} Σ_k W_{L ν k c}(Z_n) Σ_{i1..iν} U^{L ν}_{M i1..iν, k} A_{i1} ··· A_{iν}

where ``U^{Lν}_k`` is a basis of the equivariant *symmetric* tensors mapping ν copies of
the irreps to ``L`` (the generalised Clebsch–Gordan coefficients of Batatia et al.,
MACE, NeurIPS 2022) and ``W`` are element-dependent weights. ``U`` is built here by
coupling one irrep at a time with e3nn's Wigner-3j symbols, symmetrising over the ν
indices and orthonormalising (``coupling_basis``).

Computation: because ``U`` is symmetric, only the monomials ``A_{i1}···A_{iν}`` with
``i1 ≤ ... ≤ iν`` are kept (816 instead of 4096 for ν = 3, l ≤ 3), every ν at once, and contracted with the stacked ``U`` in one matrix product; the element-dependent
weights are applied last. Cost per atom and channel: ``n_monomials × Σ_L (2L+1) K_L``.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from e3nn import o3
from torch import nn

from farfield.models.blocks.irreps import irrep_dim, irrep_slice

_RANK_TOL = 1e-9


def _orthonormal_rows(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Orthonormal basis (Frobenius) of the span of ``tensors`` (all the same shape)."""
    if not tensors:
        return []
    stacked = torch.stack([t.reshape(-1) for t in tensors])  # (n, size), n << size
    eigenvalues, vectors = torch.linalg.eigh(stacked @ stacked.T)  # Gram matrix, ascending
    keep = eigenvalues > _RANK_TOL * eigenvalues[-1].clamp_min(1e-300)
    rows = (vectors[:, keep] / eigenvalues[keep].sqrt()).T @ stacked
    return [row.reshape(tensors[0].shape) for row in rows]


def _symmetrize(tensor: torch.Tensor) -> torch.Tensor:
    """Average over permutations of all axes but the first (the output ``M`` axis)."""
    nu = tensor.dim() - 1
    perms = list(itertools.permutations(range(1, nu + 1)))
    return sum(tensor.permute(0, *p) for p in perms) / len(perms)


def _embedding(l: int, dim: int) -> torch.Tensor:
    """(2l+1, dim): irrep ``l`` placed at its slot of the stacked irreps."""
    t = torch.zeros(2 * l + 1, dim, dtype=torch.float64)
    t[:, irrep_slice(l)] = torch.eye(2 * l + 1, dtype=torch.float64)
    return t


def _couple(tensors: dict[tuple[int, int], list[torch.Tensor]], l_in_max: int, targets) -> dict:
    """Couple one more input irrep onto every tensor, keeping ``(l3, parity)`` in ``targets``."""
    dim = irrep_dim(l_in_max)
    out: dict[tuple[int, int], list[torch.Tensor]] = {}
    for (l1, p1), group in tensors.items():
        stacked = torch.stack(group)  # (n, 2l1+1, dim, ..., dim)
        for l2 in range(l_in_max + 1):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                key = (l3, p1 * (-1) ** l2)
                if not targets(key):
                    continue
                w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
                # (n, M, ..., b): the new index j lives in the slot of irrep l2 only
                partial = torch.einsum("abM,na...->nM...b", w3j, stacked)
                coupled = partial.new_zeros(partial.shape[:-1] + (dim,))
                coupled[..., irrep_slice(l2)] = partial
                out.setdefault(key, []).extend(_symmetrize(t) for t in coupled)
    return {key: basis for key, ts in out.items() if (basis := _orthonormal_rows(ts))}


@functools.lru_cache(maxsize=None)
def _symmetric_tensors(l_in_max: int, degree: int, l_cap: int) -> dict[tuple[int, int], list[torch.Tensor]]:
    """All equivariant symmetric tensors of ``degree`` with output ``l ≤ l_cap``, by ``(l, parity)``."""
    dim = irrep_dim(l_in_max)
    if degree == 1:
        return {(l, (-1) ** l): [_embedding(l, dim)] for l in range(min(l_in_max, l_cap) + 1)}
    previous = _symmetric_tensors(l_in_max, degree - 1, l_cap + l_in_max)
    return _couple(previous, l_in_max, lambda key: key[0] <= l_cap)


@functools.lru_cache(maxsize=None)
def coupling_basis(l_in_max: int, l_out: int, nu: int) -> torch.Tensor:
    """Equivariant symmetric tensors ``U[M, i1, ..., iν, k]`` (float64).

    ``i`` index the stacked irreps ``0..l_in_max`` (natural parity), ``M`` the output irrep
    ``l_out`` (natural parity). Built by coupling one irrep at a time with Wigner-3j
    symbols, symmetrising and orthonormalising (over ``(M, i1..iν)``) after each step —
    symmetrisation maps the coupled space onto all symmetric tensors, so nothing is lost.
    ``k`` may be empty (shape ``[..., 0]``) when no such tensor exists.
    """
    dim = irrep_dim(l_in_max)
    target = (l_out, (-1) ** l_out)
    if nu == 1:
        basis = _symmetric_tensors(l_in_max, 1, l_out).get(target, [])
    else:
        previous = _symmetric_tensors(l_in_max, nu - 1, l_out + l_in_max)
        basis = _couple(previous, l_in_max, lambda key: key == target).get(target, [])
    if not basis:
        return torch.zeros((2 * l_out + 1,) + (dim,) * nu + (0,), dtype=torch.float64)
    return torch.stack(basis, dim=-1)


def _monomials_colex(dim: int, nu: int) -> list[tuple[int, ...]]:
    """Index tuples ``i1 ≤ ... ≤ iν``, ordered by the last index, then by the prefix's order."""
    monomials = [(i,) for i in range(dim)]
    for _ in range(nu - 1):
        monomials = [m + (k,) for k in range(dim) for m in monomials if m[-1] <= k]
    return monomials


class SymmetricContraction(nn.Module):
    """Element-dependent symmetric contraction of the atomic basis up to ``correlation``.

    ``atomic_basis``: (N, C, (l_in_max+1)²); ``element_features``: (N, n_element_features)
    → (N, C, (l_out_max+1)²). Weights ``W(Z) = element_features @ P`` (low-rank in
    elements, see ``ElementGatedLinear``), one per ``(L, ν, k, c)``.
    """

    def __init__(self, channels: int, l_in_max: int, l_out_max: int, correlation: int, n_element_features: int):
        super().__init__()
        if correlation < 1:
            raise ValueError(f"correlation must be >= 1, got {correlation}")
        self.channels, self.l_in_max, self.l_out_max, self.correlation = channels, l_in_max, l_out_max, correlation
        dim = irrep_dim(l_in_max)
        monomials = [_monomials_colex(dim, nu) for nu in range(1, correlation + 1)]
        self.n_monomials = [len(m) for m in monomials]
        # degree ν = (degree ν-1 monomial) × A_k: positions in the flattened outer product
        for nu in range(2, correlation + 1):
            position = {m: j for j, m in enumerate(monomials[nu - 2])}
            index = [position[m[:-1]] * dim + m[-1] for m in monomials[nu - 1]]
            self.register_buffer(f"_select_{nu}", torch.tensor(index, dtype=torch.long), persistent=False)
        # Stack U of every (L, ν) into one (n_monomials_total, columns) matrix.
        blocks = []
        self.k_per_l: list[int] = []
        for l_out in range(l_out_max + 1):
            rows = []
            k_total = 0
            for nu, mono in enumerate(monomials, start=1):
                u = coupling_basis(l_in_max, l_out, nu)  # (M, i1..iν, K)
                k = u.shape[-1]
                mat = torch.zeros(sum(self.n_monomials), (2 * l_out + 1), k, dtype=torch.float64)
                offset = sum(self.n_monomials[: nu - 1])
                for j, idx in enumerate(mono):
                    count = math.factorial(nu) / math.prod(math.factorial(idx.count(v)) for v in set(idx))
                    mat[offset + j] = count * u[(slice(None), *idx)]
                rows.append(mat)
                k_total += k
            if k_total == 0:
                raise ValueError(f"no symmetric coupling to l={l_out} from l_in_max={l_in_max}")
            blocks.append(torch.cat(rows, dim=-1).reshape(sum(self.n_monomials), -1))
            self.k_per_l.append(k_total)
        self.register_buffer("u_matrix", torch.cat(blocks, dim=-1).to(torch.get_default_dtype()))
        self.element_weights = nn.Linear(n_element_features, sum(self.k_per_l) * channels, bias=False)
        nn.init.normal_(self.element_weights.weight, std=1.0 / math.sqrt(n_element_features))

    def _monomials(self, a: torch.Tensor) -> torch.Tensor:
        """(N, C, D) → (N, C, Σ_ν n_monomials_ν), degrees 1..correlation in colex order.

        Each degree is an outer product with ``A`` followed by one ``index_select``
        (whose backward is a single ``index_add``), cheap under double backward.
        """
        n, c, dim = a.shape
        powers = [a]
        for nu in range(2, self.correlation + 1):
            outer = (powers[-1][..., :, None] * a[..., None, :]).reshape(n, c, -1)
            powers.append(outer.index_select(-1, getattr(self, f"_select_{nu}")))
        return torch.cat(powers, dim=-1)

    def forward(self, atomic_basis: torch.Tensor, element_features: torch.Tensor) -> torch.Tensor:
        n, c = atomic_basis.shape[0], atomic_basis.shape[1]
        projected = self._monomials(atomic_basis) @ self.u_matrix  # (N, C, Σ_L (2L+1) K_L)
        weights = self.element_weights(element_features).reshape(n, sum(self.k_per_l), c)
        widths = [(2 * l + 1) * k for l, k in enumerate(self.k_per_l)]
        out = []
        for l_out, (block, w) in enumerate(zip(projected.split(widths, dim=-1), weights.split(self.k_per_l, dim=1))):
            block = block.reshape(n, c, 2 * l_out + 1, self.k_per_l[l_out])
            out.append(torch.einsum("ncmk,nkc->ncm", block, w))
        return torch.cat(out, dim=-1)
