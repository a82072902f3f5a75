"""Long-range heads: each reads backbone features and adds an energy term.

A head is an ``nn.Module`` called as ``head(graph, features, positions, cell)`` with
``features`` a ``BackboneOutput`` and ``positions`` (n_atoms, 3) Å / ``cell``
(n_graphs, 3, 3) Å the (possibly strained) coordinates the forces and stress are taken
against. It returns a dict with ``energy`` (n_graphs,) eV and optionally ``charges``
(n_atoms,) e and other per-atom or per-structure predictions.

``HEADS`` maps a short name to a builder ``(ModelConfig) -> nn.Module``; names that
predict per-atom charges are also listed in ``CHARGE_HEADS``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

HEADS: dict[str, Callable[..., nn.Module]] = {}
CHARGE_HEADS: set[str] = set()

__all__ = ["CHARGE_HEADS", "HEADS"]
