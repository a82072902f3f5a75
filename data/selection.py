"""Selection rules of an import: which valid structures a store keeps (the paper's subsets).

The paper does not train on every frame of its sources (../shared/PAPER.md): ODAC25 → the
10 lowest-energy configurations per MOF; OMol25 → the lowest-energy structure per system;
QMOF → relaxed structures with DDEC charges and negative energy, rare elements removed.
:class:`SelectionRules` names each rule for what it does; they act on *valid* structures
only (invalid ones are problems, reported elsewhere), in this order:

1. per structure: ``max_atoms``, ``require_charges``, ``neutral_only``,
   ``negative_energy_only``;
2. ``lowest_energy_per_parent`` K: of the structures left, the K with the lowest total
   energy (eV) per parent; ties go to the smaller structure_id;
3. ``min_element_parents`` N: drop structures containing an element present in fewer than
   N parents, repeated until none is left
   (:func:`~farfield.data.splitting.element_coverage.drop_rare_elements`, the rule a trial's
   ``data.min_element_parents`` applies).

Rules read a small table with one row per structure (:data:`META_COLUMNS`, made by
:func:`frame_metadata`), never the structures, so a sharded import selects from millions
of frames without holding them. Every left-out structure gets the name of the first rule
that dropped it; the store keeps them in ``excluded.parquet`` and counts them in its
manifest (``provenance.selection``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms
from pydantic import Field

from farfield.data.config import StrictModel
from farfield.data.records import CHARGES, ENERGY, FORCES, PARENT_ID, STRUCTURE_ID, TOTAL_CHARGE
from farfield.data.splitting.element_coverage import drop_rare_elements

__all__ = ["EXCLUDED_FILE", "META_COLUMNS", "Selection", "SelectionRules", "excluded_table",
           "frame_metadata", "import_and_select", "select", "select_store"]

#: Written next to the manifest when rules left structures out: one row per left-out
#: structure (structure_id, parent_id, reason, and file/row for a sharded import).
EXCLUDED_FILE = "excluded.parquet"
#: Columns of the per-structure table the rules read (energy: total, eV; total_charge: e).
META_COLUMNS = ("structure_id", "parent_id", "n_atoms", "elements", "energy", "total_charge",
                "has_charges", "has_forces")
#: |total_charge| (e) at or below which a structure counts as neutral.
NEUTRAL_TOLERANCE = 1e-6


class SelectionRules(StrictModel):
    """Which valid structures an import keeps (see the module docstring for the order).

    ``max_atoms``: keep structures of at most this many atoms; ``require_charges``: keep only
    structures with reference charges; ``neutral_only``: keep total charge 0 e;
    ``negative_energy_only``: keep total energy < 0 eV; ``lowest_energy_per_parent``: keep
    the K lowest-energy structures of each parent; ``min_element_parents``: drop structures
    with an element found in fewer than N parents (repeated until stable). All off by default.
    """

    max_atoms: int | None = Field(default=None, ge=1)
    require_charges: bool = False
    neutral_only: bool = False
    negative_energy_only: bool = False
    lowest_energy_per_parent: int | None = Field(default=None, ge=1)
    min_element_parents: int | None = Field(default=None, ge=1)

    @property
    def active(self) -> bool:
        """True when any rule is on."""
        return self != SelectionRules()

    def options(self) -> str:
        """The rules that are on, as CLI options (for messages)."""
        parts = []
        for name, value in self.model_dump().items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                parts.append(flag)
            elif value not in (None, False):
                parts.append(f"{flag} {value}")
        return " ".join(parts) or "none"


def frame_metadata(atoms: Atoms) -> dict:
    """The row of :data:`META_COLUMNS` for one validated record."""
    symbols = sorted(set(atoms.get_chemical_symbols()))
    return {"structure_id": atoms.info[STRUCTURE_ID], "parent_id": atoms.info[PARENT_ID],
            "n_atoms": len(atoms), "elements": " ".join(symbols),
            "energy": float(atoms.info[ENERGY]),
            "total_charge": float(atoms.info.get(TOTAL_CHARGE, 0.0)),
            "has_charges": CHARGES in atoms.arrays, "has_forces": FORCES in atoms.arrays}


class Selection:
    """Outcome of :func:`select` over a table of ``n`` structures.

    ``kept``: (n,) bool; ``reason``: (n,) str, the rule that left a structure out ("" when
    kept); ``rare_elements``: statistics of the ``min_element_parents`` step (None: off).
    """

    def __init__(self, kept: np.ndarray, reason: np.ndarray, rules: SelectionRules,
                 rare_elements: dict | None = None):
        self.kept, self.reason, self.rules, self.rare_elements = kept, reason, rules, rare_elements

    def counts(self) -> dict:
        """``{"valid", "kept", "excluded": {rule: n}}``."""
        reasons, numbers = np.unique(self.reason[~self.kept], return_counts=True)
        return {"valid": int(len(self.kept)), "kept": int(self.kept.sum()),
                "excluded": {str(r): int(n) for r, n in zip(reasons, numbers)}}

    def provenance(self) -> dict:
        """What the manifest records: the rules, their order and what each left out."""
        return {"rules": self.rules.model_dump(), "order": list(_ORDER), **self.counts(),
                "rare_elements": self.rare_elements}


_ORDER = ("max_atoms", "require_charges", "neutral_only", "negative_energy_only",
          "lowest_energy_per_parent", "min_element_parents")


def select(meta: pd.DataFrame, rules: SelectionRules) -> Selection:
    """Apply ``rules`` to ``meta`` (one row per valid structure, :data:`META_COLUMNS`).

    Raises ValueError when ``min_element_parents`` would leave nothing.
    """
    meta = meta.reset_index(drop=True)
    n = len(meta)
    kept = np.ones(n, dtype=bool)
    reason = np.full(n, "", dtype=object)

    def drop(mask: np.ndarray, name: str) -> None:
        newly = kept & mask
        reason[newly] = name
        kept[newly] = False

    if rules.max_atoms is not None:
        drop(meta["n_atoms"].to_numpy() > rules.max_atoms, "max_atoms")
    if rules.require_charges:
        drop(~meta["has_charges"].to_numpy(dtype=bool), "require_charges")
    if rules.neutral_only:
        drop(np.abs(meta["total_charge"].to_numpy(dtype=float)) > NEUTRAL_TOLERANCE, "neutral_only")
    if rules.negative_energy_only:
        drop(~(meta["energy"].to_numpy(dtype=float) < 0.0), "negative_energy_only")
    if rules.lowest_energy_per_parent is not None:
        left = meta[kept]
        order = left.sort_values(["parent_id", "energy", "structure_id"], kind="stable")
        rank = order.groupby("parent_id", sort=False).cumcount()
        beyond = np.zeros(n, dtype=bool)
        beyond[meta.index.get_indexer(order.index[rank.to_numpy() >= rules.lowest_energy_per_parent])] = True
        drop(beyond, "lowest_energy_per_parent")
    rare = None
    if rules.min_element_parents is not None and kept.any():
        left = meta[kept]
        try:
            outcome = drop_rare_elements(left[[PARENT_ID, "elements"]], rules.min_element_parents)
        except ValueError as err:
            raise ValueError(f"--min-element-parents {rules.min_element_parents} leaves no "
                             f"structure: every one of the {left[PARENT_ID].nunique()} parents "
                             f"left has an element found in fewer parents; lower it") from err
        rare = outcome.statistics
        gone = np.zeros(n, dtype=bool)
        gone[meta.index.get_indexer(left.index.difference(outcome.index.index))] = True
        drop(gone, "min_element_parents")
    return Selection(kept, reason, rules, rare)


def excluded_table(meta: pd.DataFrame, selection: Selection,
                   extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The left-out rows of ``meta`` as written to :data:`EXCLUDED_FILE`: structure_id,
    parent_id, reason, plus the ``extra`` columns of ``meta`` (e.g. file and row)."""
    left_out = ~selection.kept
    table = meta.reset_index(drop=True).loc[left_out, [STRUCTURE_ID, PARENT_ID, *extra]].reset_index(drop=True)
    table.insert(2, "reason", selection.reason[left_out].astype(str))
    return table


