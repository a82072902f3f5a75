"""Short-range message-passing backbones; each maps a graph to per-atom features."""

from farfield.models.backbones.base import BackboneOutput
from farfield.models.backbones.painn import PaiNN

__all__ = ["BackboneOutput", "PaiNN"]
