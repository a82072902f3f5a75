"""Element coverage rules of the paper's protocol, both recorded in the split file.

- **Rare elements** (``data.min_element_parents``), before splitting: every structure that
  contains an element present in fewer than N parents is dropped. Dropping can make another
  element rare (its other parents were the dropped ones), so the rule is applied until every
  remaining element occurs in at least N parents. Recorded as ``statistics["rare_elements"]``.
- **Unseen elements**, after a biased split: test parents containing an element absent from
  the training side cannot be predicted by per-element reference energies fitted on train;
  they are moved to ``excluded`` and recorded as ``statistics["test_unseen_elements"]``.
  The element an ``element``/``metal`` split holds out is exempt (it is the point of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from ase.data import atomic_numbers

from farfield.data.splitting.strategies import ParentSet

__all__ = ["RareElements", "drop_rare_elements", "exclude_unseen_elements"]


def _z_order(symbols) -> list[str]:
    return sorted(symbols, key=atomic_numbers.get)


@dataclass
class RareElements:
    """``index``: the kept rows of the index; ``statistics``: what was dropped (None: rule off)."""

    index: pd.DataFrame
    statistics: dict | None


def _parents_per_element(index: pd.DataFrame) -> dict[str, int]:
    pairs = {(parent, element) for parent, entry in zip(index["parent_id"], index["elements"])
             for element in str(entry).split()}
    counts: dict[str, int] = {}
    for _, element in pairs:
        counts[element] = counts.get(element, 0) + 1
    return counts


def drop_rare_elements(index: pd.DataFrame, min_parents: int | None) -> RareElements:
    """Drop the structures of ``index`` (a store index: ``parent_id``, ``elements`` = symbols
    separated by spaces) containing an element present in fewer than ``min_parents`` parents,
    until none is left; ``min_parents=None`` keeps everything."""
    if min_parents is None:
        return RareElements(index, None)
    if not isinstance(min_parents, (int, np.integer)) or min_parents < 1:
        raise ValueError(f"data.min_element_parents must be an integer >= 1, got {min_parents!r}")
    kept, dropped_elements = index, set()
    while True:
        rare = {e for e, count in _parents_per_element(kept).items() if count < min_parents}
        if not rare:
            break
        dropped_elements |= rare
        kept = kept[[not (set(str(entry).split()) & rare) for entry in kept["elements"]]]
    if len(kept) == 0:
        raise ValueError(f"data.min_element_parents={min_parents} drops every structure of the dataset "
                         f"({index['parent_id'].nunique()} parents); lower it")
    before, after = index["parent_id"].value_counts(), kept["parent_id"].value_counts()
    partly = int((after != before[after.index]).sum())
    return RareElements(kept, {
        "min_element_parents": int(min_parents),
        "elements": _z_order(dropped_elements),
        "n_structures_dropped": int(len(index) - len(kept)),
        "n_parents_dropped": int(len(before) - len(after)),
        "n_parents_partly_dropped": partly,
        "n_structures_kept": int(len(kept)),
        "n_parents_kept": len(after),
    })


def exclude_unseen_elements(parents: ParentSet, rows: dict[str, np.ndarray], excluded: np.ndarray,
                            exempt: str | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Move test rows whose parent has an element absent from ``rows["train"]`` (``exempt``
    aside) to ``excluded``; returns ``(rows, excluded, {"n_parents", "elements", "parent_ids"})``."""
    seen = {e for row in rows["train"] for e in parents.elements[row]} | ({exempt} if exempt else set())
    unseen = {int(row): set(parents.elements[row]) - seen for row in rows["test"]}
    moved = np.array(sorted(row for row, missing in unseen.items() if missing), dtype=int)
    elements = _z_order(set().union(*unseen.values())) if unseen else []
    if len(moved) and len(moved) == len(rows["test"]):
        raise ValueError(f"every test parent ({len(moved)}) contains an element absent from the training side "
                         f"({' '.join(elements)}); set data.min_element_parents (e.g. 10) or change the split")
    rows = {**rows, "test": np.setdiff1d(rows["test"], moved)}
    counted = {"n_parents": len(moved), "elements": elements,
               "parent_ids": sorted(str(parents.parent_ids[row]) for row in moved)}
    return rows, np.union1d(excluded, moved).astype(int), counted
