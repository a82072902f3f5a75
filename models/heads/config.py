"""Options of the long-range heads (``model.heads.<name>`` in a trial config)."""

from __future__ import annotations

from farfield.data.config import StrictModel


class HeadsConfig(StrictModel):
    """One optional sub-section per head; a head listed in ``model.long_range`` reads its own."""
