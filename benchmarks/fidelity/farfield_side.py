"""farfield's side of the fidelity runs: its heads evaluated on the shared inputs.

Each head is the real ``CelliHead``/``LesHead``/``EfaHead`` with its MLP replaced by fixed
per-atom values (χ for CELLI, the latent charges for LES), so that the whole forward pass —
solve, Ewald/PME, energy terms, autograd forces — runs as in training. Used by ``run.py``
and by tests/test_fidelity_pins.py; imports no reference code. float64 throughout.
"""

from __future__ import annotations

import math

import ase
import numpy as np
import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.graph import AtomicGraph
from farfield.models.heads import CelliHead, EfaHead, LesHead
from farfield.models.heads._structures import StructureView
from farfield.models.heads.config import CelliConfig, EfaConfig, LesConfig
from farfield.models.heads.efa import _aperiodic_grid


class FixedValues(nn.Module):
    """Stands in for a head's per-atom MLP: returns ``values`` (n_atoms,) as a column."""

    def __init__(self, values):
        super().__init__()
        self.register_buffer("values", torch.as_tensor(values, dtype=torch.float64))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.values[:, None]


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


def graph_of(structure: dict, total_charge: float = 0.0) -> AtomicGraph:
    atoms = ase.Atoms(numbers=structure["numbers"], positions=structure["positions"],
                      cell=structure["cell"] if structure["periodic"] else None, pbc=structure["periodic"])
    atoms.info["total_charge"] = total_charge
    return AtomicGraph.from_atoms(atoms, cutoff=2.0)  # the heads do not use the graph's edges


def _features(graph: AtomicGraph) -> BackboneOutput:
    return BackboneOutput(node_features=torch.zeros(graph.positions.shape[0], 1, dtype=torch.float64))


def celli(structure: dict, inputs: dict, total_charge: float, **config) -> dict:
    """Charges (e) and energy (eV) of ``CelliHead(CelliConfig(**config))`` for given χ (eV/e)
    per atom and hardness J (eV/e²) and width σ (Å) per element (``inputs`` lists them per atom)."""
    cfg = CelliConfig(**config)
    head = CelliHead(1, cfg).double()
    head.electronegativity = FixedValues(np.asarray(inputs["chi"]) / cfg.initial_hardness)
    with torch.no_grad():
        for z, hardness, width in zip(structure["numbers"], inputs["hardness"], inputs["widths"]):
            head.raw_hardness[z] = _inverse_softplus(hardness)
            head.raw_width[z] = _inverse_softplus(width)
    graph = graph_of(structure, total_charge)
    with torch.no_grad():
        out = head(graph, _features(graph), graph.positions, graph.cell)
    return {"energy": float(out["energy"][0]), "charges": out["charges"].tolist()}


def les(structure: dict, charges: list[float], **config) -> dict:
    """Energy (eV) and forces (eV/Å) of ``LesHead(LesConfig(**config))`` for given latent charges (e)."""
    head = LesHead(1, LesConfig(**config)).double()
    head.latent_charges = FixedValues(charges)
    graph = graph_of(structure)
    positions = graph.positions.clone().requires_grad_(True)
    energy = head(graph, _features(graph), positions, graph.cell)["energy"].sum()
    (grad,) = torch.autograd.grad(energy, positions)
    return {"energy": float(energy.detach()), "forces": (-grad).tolist()}


def efa_head(spectral: list[list[float]] | None = None, seed: int = 0, **config) -> EfaHead:
    """``EfaHead(EfaConfig(**config))`` in float64 with spectral weights ``spectral`` (n_heads, n_basis)
    or, if None, its seeded initial ones."""
    torch.manual_seed(seed)
    head = EfaHead(1, EfaConfig(**config)).double()
    if spectral is not None:
        with torch.no_grad():
            head.spectral.copy_(torch.as_tensor(spectral, dtype=torch.float64))
    return head


def efa_kernel(head: EfaHead, displacements: np.ndarray) -> np.ndarray:
    """farfield's non-periodic attention kernel ``K_h(r)`` (n_displacements, n_heads), 1/Å³·(unitless q·k):
    with q = k = v = 1, atom 0 of a pair at ``r`` gets ``K_h(0) + K_h(r)`` and a lone atom ``K_h(0)``."""
    n_heads = head.config.n_heads
    ones = torch.ones(2, n_heads, 1, dtype=torch.float64)

    def attend(positions: torch.Tensor) -> torch.Tensor:
        n = positions.shape[0]
        view = StructureView(0, slice(0, n), False, positions, torch.zeros(3, 3, dtype=torch.float64))
        return head.attend(view, ones[:n], ones[:n], ones[:n])[0, :, 0]

    with torch.no_grad():
        alone = attend(torch.zeros(1, 3, dtype=torch.float64))
        rows = [attend(torch.tensor(np.stack([np.zeros(3), d]), dtype=torch.float64)) - alone for d in displacements]
    return torch.stack(rows).numpy()


def efa_shells(head: EfaHead) -> tuple[np.ndarray, np.ndarray]:
    """farfield's radial quadrature: nodes ``k_m`` (n_nodes,) 1/Å and shell coefficients
    ``c_hm = f_h(k_m) Σ_{directions} w`` (n_heads, n_nodes), 1/Å³, so that
    ``K_h(r) = Σ_m c_hm S_{k_m}(r)`` with ``S_k`` the Lebedev average of ``cos(k u·r)``."""
    c = head.config
    vectors, weights = _aperiodic_grid(c.lebedev_degree, c.radial_nodes, c.max_frequency)
    norms = np.linalg.norm(vectors, axis=1).reshape(c.radial_nodes, -1)
    nodes = norms[:, 0]
    shell_weights = weights.reshape(c.radial_nodes, -1).sum(axis=1)
    with torch.no_grad():
        spectrum = head.spectral_kernel(torch.as_tensor(nodes, dtype=torch.float64)).numpy()  # (n_nodes, n_heads)
    return nodes, (spectrum * shell_weights[:, None]).T
