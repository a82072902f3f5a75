"""Split statistics: sizes, element coverage, and how far test parents are from train.

The "OOD-ness" of a split is the distribution of each test parent's distance to its
nearest training parent in the split's metric, reported next to the same numbers for a
random split of the same sizes (same seed, same excluded parents).
"""

from __future__ import annotations

import numpy as np

from farfield.data.splitting.split_file import SIDES
from farfield.data.splitting.strategies import ParentSet

__all__ = ["QUANTILES", "distance_summary", "side_statistics"]

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _round(value: float) -> float:
    """Values written to split files are rounded to 6 significant digits (stable bytes)."""
    return float(f"{value:.6g}")


def side_statistics(parents: ParentSet, rows: dict[str, np.ndarray]) -> dict:
    """Per side: parent/structure/atom counts and elements; test elements missing from train."""
    stats: dict = {}
    elements: dict[str, set[str]] = {}
    for side in SIDES:
        chosen = np.asarray(rows[side], dtype=int)
        atoms = parents.n_atoms[chosen]
        configurations = parents.n_configurations[chosen]
        elements[side] = {e for row in chosen for e in parents.elements[row]}
        stats[side] = {
            "n_parents": len(chosen),
            "n_structures": int(configurations.sum()),
            "n_atoms_total": int(round(float((atoms * configurations).sum()))),
            "n_atoms_min": _round(atoms.min()) if len(chosen) else 0,
            "n_atoms_max": _round(atoms.max()) if len(chosen) else 0,
            "elements": sorted(elements[side]),
        }
    stats["fractions"] = {side: _round(stats[side]["n_parents"] / max(len(parents), 1)) for side in SIDES}
    stats["test_elements_missing_from_train"] = sorted(elements["test"] - elements["train"])
    return stats


def distance_summary(distances: np.ndarray) -> dict:
    """Quantiles (keys ``q0``, ``q10``, … ``q100``) and mean of ``distances``."""
    if len(distances) == 0:
        return {}
    summary = {f"q{int(round(q * 100))}": _round(np.quantile(distances, q)) for q in QUANTILES}
    summary["mean"] = _round(float(np.mean(distances)))
    return summary
