"""CELLI's per-atom inputs from the backbone: electronegativity χ, hardness J, Gaussian width σ,
and what is fed back into the backbone (``model.heads.celli.parametrisation``).

``reference`` (default) is the paper's CELLI layer: chemutils ``AllegroQeqLayer`` as its MACE
models call it (``qeq_rbf``, ``learn_radius``; msan9908/MLIP_generalizability @ 9f22f21, read,
not copied). The reference computes in nm, kJ/mol and charges scaled so that k_e = 1; farfield
keeps those units for the raw parameters, so that they start where the paper's do:
``L`` = 10 Å, ``ε`` = 1 kJ/mol, charge unit ``c = √(ε L / k_e)`` ≈ e/11.79 (the paper's
scripts use e/11.87, a 1.4 % larger k_e). With ``h_i`` the backbone's invariant features after
its first interaction (where the paper's MACE places the layer), ``B`` its radial Bessel basis
in the reference's normalisation ``√2 sin(nπ r/r_c)/(r/r_c)`` (``r_c^{3/2}`` times
``BackboneOutput.edge_basis``) and ``u`` its cutoff envelope (``edge_envelope``):

    e_ij = [h_i u(r_ij), B(r_ij) u(r_ij)]                      edge features, j a neighbour of i
    χ_i  = (ε/c) softplus(s) Σ_j MLP_χ(e_ij)                   eV/e;  s = 1 at start
    J_Z  = (ε/c²) softplus(h_Z) = (k_e/L) softplus(h_Z)          eV/e²; h_Z = 10 at start (14.40 eV/e²)
    σ_Z  = L softplus((softplus(a) ρ_Z + b) r_Z / L)            Å;     ρ_Z = 0, a = 4, b = 0.5 at start
    Δ_i  = Σ_j u(r_ij) MLP_f([e_ij, MLP_w([q_i/c, t_Z_i])])     fed back (n_atoms, channels)

``r_Z`` is the covalent radius plus 0.01 Å (the reference's ``(1 + r_pm)/100`` Å, with ASE's
covalent radii, which equal the reference's table for its 75 elements), so σ starts at ≈ 7.1 Å
for every element. ``t_Z`` is a learned element embedding (N(0, 1) at start); the MLPs have no
biases (so the edge sums are smooth at the cutoff) and start as e3nn's do (``MLP(e3nn_init=True)``),
and the widths enter the energy without gradient: they learn only through the charges, as in
the reference. The backbone adds a learned linear map of ``Δ_i`` to
the invariant inputs of its layers after the first (``blocks.node_inputs``); the paper's MACE
adds ``Δ_i`` itself before its second interaction.

``farfield`` is the parametrisation farfield had before the fidelity check: χ_i an MLP of the
backbone's final invariant features times ``initial_hardness`` (so that order-one outputs give
order-one charges), per-element ``J_Z`` and ``σ_Z`` learned through softplus from
``initial_hardness`` (eV/e²) and ``initial_width`` (Å), the charges themselves fed back, and
gradients of the energy in σ kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from ase.data import covalent_radii
from torch import nn
from torch.nn.functional import softplus

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import MAX_ATOMIC_NUMBER, MLP, ElementEmbedding, scatter_sum
from farfield.models.electrostatics import COULOMB_CONSTANT
from farfield.models.graph import AtomicGraph
from farfield.models.heads.config import CelliConfig

#: The reference's units: length (Å), energy (eV) and the charge (e) in which k_e = 1.
REFERENCE_LENGTH = 10.0
REFERENCE_ENERGY = 1000.0 / (6.02214076e23 * 1.602176634e-19)  # 1 kJ/mol in eV (exact SI constants)
REFERENCE_CHARGE = math.sqrt(REFERENCE_ENERGY * REFERENCE_LENGTH / COULOMB_CONSTANT)
#: Starting values of the reference's raw parameters (see the module docstring).
REFERENCE_INITIAL = {"electronegativity_scale": 1.0, "hardness": 10.0, "radius": 0.0,
                     "radius_scale": 4.0, "radius_shift": 0.5}
#: Added to the covalent radius (Å): the reference's radii are ``(1 + r_pm)/100`` Å.
RADIUS_OFFSET = 0.01


def inverse_softplus(value: float) -> float:
    """``x`` with ``softplus(x) = value`` (> 0)."""
    return value + math.log(-math.expm1(-value))


@dataclass
class QeqInputs:
    """Per-atom inputs of the charge equilibration, each (n_atoms,): ``electronegativity``
    χ (eV/e), ``hardness`` J (eV/e²), ``widths`` σ (Å)."""

    electronegativity: torch.Tensor
    hardness: torch.Tensor
    widths: torch.Tensor


def _edge_features(
    graph: AtomicGraph, features: BackboneOutput, basis_scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(center, e_ij, u_ij)``: the center atom of each edge (n_edges,), the edge features
    ``[h_i u, basis_scale · B u]`` (n_edges, channels + n_radial) and the envelope (n_edges,)."""
    if features.edge_basis is None or features.edge_envelope is None or not features.layer_features:
        raise ValueError(
            "CELLI's reference parametrisation builds edge features from BackboneOutput.layer_features, "
            "edge_basis and edge_envelope, which this backbone does not provide; "
            "set model.heads.celli.parametrisation: farfield to read node features only"
        )
    center = graph.edge_index[0]
    envelope = features.edge_envelope
    scalars = features.layer_features[0][center] * envelope[:, None]
    return center, torch.cat([scalars, basis_scale * features.edge_basis * envelope[:, None]], dim=1), envelope


