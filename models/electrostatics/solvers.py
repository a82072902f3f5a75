"""Charge equilibration: minimise ``Σ χ_i q_i + ½ qᵀ A q`` subject to ``Σ q_i = Q``.

``A`` (n_atoms, n_atoms), eV/e², is symmetric and positive definite on neutral
charge vectors (hardness on the diagonal plus the Coulomb matrix of Gaussian
charges; in small periodic cells with wide Gaussians the uniform direction can be
negative, so nothing here assumes more); ``χ`` (n_atoms,) eV/e is the
electronegativity; ``Q`` (e) the total charge. The minimiser solves the bordered system

    [A 1; 1ᵀ 0] [q; λ] = [−χ; Q].

``equilibrate_dense`` builds and solves it (O(n³), exact, differentiable by autograd to
any order). ``equilibrate_cg`` never forms ``A``: with ``q = Q/n 1 + u``, ``u ⊥ 1``,
it solves the projected system ``(P A P + κ 11ᵀ/n) u = −P (χ + A Q/n 1)``
(``P = I − 11ᵀ/n``; the κ term makes the operator definite on all vectors without
changing ``u``) by Jacobi-preconditioned conjugate gradients with a matrix-free
``A v`` (Ewald or PME). Its
gradient comes from implicit differentiation (one more CG solve with the same
operator), and the backward pass is itself differentiable, so forces — and
force-trained parameters — see the solve exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: A matrix-free operator ``(v (n, C), *inputs) -> A(inputs) v (n, C)``.
MatVec = Callable[..., torch.Tensor]


def equilibrate_dense(matrix: torch.Tensor, electronegativity: torch.Tensor, total_charge: torch.Tensor) -> torch.Tensor:
    """Charges (n_atoms,), e, from ``matrix`` (n, n) eV/e², ``electronegativity`` (n,) eV/e, ``total_charge`` () e."""
    n = matrix.shape[0]
    ones = matrix.new_ones(n, 1)
    bordered = torch.cat([torch.cat([matrix, ones], dim=1), torch.cat([ones.T, matrix.new_zeros(1, 1)], dim=1)], dim=0)
    rhs = torch.cat([-electronegativity, total_charge.reshape(1).to(matrix.dtype)])
    return torch.linalg.solve(bordered, rhs)[:n]


def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    tol: float,
    max_iter: int,
    preconditioner: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve ``A x = rhs`` column by column for SPD ``A`` (``apply``: (n, C) → (n, C)).

    ``preconditioner``: (n,) approximate inverse diagonal of ``A`` (Jacobi), or None.
    Stops when every column's residual norm is below ``tol`` × its right-hand side norm;
    raises if ``max_iter`` iterations do not get there.
    """
    scale = torch.ones_like(rhs[:, :1]) if preconditioner is None else preconditioner[:, None].to(rhs.dtype)
    x = torch.zeros_like(rhs)
    residual = rhs.clone()
    z = scale * residual
    direction = z.clone()
    rz = (residual * z).sum(dim=0)
    target = (tol * torch.linalg.vector_norm(rhs, dim=0)).pow(2).clamp_min(1e-300)
    for _ in range(max_iter):
        if bool(((residual * residual).sum(dim=0) <= target).all()):
            return x
        a_direction = apply(direction)
        curvature = (direction * a_direction).sum(dim=0)
        alpha = torch.where(curvature > 0, rz / torch.where(curvature > 0, curvature, 1.0), 0.0)
        x = x + alpha * direction
        residual = residual - alpha * a_direction
        z = scale * residual
        rz_new = (residual * z).sum(dim=0)
        direction = z + torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), 0.0) * direction
        rz = rz_new
    rr = (residual * residual).sum(dim=0)
    if bool((rr <= target).all()):
        return x
    raise RuntimeError(
        f"conjugate gradients did not converge in {max_iter} iterations "
        f"(relative residuals {(rr / target).sqrt().mul(tol).tolist()}, tolerance {tol}); raise cg_max_iter"
    )


