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


def _multiplicity(index: tuple[int, ...]) -> int:
    """Orderings of a sorted index tuple: ν! / Π (repeats)!."""
    return math.factorial(len(index)) // math.prod(math.factorial(index.count(v)) for v in set(index))


class SymmetricContraction(nn.Module):
    """Element-dependent symmetric contraction of the atomic basis up to ``correlation``.

    ``atomic_basis``: (N, C, (l_in_max+1)²); ``element_features``: (N, n_element_features)
    → (N, C, (l_out_max+1)²). Weights ``W(Z) = element_features @ P`` (low-rank in
    elements, see ``ElementGatedLinear``), one per ``(L, ν, k, c)``.

    Degrees 1 and 2 are one matrix product of ``[A, A⊗A]`` (symmetric pairs only) with
    the stacked ``U``; a degree ``ν ≥ 3`` contracts the pairs with ``U`` in a matrix
    product first and multiplies the remaining ``ν - 2`` factors afterwards, so no
    degree-3 tensor is ever formed and the double backward of force training stays cheap.
    """

    def __init__(self, channels: int, l_in_max: int, l_out_max: int, correlation: int, n_element_features: int):
        super().__init__()
        if not 1 <= correlation <= 4:
            raise ValueError(f"correlation must be between 1 and 4, got {correlation}")
        self.channels, self.l_in_max, self.l_out_max, self.correlation = channels, l_in_max, l_out_max, correlation
        dim = irrep_dim(l_in_max)
        pairs = _monomials_colex(dim, 2)
        self.register_buffer("_pair_index", torch.tensor([i * dim + j for i, j in pairs]), persistent=False)
        # k_per_nu[ν-1][L]: independent couplings of ν factors to irrep L
        bases = [[coupling_basis(l_in_max, l, nu) for l in range(l_out_max + 1)] for nu in range(1, correlation + 1)]
        self.k_per_nu = [[u.shape[-1] for u in per_l] for per_l in bases]
        self.k_per_l = [sum(k[l] for k in self.k_per_nu) for l in range(l_out_max + 1)]
        for l, k in enumerate(self.k_per_l):
            if k == 0:
                raise ValueError(f"no symmetric coupling to l={l} from l_in_max={l_in_max}")

        def columns(u: torch.Tensor, index: tuple) -> torch.Tensor:  # u[M, *index, k] → ((2L+1)·K,)
            return u[(slice(None), *index)].reshape(-1)

        def matrix(nu: int, rows: list[tuple], outer: list[tuple]) -> torch.Tensor:
            """(len(rows), len(outer) · Q_ν): rows × outer monomials × (L, M, k)."""
            mat = torch.zeros(len(rows), len(outer), sum((2 * l + 1) * k for l, k in enumerate(self.k_per_nu[nu - 1])),
                              dtype=torch.float64)
            for r, row in enumerate(rows):
                for o, rest in enumerate(outer):
                    index = row + rest
                    count = _multiplicity(row) * _multiplicity(rest) if rest else _multiplicity(row)
                    mat[r, o] = count * torch.cat([columns(u, index) for u in bases[nu - 1]])
            return mat.reshape(len(rows), -1)

        low = matrix(1, [(i,) for i in range(dim)], [()])  # rows: A, then (ν ≥ 2) the pairs
        if correlation >= 2:
            low = torch.block_diag(low, matrix(2, pairs, [()]))
        dtype = torch.get_default_dtype()
        self.register_buffer("u_low", low.to(dtype))
        self.outer_monomials = []
        for nu in range(3, correlation + 1):
            outer = _monomials_colex(dim, nu - 2)
            self.outer_monomials.append(len(outer))
            self.register_buffer(f"u_{nu}", matrix(nu, pairs, outer).to(dtype))
        self.element_weights = nn.Linear(n_element_features, sum(self.k_per_l) * channels, bias=False)
        nn.init.normal_(self.element_weights.weight, std=1.0 / math.sqrt(n_element_features))

    def _pairs(self, a: torch.Tensor) -> torch.Tensor:
        """(N, C, D) → (N, C, D(D+1)/2): ``A_i A_j`` for ``i ≤ j`` (colex order)."""
        n, c, _ = a.shape
        return (a[..., :, None] * a[..., None, :]).reshape(n, c, -1).index_select(-1, self._pair_index)

    def forward(self, atomic_basis: torch.Tensor, element_features: torch.Tensor) -> torch.Tensor:
        a = atomic_basis
        n, c, _ = a.shape
        if self.correlation == 1:
            pairs, low = None, a @ self.u_low  # (N, C, Q_1)
        else:
            pairs = self._pairs(a)
            low = torch.cat([a, pairs], dim=-1) @ self.u_low  # (N, C, Q_1 + Q_2)
        widths = [[(2 * l + 1) * k for l, k in enumerate(ks)] for ks in self.k_per_nu]
        parts = list(low.split([sum(w) for w in widths[:2]], dim=-1))
        outer_factor = {1: a, 2: pairs}
        for nu, n_outer in zip(range(3, self.correlation + 1), self.outer_monomials):
            contracted = (pairs @ getattr(self, f"u_{nu}")).reshape(n * c, n_outer, -1)
            factor = outer_factor[nu - 2].reshape(n * c, 1, n_outer)
            parts.append(torch.bmm(factor, contracted).reshape(n, c, -1))
        per_nu = [part.split(w, dim=-1) for part, w in zip(parts, widths)]
        weights = self.element_weights(element_features).reshape(n, sum(self.k_per_l), c)
        out = []
        for l, w in enumerate(weights.split(self.k_per_l, dim=1)):
            block = torch.cat([blocks[l].reshape(n, c, 2 * l + 1, -1) for blocks in per_nu], dim=-1)
            out.append(torch.einsum("ncmk,nkc->ncm", block, w))
        return torch.cat(out, dim=-1)
