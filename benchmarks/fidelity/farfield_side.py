"""farfield's side of the fidelity runs: its heads evaluated on the shared inputs.

Each head is the real ``CelliHead``/``LesHead``/``EfaHead`` given fixed per-atom values (χ, J
and σ for CELLI through ``CelliHead.equilibrate``, the latent charges for LES in place of its
MLP), so that the rest of the forward pass — solve, Ewald/PME, energy terms, autograd
forces — runs as in training. Used by ``run.py``
and by tests/test_fidelity_pins.py; imports no reference code. float64 throughout.
"""

from __future__ import annotations

import math

import ase
import numpy as np
import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import MAX_ATOMIC_NUMBER, EdgeEmbedding
from farfield.models.blocks.mlp import NormalisedSiLU
from farfield.models.graph import AtomicGraph
from farfield.models.heads import CelliHead, EfaHead, LesHead
from farfield.models.heads._structures import StructureView
from farfield.models.heads.celli_parameters import REFERENCE_CHARGE, QeqInputs
from farfield.models.heads.config import CelliConfig, EfaConfig, LesConfig
from farfield.models.heads.efa import _aperiodic_grid


class FixedValues(nn.Module):
    """Stands in for a head's per-atom MLP: returns ``values`` (n_atoms,) as a column."""

    def __init__(self, values):
        super().__init__()
        self.register_buffer("values", torch.as_tensor(values, dtype=torch.float64))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.values[:, None]


def graph_of(structure: dict, total_charge: float = 0.0, cutoff: float = 2.0) -> AtomicGraph:
    """The structure as a graph; its edges (within ``cutoff`` Å) matter to CELLI's parametrisation
    only, not to the heads' sums."""
    atoms = ase.Atoms(numbers=structure["numbers"], positions=structure["positions"],
                      cell=structure["cell"] if structure["periodic"] else None, pbc=structure["periodic"])
    atoms.info["total_charge"] = total_charge
    return AtomicGraph.from_atoms(atoms, cutoff=cutoff)


def _features(graph: AtomicGraph) -> BackboneOutput:
    return BackboneOutput(node_features=torch.zeros(graph.positions.shape[0], 1, dtype=torch.float64))


def celli(structure: dict, inputs: dict, total_charge: float, **config) -> dict:
    """Charges (e) and energy (eV) of ``CelliHead(CelliConfig(**config))`` for given χ (eV/e)
    per atom and hardness J (eV/e²) and width σ (Å) per element (``inputs`` lists them per atom):
    the head's solve and energy terms (``CelliHead.equilibrate``); how a parametrisation
    computes χ, J and σ from a backbone is not part of this comparison."""
    head = CelliHead(1, CelliConfig(**config)).double()
    qeq = QeqInputs(*(torch.as_tensor(inputs[key], dtype=torch.float64) for key in ("chi", "hardness", "widths")))
    graph = graph_of(structure, total_charge)
    with torch.no_grad():
        energy, charges = head.equilibrate(graph, graph.positions, graph.cell, qeq)
    return {"energy": float(energy[0]), "charges": charges.tolist()}


#: The paper's layer (haiku module path of its ``AllegroQeqLayer``) → farfield's reference parametrisation.
CELLI_LAYER_MLPS = {"multi_layer_perceptron": "electronegativity", "multi_layer_perceptron_1": "charge_features",
                    "multi_layer_perceptron_2": "feedback_features"}


def celli_layer_payload(structure: dict, cutoff: float, channels: int, hidden: int, layers: int, n_radial: int,
                        seed: int = 0) -> dict:
    """Inputs of the parametrisation comparison: farfield's edge list of ``structure`` at ``cutoff``
    (Å), seeded invariant node features (n_atoms, channels) and charges q' in the reference's charge
    unit, and the MLP sizes."""
    graph = graph_of(structure, cutoff=cutoff)
    rng = np.random.default_rng(seed)
    n = len(structure["numbers"])
    return {"numbers": structure["numbers"], "positions": structure["positions"], "cutoff": cutoff,
            "edges": graph.edge_index.tolist(), "node_features": rng.standard_normal((n, channels)).tolist(),
            "charges": (3.0 * rng.standard_normal(n)).tolist(), "n_radial": n_radial, "hidden": hidden,
            "layers": layers, "num_species": MAX_ATOMIC_NUMBER + 1, "seed": seed}


