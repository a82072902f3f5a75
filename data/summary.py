"""What a dataset store holds, for people: parents per element, sizes, label statistics.

:func:`store_summary` is what ``farfield data info`` prints and what the bundled set's
README tables are made from. Forces are read from the shards (one pass); everything else
comes from the store's index.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from farfield.data.records import FORCES
from farfield.data.sampling import CONFIG_KIND
from farfield.data.store import DatasetStore

__all__ = ["SIZE_EDGES", "element_parents", "force_statistics", "size_distribution", "store_summary"]

#: Atom-count bins of the size table: [a, b) each; the last is open.
SIZE_EDGES = (0, 30, 50, 100, 150, 200)


def element_parents(index: pd.DataFrame) -> dict[str, int]:
    """Parents (distinct ``parent_id``) containing each element, most common first."""
    counts: Counter[str] = Counter()
    for elements in index.groupby("parent_id")["elements"].first():
        counts.update(str(elements).split())
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def size_distribution(index: pd.DataFrame) -> dict[str, int]:
    """Parents per atom-count bin (a parent's size: its first configuration's atoms)."""
    sizes = index.groupby("parent_id")["n_atoms"].first().to_numpy()
    out = {}
    for lo, hi in zip(SIZE_EDGES, (*SIZE_EDGES[1:], None)):
        label = f"{lo}-{hi - 1}" if hi else f">={lo}"
        out[label] = int(((sizes >= lo) & (sizes < (hi or np.inf))).sum())
    return out


def force_statistics(store: DatasetStore) -> pd.DataFrame:
    """Per configuration kind (and ``all``): frames, mean |force component| (eV/Å),
    median and max atomic |F| (eV/Å), the share of atoms above 5 eV/Å and the largest
    atomic |F| of any frame."""
    rows: dict[str, dict[str, list]] = {}
    for atoms in store.read():
        forces = np.asarray(atoms.arrays[FORCES])
        kind = str(atoms.info.get(CONFIG_KIND, "-"))
        for key in (kind, "all"):
            acc = rows.setdefault(key, {"components": [], "norms": []})
            acc["components"].append(np.abs(forces).ravel())
            acc["norms"].append(np.linalg.norm(forces, axis=1))
    table = []
    for kind, acc in rows.items():
        comps, norms = np.concatenate(acc["components"]), np.concatenate(acc["norms"])
        table.append({"kind": kind, "frames": len(acc["norms"]),
                      "mean_abs_component": float(comps.mean()),
                      "median_atom_force": float(np.median(norms)),
                      "share_above_5": float((norms > 5.0).mean()),
                      "max_atom_force": float(norms.max())})
    order = {"input": 0, "relax": 1, "thermal": 2, "all": 9}
    return pd.DataFrame(table).sort_values("kind", key=lambda k: k.map(lambda v: order.get(v, 5)),
                                           kind="stable").reset_index(drop=True)


def store_summary(store: DatasetStore, forces: bool = True) -> dict:
    """Parents, elements with their parent counts, size distribution and (``forces``) the
    force statistics of :func:`force_statistics` as records."""
    index = store.index
    sizes = index.groupby("parent_id")["n_atoms"].first()
    summary = {"structures": len(index), "parents": int(index["parent_id"].nunique()),
               "element_parents": element_parents(index),
               "parent_sizes": size_distribution(index),
               "parent_atoms": {"min": int(sizes.min()), "median": float(sizes.median()),
                                "max": int(sizes.max())}}
    if forces:
        summary["forces"] = force_statistics(store).to_dict("records")
    return summary
