"""Backbones and long-range heads by short name, and the builder of a ``Potential``.

Components are chosen by these names in the config, never by import paths. The dicts
are filled by explicit imports below; an unknown name is an error listing known names.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from farfield.models.backbones import MACE, Allegro, NequIP, PaiNN
from farfield.models.blocks import AtomwiseReadout, EdgeEnergyReadout, ReferenceEnergies
from farfield.models.config import ModelConfig
from farfield.models.heads import CHARGE_HEADS as _CHARGE_HEADS
from farfield.models.heads import FEEDBACK_WIDTHS
from farfield.models.heads import HEADS as _HEADS
from farfield.models.potential import Potential


def _node_input_features(config: ModelConfig) -> int:
    """Width of the backbone's ``node_inputs``: as configured, or the width of what a listed
    head feeds back (``model.heads.<name>.feedback``, e.g. CELLI; ``heads.FEEDBACK_WIDTHS``)."""
    widths = [FEEDBACK_WIDTHS[name](config) for name in config.long_range if name in FEEDBACK_WIDTHS]
    return config.node_input_features or max(widths, default=0)


def _build_painn(config: ModelConfig) -> nn.Module:
    return PaiNN(channels=config.channels, layers=config.layers, cutoff=config.cutoff, n_radial=config.n_radial,
                 node_input_features=_node_input_features(config))


def _equivariant_options(config: ModelConfig) -> dict:
    return dict(channels=config.channels, layers=config.layers, cutoff=config.cutoff, n_radial=config.n_radial,
                l_max=config.l_max, hidden_l_max=config.hidden_l_max, radial_mlp=tuple(config.radial_mlp),
                avg_neighbors=config.avg_neighbors, n_element_features=config.n_element_features,
                node_input_features=_node_input_features(config))


def _build_mace(config: ModelConfig) -> nn.Module:
    return MACE(correlation=config.correlation, **_equivariant_options(config))


def _build_nequip(config: ModelConfig) -> nn.Module:
    return NequIP(**_equivariant_options(config))


def _build_allegro(config: ModelConfig) -> nn.Module:
    return Allegro(channels=config.channels, layers=config.layers, cutoff=config.cutoff, n_radial=config.n_radial,
                   l_max=config.l_max, tensor_features=config.tensor_features, parity=config.parity,
                   radial_mlp=tuple(config.radial_mlp), latent_mlp=tuple(config.latent_mlp),
                   avg_neighbors=config.avg_neighbors, node_input_features=_node_input_features(config))


def _build_readout(config: ModelConfig, backbone: nn.Module, energy_scale: float) -> nn.Module:
    """Per-atom readout of ``node_features``, or, for a backbone with per-edge energies
    (an ``edge_feature_width``, Allegro), the edge readout summed onto centre atoms; the
    hidden width is ``channels // 2`` either way."""
    hidden = max(config.channels // 2, 1)
    width = getattr(backbone, "edge_feature_width", None)
    if width:
        return EdgeEnergyReadout(width, config.avg_neighbors, hidden=hidden, scale=energy_scale)
    return AtomwiseReadout(config.channels, hidden=hidden, scale=energy_scale)


#: backbone name → builder taking the model config.
BACKBONES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "allegro": _build_allegro,
    "mace": _build_mace,
    "nequip": _build_nequip,
    "painn": _build_painn,
}

#: long-range head name → builder taking the model config, and the charge-predicting ones
#: (defined in ``farfield.models.heads``, re-exported here).
HEADS = _HEADS
CHARGE_HEADS = _CHARGE_HEADS


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        known = ", ".join(sorted(table)) or "(none)"
        raise ValueError(f"unknown {what} {name!r}; known: {known}")
    return table[name]


def build_potential(
    config: ModelConfig,
    reference_energies: np.ndarray | None = None,
    energy_scale: float = 1.0,
) -> Potential:
    """Build a ``Potential`` from its config.

    ``reference_energies``: (119,) eV per element (``fit_reference_energies``), zeros if None.
    ``energy_scale``: eV, multiplies the readout (typically the RMS force × 1 Å of the
    training set) so the network's outputs are of order one.
    Parameters are created in ``config.dtype``.
    """
    dtype = config.torch_dtype
    backbone = _lookup(BACKBONES, config.backbone, "backbone")(config)
    readout = _build_readout(config, backbone, energy_scale)
    if config.compile:
        backbone.compile(dynamic=True)  # in place: parameter names (and checkpoints) unchanged
    heads = {name: _lookup(HEADS, name, "long-range head")(config) for name in config.long_range}
    ref = ReferenceEnergies(None if reference_energies is None else torch.as_tensor(reference_energies))
    potential = Potential(
        backbone=backbone,
        readout=readout,
        reference_energies=ref,
        heads=heads,
        model_config=config.model_dump(mode="json"),
    )
    return potential.to(dtype)