def _transplant(inputs: nn.Module, params: dict) -> None:
    """The reference layer's haiku parameters into farfield's ``ReferenceParameters``. e3nn's MLPs
    scale each layer's input by 1/√n_in in the forward pass ("path" normalisation), which farfield
    folds into the weights; haiku stores (n_in, n_out), torch (n_out, n_in)."""
    def tensor(value):
        return torch.as_tensor(np.asarray(value, dtype=np.float64))

    layer = params["allegro_qeq_layer"]
    with torch.no_grad():
        for module, name in CELLI_LAYER_MLPS.items():
            linears = [m for m in getattr(inputs, name) if isinstance(m, nn.Linear)]
            for k, linear in enumerate(linears):
                w = tensor(params[f"allegro_qeq_layer/{module}/linear_{k}"]["w"])
                linear.weight.copy_((w / math.sqrt(w.shape[0])).T)
        inputs.electronegativity_scale.fill_(float(params["allegro_qeq_layer/~/scale_shift_layer"]["scale"]))
        inputs.radius_scale.fill_(float(params["allegro_qeq_layer/~/scale_shift_layer_1"]["scale"]))
        inputs.radius_shift.fill_(float(params["allegro_qeq_layer/~/scale_shift_layer_1"]["shift"]))
        inputs.radius.copy_(tensor(layer["radius"]))
        inputs.raw_hardness.copy_(tensor(layer["hardness"]))
        inputs.charge_embedding.embedding.weight.copy_(tensor(layer["charge_embed"]))


def e3nn_silu_scale(points: int = 1_000_001) -> float:
    """e3nn's ``normalize_function(silu)`` factor: 1/√mean(SiLU(x)²) over ``points`` normal quantiles
    (1.8e-5 above the exact Gaussian moment that ``NormalisedSiLU`` uses)."""
    from scipy.special import erfinv

    x = math.sqrt(2.0) * erfinv(np.linspace(-1.0, 1.0, points + 2)[1:-1])
    return float(1.0 / np.sqrt(np.mean((x / (1.0 + np.exp(-x))) ** 2)))


def celli_layer(payload: dict, params: dict, silu_scale: float | None = None) -> dict:
    """farfield's default (``reference``) CELLI parametrisation with the paper's layer's parameters
    ``params``: χ (eV/e), J (eV/e²), σ (Å) and the feedback Δ for the payload's charges.
    ``silu_scale``: evaluate with this ``NormalisedSiLU`` factor instead of farfield's."""
    if silu_scale is not None:
        default, NormalisedSiLU.scale = NormalisedSiLU.scale, silu_scale
        try:
            return celli_layer(payload, params)
        finally:
            NormalisedSiLU.scale = default
    cutoff, channels = payload["cutoff"], len(payload["node_features"][0])
    config = CelliConfig(hidden=payload["hidden"], hidden_layers=payload["layers"])
    head = CelliHead(channels, config, n_radial=payload["n_radial"], cutoff=cutoff).double()
    _transplant(head.inputs, params)
    structure = {"numbers": payload["numbers"], "positions": payload["positions"], "cell": np.zeros((3, 3)).tolist(),
                 "periodic": False}
    graph = graph_of(structure, cutoff=cutoff)
    if graph.edge_index.tolist() != payload["edges"]:
        raise RuntimeError("farfield's edge list differs from the payload's")
    edges = EdgeEmbedding(cutoff, payload["n_radial"]).double()(graph.edge_vectors())
    h = torch.as_tensor(payload["node_features"], dtype=torch.float64)
    features = BackboneOutput(node_features=h, layer_features=[h], edge_basis=edges.basis, edge_envelope=edges.envelope)
    charges = torch.as_tensor(payload["charges"], dtype=torch.float64) * REFERENCE_CHARGE
    with torch.no_grad():
        qeq = head.inputs(graph, features)
        feedback = head.node_inputs(graph, features, {"charges": charges})
    return {"electronegativity": qeq.electronegativity.tolist(), "hardness": qeq.hardness.tolist(),
            "widths": qeq.widths.tolist(), "feedback": feedback.tolist()}


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