class _ImplicitSolve(torch.autograd.Function):
    """``x = A(inputs)⁻¹ rhs`` by CG, differentiated implicitly: ``ḡ_rhs = A⁻¹ ḡ``,
    ``ḡ_inputs = −∂(vᵀ A(inputs) x)/∂inputs`` with ``v = A⁻¹ ḡ`` (A symmetric)."""

    @staticmethod
    def forward(ctx, matvec: MatVec, tol: float, max_iter: int, preconditioner, rhs: torch.Tensor, *inputs: torch.Tensor):
        with torch.no_grad():
            solution = conjugate_gradient(lambda v: matvec(v, *inputs), rhs, tol, max_iter, preconditioner)
        ctx.matvec, ctx.tol, ctx.max_iter, ctx.preconditioner = matvec, tol, max_iter, preconditioner
        ctx.save_for_backward(solution, *inputs)
        return solution

    @staticmethod
    def backward(ctx, grad_solution: torch.Tensor):
        create_graph = torch.is_grad_enabled()
        solution, *inputs = ctx.saved_tensors
        adjoint = _ImplicitSolve.apply(ctx.matvec, ctx.tol, ctx.max_iter, ctx.preconditioner, grad_solution, *inputs)
        wanted = [k for k, inp in enumerate(inputs) if ctx.needs_input_grad[5 + k]]
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        if wanted:
            with torch.enable_grad():
                # Fresh aliases: the partial derivative holds ``solution`` and ``adjoint`` fixed,
                # while the graph still connects them (for double backward).
                aliases = [inp.view_as(inp) for inp in inputs]
                product = ctx.matvec(solution, *aliases)
                partial = torch.autograd.grad(
                    product, [aliases[k] for k in wanted], grad_outputs=adjoint,
                    create_graph=create_graph,
                    allow_unused=True,
                )
            for k, g in zip(wanted, partial):
                grads[k] = None if g is None else -g
        return (None, None, None, None, adjoint, *grads)


def implicit_solve(
    matvec: MatVec,
    rhs: torch.Tensor,
    inputs: tuple[torch.Tensor, ...],
    tol: float,
    max_iter: int,
    preconditioner: torch.Tensor | None = None,
) -> torch.Tensor:
    """``A(inputs)⁻¹ rhs`` (n, C) by (Jacobi-preconditioned) CG with implicit gradients;
    every tensor ``matvec`` depends on must be in ``inputs`` (captured tensors would get
    no gradient). ``preconditioner``: (n,) detached approximate inverse diagonal."""
    return _ImplicitSolve.apply(matvec, tol, max_iter, preconditioner, rhs, *inputs)


def equilibrate_cg(
    matvec: MatVec,
    inputs: tuple[torch.Tensor, ...],
    electronegativity: torch.Tensor,
    total_charge: torch.Tensor,
    tol: float = 1e-10,
    max_iter: int = 1000,
    diagonal: torch.Tensor | None = None,
) -> torch.Tensor:
    """Charges (n_atoms,), e, with ``A`` given by ``matvec(v, *inputs)`` (see module docstring).

    ``diagonal``: (n,) eV/e², an estimate of ``A``'s diagonal for Jacobi preconditioning.
    The solution is projected onto ``Σ u = 0`` so the constraint holds to rounding."""
    n = electronegativity.shape[0]
    uniform = (total_charge.to(electronegativity.dtype) / n) * torch.ones_like(electronegativity)
    kappa = float(matvec(torch.ones_like(electronegativity)[:, None], *inputs).detach().abs().mean()) + 1.0

    def project(v: torch.Tensor) -> torch.Tensor:
        return v - v.mean(dim=0, keepdim=True)

    def projected(v: torch.Tensor, *operator_inputs: torch.Tensor) -> torch.Tensor:
        return project(matvec(project(v), *operator_inputs)) + kappa * v.mean(dim=0, keepdim=True)

    rhs = -project((electronegativity + matvec(uniform[:, None], *inputs)[:, 0])[:, None])
    preconditioner = None if diagonal is None else 1.0 / diagonal.detach().clamp_min(1e-12)
    return uniform + project(implicit_solve(projected, rhs, inputs, tol, max_iter, preconditioner))[:, 0]