def select_store(source, rules: SelectionRules, out: str | Path, *, shard_size: int = 256,
                 overwrite: bool = False, extra_files: dict[str, str] | None = None):
    """Write the structures of the store ``source`` that ``rules`` keep as a new store at
    ``out`` (same label method, sources and forces rule; provenance + ``selection``), with
    :data:`EXCLUDED_FILE` listing the others. For imports held in memory (extxyz, db, qmof,
    odac); a sharded ``.aselmdb`` import selects from its metadata instead. Returns
    ``(store, selection)``; ValueError when the rules keep nothing."""
    from farfield.data.store import write_store

    frames = source.read()
    meta = pd.DataFrame([frame_metadata(atoms) for atoms in frames], columns=list(META_COLUMNS))
    selection = select(meta, rules)
    if not selection.kept.any():
        raise ValueError(f"the selection ({rules.options()}) keeps none of the "
                         f"{len(frames)} valid structure(s): {selection.counts()['excluded']}")
    manifest = source.manifest
    provenance = {**manifest["provenance"], "selection": selection.provenance()}
    store = write_store([a for a, keep in zip(frames, selection.kept) if keep], out,
                        label_method=manifest["label_method"], sources=manifest["sources"],
                        provenance=provenance, overwrite=overwrite, extra_files=extra_files,
                        require_forces=manifest.get("forces_required", True),
                        shard_size=shard_size)
    excluded_table(meta, selection).to_parquet(store.path / EXCLUDED_FILE, index=False)
    return store, selection


def import_and_select(paths, out: str | Path, rules: SelectionRules, *, overwrite: bool = False,
                      skip_invalid: bool = False, shard_size: int = 256, **import_options):
    """:func:`~farfield.data.importing.import_files` of ``paths`` (any of its formats) followed
    by :func:`select_store`: the valid structures are imported into a temporary store next to
    ``out``, the kept ones written to ``out`` (with ``rejects.jsonl`` when ``skip_invalid``).

    ``import_options``: the other keyword arguments of ``import_files``. Returns
    ``(report, selection)``; ``report.store`` is the selected store, or None (and
    ``selection`` None) when problems stopped the import as ``import_files`` would.
    """
    import shutil
    import uuid

    from farfield.data.importing import REJECTS_FILE, import_files
    from farfield.data.store import DatasetStore

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (--overwrite) to "
                              f"replace it")
    tmp = out.parent / f".{out.name}.unselected-{uuid.uuid4().hex[:8]}"
    try:
        report = import_files(paths, tmp, skip_invalid=skip_invalid, shard_size=shard_size,
                              **import_options)
        if report.store is None:
            return report, None
        rejects = tmp / REJECTS_FILE
        extra = {REJECTS_FILE: rejects.read_text()} if rejects.is_file() else None
        report.store, selection = select_store(DatasetStore.open(tmp), rules, out,
                                               shard_size=shard_size, overwrite=overwrite,
                                               extra_files=extra)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report, selection
