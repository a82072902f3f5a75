"""The ``Potential``: a backbone, zero or more long-range heads and reference energies.

The total energy is a sum of terms; forces and stress come from one autograd pass
over it, so every model is conservative by construction:

    F = -∂E/∂r           (n_atoms, 3), eV/Å
    σ = (1/V) ∂E/∂ε      (n_graphs, 3, 3), eV/Å³, ASE sign (positive = tensile)

where ``ε`` is a symmetric strain applied to positions and cell alike.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from farfield.models.backbones.base import BackboneOutput
from farfield.models.blocks import AtomwiseReadout, EdgeEnergyReadout, ReferenceEnergies, scatter_sum
from farfield.models.graph import AtomicGraph
from farfield.models.heads import CHARGE_HEADS

#: Keyword of ``backbone.forward`` taking extra per-atom invariant inputs (n_atoms, k);
#: CELLI's charge feedback passes what it computes from the equilibrated charges through it.
NODE_INPUTS_ARGUMENT = "node_inputs"


class Potential(nn.Module):
    """Energy model ``E = Σ_i (E0[Z_i] + readout(h_i)) + Σ_heads E_head``.

    With an ``EdgeEnergyReadout`` (Allegro) ``readout(h_i)`` is instead the sum of the
    energies of the edges centred on ``i``, read from ``BackboneOutput.edge_features``.

    ``backbone``: maps ``(graph, edge_vectors)`` to a ``BackboneOutput``.
    ``heads``: long-range heads by name; each returns a dict with ``energy`` (n_graphs,)
    eV and optionally ``charges`` (n_atoms,) e (see farfield.models.heads). A head with
    ``feeds_back_charges`` runs on the first backbone pass; the backbone then runs again
    with ``head.node_inputs(graph, features, outputs)`` (computed from its charges) as extra
    per-atom input (``NODE_INPUTS_ARGUMENT``), and the readout and the other heads read
    that second pass.
    ``readout``: invariant features → per-atom energy (eV): ``AtomwiseReadout`` of
    ``node_features`` or ``EdgeEnergyReadout`` of ``edge_features``.
    ``reference_energies``: per-element energies (eV), fitted on the training set.
    ``model_config``: the JSON-able config the potential was built from (kept for checkpoints).
    """

    def __init__(
        self,
        backbone: nn.Module,
        readout: AtomwiseReadout | EdgeEnergyReadout,
        reference_energies: ReferenceEnergies,
        heads: dict[str, nn.Module] | None = None,
        model_config: dict | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.readout = readout
        self.reference_energies = reference_energies
        self.heads = nn.ModuleDict(heads or {})
        self.model_config = dict(model_config or {})
        self.feedback_heads = [name for name, head in self.heads.items() if getattr(head, "feeds_back_charges", False)]
        if self.feedback_heads and NODE_INPUTS_ARGUMENT not in inspect.signature(backbone.forward).parameters:
            raise ValueError(
                f"heads {self.feedback_heads} feed charges back into the backbone, but "
                f"{type(backbone).__name__}.forward has no {NODE_INPUTS_ARGUMENT!r} argument; "
                "set model.heads.celli.feedback: false or use a backbone that accepts per-atom inputs"
            )

    @property
    def cutoff(self) -> float:
        return float(self.backbone.cutoff)

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Predict a batch.

        Returns ``energy`` (n_graphs,) eV, ``atomic_energies`` (n_atoms,) eV, and where
        asked ``forces`` (n_atoms, 3) eV/Å and ``stress`` (n_graphs, 3, 3) eV/Å³ (NaN for
        non-periodic structures); heads add ``energy_<name>`` and e.g. ``charges``.
        Each head adds ``energy_<name>`` (n_graphs,) eV and its other outputs as
        ``<key>_<name>`` (e.g. ``charges_les``); ``charges`` (n_atoms,) e is the prediction
        of the charge head (``CHARGE_HEADS``), the one compared with reference charges.
        ``create_graph`` keeps the graph of the derivatives (needed to train on forces).
        A ``graph`` built with a cutoff smaller than the backbone's is refused (ValueError).
        """
        if graph.cutoff < self.cutoff:
            raise ValueError(
                f"graph: built with a {graph.cutoff:g} Å neighbour list, but the backbone's cutoff is "
                f"{self.cutoff:g} Å; edges between {graph.cutoff:g} and {self.cutoff:g} Å would be missing. "
                f"Build the graph with cutoff >= {self.cutoff:g} (e.g. AtomicGraph.from_atoms(atoms, potential.cutoff))"
            )
        positions, cell = graph.positions, graph.cell
        inputs: list[torch.Tensor] = []
        if compute_forces or compute_stress:
            positions = positions.detach().requires_grad_(True)
            inputs.append(positions)
        strain = None
        if compute_stress:
            strain = torch.zeros_like(cell, requires_grad=True)
            symmetric = 0.5 * (strain + strain.transpose(1, 2))
            positions = positions + torch.einsum("ni,nij->nj", positions, symmetric[graph.batch])
            cell = cell + torch.bmm(cell, symmetric)
            inputs.append(strain)

        edge_vectors = graph.edge_vectors(positions, cell)
        features: BackboneOutput = self.backbone(graph, edge_vectors)
        head_outputs: dict[str, dict[str, torch.Tensor]] = {}
        for name in self.feedback_heads:
            head = self.heads[name]
            head_outputs[name] = head(graph, features, positions, cell)
            node_inputs = head.node_inputs(graph, features, head_outputs[name])
            features = self.backbone(graph, edge_vectors, **{NODE_INPUTS_ARGUMENT: node_inputs})
        atomic_energies = self._short_range_energies(graph, features) + self.reference_energies(graph.numbers)
        energy = scatter_sum(atomic_energies, graph.batch, graph.n_graphs)
        out: dict[str, torch.Tensor] = {"atomic_energies": atomic_energies}
        for name, head in self.heads.items():
            head_out = head_outputs.get(name) or head(graph, features, positions, cell)
            energy = energy + head_out["energy"]
            for key, value in head_out.items():
                out[f"{key}_{name}"] = value
            if name in CHARGE_HEADS and "charges" in head_out:
                out["charges"] = head_out["charges"]
        out["energy"] = energy

        if inputs:
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=create_graph, retain_graph=create_graph
            )
            if compute_forces:
                out["forces"] = -grads[0]
            if strain is not None:
                volume = graph.volume(graph.cell)
                out["stress"] = grads[-1] / volume[:, None, None]
        return out

    def _short_range_energies(self, graph: AtomicGraph, features: BackboneOutput) -> torch.Tensor:
        """(n_atoms,), eV: the readout of the backbone's per-atom or per-edge features."""
        if not isinstance(self.readout, EdgeEnergyReadout):
            return self.readout(features.node_features)
        if features.edge_features is None:
            raise ValueError(f"an edge readout needs edge_features, which {type(self.backbone).__name__} does not give")
        return self.readout(features.edge_features, graph.edge_index[0], graph.numbers.shape[0])
