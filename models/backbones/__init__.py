"""Short-range backbones (message passing, or Allegro's strictly local edges); each maps a graph to per-atom features.

Every backbone is called as ``backbone(graph, edge_vectors, node_inputs=None)`` and
returns a ``BackboneOutput`` (see docs/backbones.md).
"""

from farfield.models.backbones.allegro import Allegro
from farfield.models.backbones.base import BackboneOutput
from farfield.models.backbones.mace import MACE
from farfield.models.backbones.nequip import NequIP
from farfield.models.backbones.painn import PaiNN

__all__ = ["MACE", "Allegro", "BackboneOutput", "NequIP", "PaiNN"]