class ReferenceParameters(nn.Module):
    """The paper's parametrisation (module docstring). ``channels``: width of the backbone's
    invariant features; ``n_radial``: width of its radial basis; ``cutoff``: its cutoff (Å)."""

    detach_widths_in_energy = True

    def __init__(self, channels: int, n_radial: int, cutoff: float, config: CelliConfig):
        super().__init__()
        hidden, layers = config.mlp_widths()
        edge_width = channels + n_radial
        n_elements = MAX_ATOMIC_NUMBER + 1
        self.basis_scale = float(cutoff) ** 1.5
        self.electronegativity = MLP([edge_width] + [hidden] * layers + [1], bias=False, e3nn_init=True)
        self.electronegativity_scale = nn.Parameter(torch.tensor(REFERENCE_INITIAL["electronegativity_scale"]))
        self.raw_hardness = nn.Parameter(torch.full((n_elements,), REFERENCE_INITIAL["hardness"]))
        self.radius = nn.Parameter(torch.full((n_elements,), REFERENCE_INITIAL["radius"]))
        self.radius_scale = nn.Parameter(torch.tensor(REFERENCE_INITIAL["radius_scale"]))
        self.radius_shift = nn.Parameter(torch.tensor(REFERENCE_INITIAL["radius_shift"]))
        radii = torch.as_tensor(covalent_radii[:n_elements], dtype=torch.get_default_dtype()) + RADIUS_OFFSET
        self.register_buffer("covalent_radii", radii)
        self.charge_embedding = ElementEmbedding(hidden)
        self.charge_features = MLP([1 + hidden] + [hidden] * layers, bias=False, e3nn_init=True)
        self.feedback_features = MLP([edge_width + hidden] + [channels] * layers, bias=False, e3nn_init=True)

    @staticmethod
    def feedback_width(channels: int) -> int:
        return channels

    def hardness(self, numbers: torch.Tensor) -> torch.Tensor:
        """``J_Z`` (n_atoms,), eV/e²."""
        return (COULOMB_CONSTANT / REFERENCE_LENGTH) * softplus(self.raw_hardness)[numbers]

    def widths(self, numbers: torch.Tensor) -> torch.Tensor:
        """``σ_Z`` (n_atoms,), Å."""
        scale = softplus(self.radius_scale) * self.radius[numbers] + self.radius_shift
        return REFERENCE_LENGTH * softplus(scale * self.covalent_radii[numbers] / REFERENCE_LENGTH)

    def forward(self, graph: AtomicGraph, features: BackboneOutput) -> QeqInputs:
        center, edges, _ = _edge_features(graph, features, self.basis_scale)
        summed = scatter_sum(self.electronegativity(edges).squeeze(-1), center, graph.numbers.shape[0])
        chi = (REFERENCE_ENERGY / REFERENCE_CHARGE) * softplus(self.electronegativity_scale) * summed
        return QeqInputs(chi, self.hardness(graph.numbers), self.widths(graph.numbers))

    def feedback(self, graph: AtomicGraph, features: BackboneOutput, charges: torch.Tensor) -> torch.Tensor:
        """``Δ_i`` (n_atoms, channels) from the equilibrated ``charges`` (n_atoms,) e."""
        center, edges, envelope = _edge_features(graph, features, self.basis_scale)
        per_atom = self.charge_features(
            torch.cat([(charges / REFERENCE_CHARGE)[:, None], self.charge_embedding(graph.numbers)], dim=1)
        )
        messages = self.feedback_features(torch.cat([edges, per_atom[center]], dim=1)) * envelope[:, None]
        return scatter_sum(messages, center, graph.numbers.shape[0])


class FarfieldParameters(nn.Module):
    """farfield's own parametrisation (module docstring); ``channels``: width of the backbone's
    invariant features (``n_radial`` and ``cutoff`` are unused)."""

    detach_widths_in_energy = False

    def __init__(self, channels: int, n_radial: int, cutoff: float, config: CelliConfig):
        super().__init__()
        hidden, layers = config.mlp_widths()
        self.scale = config.initial_hardness
        self.electronegativity = MLP([channels] + [hidden] * layers + [1])
        n_elements = MAX_ATOMIC_NUMBER + 1
        self.raw_hardness = nn.Parameter(torch.full((n_elements,), inverse_softplus(config.initial_hardness)))
        self.raw_width = nn.Parameter(torch.full((n_elements,), inverse_softplus(config.initial_width)))

    @staticmethod
    def feedback_width(channels: int) -> int:
        return 1

    def hardness(self, numbers: torch.Tensor) -> torch.Tensor:
        """``J_Z`` (n_atoms,), eV/e²."""
        return softplus(self.raw_hardness)[numbers]

    def widths(self, numbers: torch.Tensor) -> torch.Tensor:
        """``σ_Z`` (n_atoms,), Å."""
        return softplus(self.raw_width)[numbers]

    def forward(self, graph: AtomicGraph, features: BackboneOutput) -> QeqInputs:
        chi = self.electronegativity(features.node_features).squeeze(-1) * self.scale
        return QeqInputs(chi, self.hardness(graph.numbers), self.widths(graph.numbers))

    def feedback(self, graph: AtomicGraph, features: BackboneOutput, charges: torch.Tensor) -> torch.Tensor:
        """The charges themselves, (n_atoms, 1) e."""
        return charges[:, None]


#: ``celli.parametrisation`` → its module class.
PARAMETRISATIONS: dict[str, type[nn.Module]] = {"reference": ReferenceParameters, "farfield": FarfieldParameters}
