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

:func:`select_covered_parents` adds two rules the paper's protocol needs: a fixed number
of **large** parents (above ``large_atoms``, the test side of a small→large split) chosen
apart from the small ones, and **element coverage**: every element of the chosen set occurs
in at least ``min_element_parents`` parents (rarer elements are topped up from the pool
when it can, otherwise every candidate carrying them is dropped, reason ``rare_element``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from farfield.data.coremof import metal_family

__all__ = ["Selection", "element_parent_counts", "select_covered_parents", "select_parents",
           "size_bin_quotas"]


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
                   max_per_metal: int | None = None, seed: int = 0,
                   taken_before: pd.DataFrame | None = None) -> Selection:
    """Choose up to ``n`` usable, distinct parents spread over size, metals and chemistry.

    ``taken_before``: rows chosen by an earlier call; they count as seen, so nothing here
    duplicates them (refcode, formula or skeleton).
    """
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
    seen: dict[str, set[str]] = {key: set() if taken_before is None else set(taken_before[key])
                                 for key in ("refcode", "formula", "skeleton")}
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


def element_parent_counts(rows: pd.DataFrame) -> dict[str, int]:
    """How many rows (parents) contain each element (``elements``: space-separated)."""
    counts: Counter[str] = Counter()
    for elements in rows["elements"]:
        counts.update(set(str(elements).split()))
    return dict(counts)


def _has_any(rows: pd.DataFrame, elements: set[str]) -> pd.Series:
    return rows["elements"].map(lambda e: bool(elements & set(str(e).split())))


def select_covered_parents(catalogue: pd.DataFrame, n: int, *, n_large: int = 0,
                           large_atoms: int = 100, min_element_parents: int = 0,
                           min_atoms: int = 10, max_atoms: int = 250, n_bins: int = 6,
                           size_exponent: float = 0.5, max_per_metal: int | None = None,
                           seed: int = 0, max_rounds: int = 20) -> Selection:
    """``n - n_large`` parents of ``min_atoms``–``large_atoms`` atoms and ``n_large`` above,
    every element in ≥ ``min_element_parents`` of them (see module doc).

    Elements that cannot be covered are removed from the pool and the selection is made
    again, until every element of the chosen set is covered (at most ``max_rounds``).
    Top-ups may make the result slightly larger than ``n``. ``chosen`` gains a ``large``
    column (bool).
    """
    if not 0 <= n_large <= n:
        raise ValueError(f"select_covered_parents: need 0 <= n_large <= n, got {n_large}, {n}")
    if n_large and not min_atoms <= large_atoms < max_atoms:
        raise ValueError(f"select_covered_parents: large_atoms {large_atoms} must lie in "
                         f"[{min_atoms}, {max_atoms})")
    banned: set[str] = set()
    skipped_rare = []
    for _ in range(max_rounds):
        pool = catalogue[~_has_any(catalogue, banned)] if banned else catalogue
        small = select_parents(pool, n - n_large, min_atoms=min_atoms,
                               max_atoms=large_atoms if n_large else max_atoms, n_bins=n_bins,
                               size_exponent=size_exponent, max_per_metal=max_per_metal,
                               seed=seed)
        parts = [small.chosen.assign(large=False)]
        if n_large:
            large = select_parents(pool, n_large, min_atoms=large_atoms + 1, max_atoms=max_atoms,
                                   n_bins=max(1, n_bins // 2), size_exponent=size_exponent,
                                   max_per_metal=max_per_metal, seed=seed,
                                   taken_before=small.chosen)
            parts.append(large.chosen.assign(large=True, size_bin=large.chosen["size_bin"] + n_bins))
        chosen = pd.concat(parts, ignore_index=True)
        if not min_element_parents:
            break
        chosen, short = _top_up(chosen, pool, min_element_parents, min_atoms, max_atoms,
                                large_atoms, n_bins, seed)
        if not short:
            break
        banned |= short
    else:
        raise ValueError(f"select_covered_parents: element coverage did not settle in "
                         f"{max_rounds} rounds (still short: {sorted(short)})")
    if banned:
        rare = catalogue[(catalogue["status"] == "ok") & _has_any(catalogue, banned)]
        skipped_rare.append(rare.assign(
            reason="rare_element",
            detail=rare["elements"].map(lambda e: "contains " + " ".join(
                sorted(banned & set(str(e).split()))) + f" (in < {min_element_parents} "
                "choosable parents)")))
    skipped = pd.concat([small.skipped, *skipped_rare], ignore_index=True)
    chosen = chosen.sort_values(["size_bin", "n_atoms", "name"], kind="stable")
    return Selection(chosen.reset_index(drop=True), skipped, small.quotas, small.edges)


def _top_up(chosen: pd.DataFrame, pool: pd.DataFrame, m: int, min_atoms: int, max_atoms: int,
            large_atoms: int, n_bins: int, seed: int) -> tuple[pd.DataFrame, set[str]]:
    """Add pool rows carrying under-represented elements (smallest first, distinct refcode,
    formula and skeleton); returns the new rows and the elements still short of ``m``.

    Elements in fewer than ``ceil(m / 2)`` chosen parents are returned as short at once."""
    rng = np.random.default_rng(seed + 1)
    usable = pool[(pool["status"] == "ok") & pool["n_atoms"].between(min_atoms, max_atoms)]
    counts = element_parent_counts(chosen)
    # only elements the selection already found in at least half the needed parents are
    # topped up; rarer ones are given up at once (cheaper than labelling many extra parents)
    short = {el for el, c in counts.items() if math.ceil(m / 2) <= c < m}
    hopeless = {el for el, c in counts.items() if c < math.ceil(m / 2)}
    if hopeless:
        return chosen, hopeless
    added = []
    seen = {key: set(chosen[key]) for key in ("refcode", "formula", "skeleton")}
    for element in sorted(short, key=lambda el: -counts[el]):
        have = element_parent_counts(pd.concat([chosen, *added])).get(element, 0) if added else counts[element]
        carriers = usable[usable["elements"].map(lambda e: element in str(e).split())]
        carriers = carriers.iloc[rng.permutation(len(carriers))].sort_values("n_atoms", kind="stable")
        for _, row in carriers.iterrows():
            if have >= m:
                break
            if any(row[key] in seen[key] for key in seen):
                continue
            for key in seen:
                seen[key].add(row[key])
            large = bool(row["n_atoms"] > large_atoms)
            added.append(row.to_frame().T.assign(large=large, size_bin=n_bins if large else -1))
            have += 1
    out = pd.concat([chosen, *added], ignore_index=True) if added else chosen
    out = out.astype({"n_atoms": int, "size_bin": int})
    counts = element_parent_counts(out)
    return out, {el for el, c in counts.items() if c < m}
