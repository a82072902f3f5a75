"""Pick diverse parent MOFs from a catalogue (:mod:`farfield.data.catalogue`).

Diversity has three axes here:

- **size**: ``[min_atoms, max_atoms]`` is cut into log-spaced bins whose quotas fall
  as ``centre ** -size_exponent`` (GFN-xTB cost grows steeply with size, and size
  splits need small and large parents); places a bin cannot fill (CoRE MOF has few
  frameworks under 30 atoms) go to the other bins, smallest first;
- **metal**: inside a bin, candidates are visited round-robin over metal families
  (lanthanides count as one, ``Ln``), each family in a seeded random order, and at most
  ``max_per_metal`` parents per family are taken before the cap is relaxed;
- **chemistry**: a candidate is a duplicate if its CSD refcode family, reduced formula
  or formula skeleton (metals replaced by ``M``: isostructural series) was already taken.

Returns the chosen catalogue rows (with a ``size_bin`` column) in a stable order and
the skipped rows with their reason (``atom_count`` or a ``duplicate_*`` key).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from farfield.data.coremof import metal_family

__all__ = ["Selection", "select_parents", "size_bin_quotas"]


@dataclass
class Selection:
    """``chosen``: catalogue rows picked (``size_bin`` added); ``skipped``: rows with a
    ``reason`` (duplicates, atom count); ``quotas``: places per size bin, ``edges``: Å bins."""

    chosen: pd.DataFrame
    skipped: pd.DataFrame
    quotas: list[int]
    edges: list[float]


def size_bin_quotas(n: int, min_atoms: int, max_atoms: int, n_bins: int,
                    size_exponent: float) -> tuple[np.ndarray, list[int]]:
    """Log-spaced bin edges over ``[min_atoms, max_atoms + 1)`` and integer quotas ∝
    ``centre ** -size_exponent`` summing to ``n`` (largest remainders)."""
    edges = np.geomspace(min_atoms, max_atoms + 1, n_bins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    weights = centres ** -float(size_exponent)
    raw = n * weights / weights.sum()
    quotas = np.floor(raw).astype(int)
    for b in np.argsort(-(raw - quotas))[: n - quotas.sum()]:
        quotas[b] += 1
    return edges, quotas.tolist()


def _family(metals: str) -> str:
    return " ".join(metal_family(tuple(metals.split()))) or "none"


def _round_robin(rows: pd.DataFrame, rng: np.random.Generator) -> list[int]:
    """Row labels visiting metal families in turn, each family shuffled by ``rng``."""
    families = {fam: list(rng.permutation(group.index.to_numpy()))
                for fam, group in rows.groupby(rows["metals"].map(_family), sort=True)}
    order: list[int] = []
    while families:
        for fam in list(families):
            order.append(families[fam].pop())
            if not families[fam]:
                del families[fam]
    return order


def select_parents(catalogue: pd.DataFrame, n: int, *, min_atoms: int = 10,
                   max_atoms: int = 250, n_bins: int = 6, size_exponent: float = 0.5,
                   max_per_metal: int | None = None, seed: int = 0) -> Selection:
    """Choose up to ``n`` usable, distinct parents spread over size, metals and chemistry."""
    if n < 1 or min_atoms < 1 or max_atoms < min_atoms:
        raise ValueError(f"select_parents: need n >= 1 and 1 <= min_atoms <= max_atoms, got "
                         f"n={n}, min_atoms={min_atoms}, max_atoms={max_atoms}")
    usable = catalogue[catalogue["status"] == "ok"]
    in_range = usable["n_atoms"].between(min_atoms, max_atoms)
    skipped = [usable[~in_range].assign(reason="atom_count")]
    pool = usable[in_range]
    edges, quotas = size_bin_quotas(n, min_atoms, max_atoms, n_bins, size_exponent)
    bins = np.clip(np.searchsorted(edges, pool["n_atoms"].to_numpy(), side="right") - 1,
                   0, n_bins - 1)
    pool = pool.assign(size_bin=bins)
    rng = np.random.default_rng(seed)
    orders = {b: _round_robin(pool[pool["size_bin"] == b], rng) for b in range(n_bins)}
    seen: dict[str, set[str]] = {"refcode": set(), "formula": set(), "skeleton": set()}
    per_family: Counter[str] = Counter()
    taken: list[int] = []
    duplicates: dict[int, str] = {}

    def duplicate_reason(row) -> str | None:
        for key in ("refcode", "formula", "skeleton"):
            if row[key] in seen[key]:
                return f"duplicate_{key}"
        return None

    def fill(b: int, places: int, cap: int | None) -> int:
        got = 0
        for label in orders[b]:
            if got == places:
                break
            if label in duplicates or label in taken_set:
                continue
            row = pool.loc[label]
            reason = duplicate_reason(row)
            if reason:
                duplicates[label] = reason
                continue
            fam = _family(row["metals"])
            if cap is not None and per_family[fam] >= cap:
                continue
            for key in seen:
                seen[key].add(row[key])
            per_family[fam] += 1
            taken.append(label)
            taken_set.add(label)
            got += 1
        return got

    taken_set: set[int] = set()
    filled = [0] * n_bins
    for cap in ([max_per_metal, None] if max_per_metal else [None]):
        for b in range(n_bins):
            filled[b] += fill(b, quotas[b] - filled[b], cap)
    for cap in ([max_per_metal, None] if max_per_metal else [None]):
        for b in range(n_bins):  # places a bin could not fill go to the others, smallest first
            filled[b] += fill(b, max(n - sum(filled), 0), cap)
    chosen = pool.loc[taken].sort_values(["size_bin", "n_atoms", "name"], kind="stable")
    skipped.append(pool.loc[list(duplicates)].assign(reason=[duplicates[k] for k in duplicates]))
    return Selection(chosen.reset_index(drop=True),
                     pd.concat(skipped).drop(columns=["size_bin"], errors="ignore")
                     .reset_index(drop=True), quotas, edges.tolist())
