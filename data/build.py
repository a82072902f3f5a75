"""Build a labelled dataset store from CIFs: catalogue → parents → configurations →
GFN-xTB labels (Ray) → store (→ optional compressed export).

This is ``farfield data build``. Work happens in ``<out>.build/`` next to the store:

- ``plan.json``: the settings (and their key) the plan was made with; written last;
- ``parents.csv``: chosen parents; ``rejections.csv``: every catalogue structure not
  used and why (cleaning reasons, atom count, duplicates, hydrogen fix-up);
- ``inputs/``, ``labelled/``, ``failures/``: per-shard files, see
  :mod:`farfield.data.label_shards`.

Running the same command again resumes: the plan is reused (a different setting is
refused with a message), finished shards are skipped, and the store is re-assembled
from the shards, so the result is the same however often the run was interrupted.
Assembly drops a parent whose input geometry (``c0``) failed or has an atomic force
above ``max_force`` eV/Å (a broken structure) and any frame with a partial charge
beyond ±``max_charge`` e or an energy per atom more than ``max_energy_shift`` eV from
its ``c0`` (an unphysical SCF solution), drops parents left with fewer than
``min_configs`` frames, records why in the store's
``failures.jsonl``, and keeps the first ``parents`` parents in plan order (spares
make up for dropped ones). Parents are stored in stratified size order, so any prefix
of the store has the size distribution of the whole.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import os
import shlex
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from ase import Atoms
from pydantic import Field

from farfield.data.catalogue import build_catalogue, iter_source_cifs, source_label
from farfield.data.coremof import (
    SUBSETS,
    StructureRejected,
    cif_to_atoms,
    normalise_hydrogens,
    validate_atoms,
)
from farfield.data.extxyz import format_frame
from farfield.data.label_shards import (
    FAILURES,
    INPUTS,
    LABELLED,
    MD_SEED,
    label_shards,
    read_shard,
    write_text_atomic,
)
from farfield.data.labelling import XtbSettings
from farfield.data.parent_selection import select_covered_parents, select_parents
from farfield.data.records import CHARGES, ENERGY, FORCES, PARENT_ID, STRESS, STRUCTURE_ID
from farfield.data.relaxation import LABELS_REUSED, RELAX_SEED, RELAX_STEPS, THERMAL_SNAPSHOTS
from farfield.data.sampling import CONFIG_KIND, SamplingSettings, sample_configurations
from farfield.data.store import DatasetStore, write_store

__all__ = ["METHOD_NAMES", "BuildSettings", "build_dataset", "export_extxyz_xz", "work_dir_of"]

#: CLI spellings of the tblite methods.
METHOD_NAMES = {"gfn1": "GFN1-xTB", "gfn2": "GFN2-xTB"}
PLAN = "plan.json"
#: Settings applied when the store is assembled from labelled shards (changing them
#: re-assembles without relabelling).
ASSEMBLY_FIELDS = ("max_force", "max_charge", "max_energy_shift", "min_configs",
                   "max_label_force")


class BuildSettings(XtbSettings):
    """Everything that determines a build's content (``workers`` etc. do not).

    The labelling settings (``method``, ``accuracy``, ``max_iterations``) are those of
    ``XtbSettings``, kept as flat fields so plan keys and ``--method``-style options stay as
    they were; ``method`` is limited to GFN1/GFN2 (``METHOD_NAMES``)."""

    sources: list[str] = Field(default_factory=lambda: list(SUBSETS), min_length=1)
    parents: int = Field(default=300, ge=1)
    spare_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    min_atoms: int = Field(default=10, ge=1)
    max_atoms: int = Field(default=250, ge=1)
    size_bins: int = Field(default=6, ge=1)
    size_exponent: float = 1.0
    max_per_metal: int | None = Field(default=12, ge=1)
    #: Parents above ``sampling.large_atoms`` atoms chosen apart from the small ones (the
    #: test side of a small→large split); 0 = no separate large quota.
    large_parents: int = Field(default=0, ge=0)
    #: Every element occurs in at least this many parents (selection tops rare elements up
    #: or drops them; assembly drops parents whose elements fell below it); 0 = no rule.
    min_element_parents: int = Field(default=0, ge=0)
    normalise_hydrogens: bool = True
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    method: Literal[tuple(METHOD_NAMES.values())] = "GFN1-xTB"
    total_charge: float = 0.0
    max_force: float = Field(default=30.0, gt=0.0)
    max_charge: float = Field(default=4.0, gt=0.0)
    max_energy_shift: float = Field(default=1.0, gt=0.0)
    min_configs: int = Field(default=3, ge=1)
    #: Frames with an atomic force above this (eV/Å) are dropped at assembly; None = keep.
    max_label_force: float | None = Field(default=None, gt=0.0)
    shard_size: int = Field(default=8, ge=1)
    seed: int = 0

    @property
    def xtb(self) -> XtbSettings:
        """The labelling settings alone."""
        return XtbSettings(**{name: getattr(self, name) for name in XtbSettings.model_fields})

    def plan_settings(self) -> dict:
        """The settings that shape the plan (all but the assembly filters)."""
        return self.model_dump(exclude=set(ASSEMBLY_FIELDS))

    def key(self) -> str:
        """Short hash of :meth:`plan_settings`: a plan is reused only under the same key."""
        return hashlib.sha256(json.dumps(self.plan_settings(), sort_keys=True).encode()
                              ).hexdigest()[:16]


def work_dir_of(out: Path) -> Path:
    """``<out>.build``: where a build of store ``out`` keeps its plan and shards."""
    return out.parent / f"{out.name}.build"


def _load_parents(chosen: pd.DataFrame, settings: BuildSettings) -> tuple[dict[str, Atoms], list]:
    """Atoms of the chosen entries (one pass per source), H fixed; rejections on the way."""
    wanted = {(row.source, row.name) for row in chosen.itertuples()}
    atoms_of: dict[str, Atoms] = {}
    rejected = []
    for source in settings.sources:
        label = source_label(source)
        if not any(s == label for s, _ in wanted):
            continue
        for entry in iter_source_cifs(source):
            if (label, entry.name) not in wanted:
                continue
            try:
                atoms = cif_to_atoms(entry.text, entry.name)
                if settings.normalise_hydrogens:
                    atoms, _ = normalise_hydrogens(atoms)
                    validate_atoms(atoms, entry.name)
            except StructureRejected as exc:
                rejected.append({"source": label, "name": entry.name, "reason": exc.reason,
                                 "detail": f"after H normalisation: {exc.detail}"})
                continue
            atoms_of[f"{label}/{entry.name}"] = atoms
    return atoms_of, rejected


def _reusable_labels(paths: str | Path | list[str | Path] | None) -> dict[str, list[Atoms]]:
    """Labelled frames of earlier builds by parent id, ``c0`` first.

    ``paths``: one or several extxyz files (e.g. the previous bundled set) or folders of
    labelled shards (``<out>.build/labelled`` of an earlier build: every frame, before
    assembly filters); a parent found in several sources is taken from the first.
    """
    from farfield.data.readers import iter_frames

    if paths is None:
        return {}
    out: dict[str, list[Atoms]] = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        path = Path(path)
        found: dict[str, list[Atoms]] = {}
        for file in sorted(path.glob("*.extxyz")) if path.is_dir() else [path]:
            for _, atoms in iter_frames(file):
                if (isinstance(atoms, Atoms) and atoms.info.get(ENERGY) is not None
                        and FORCES in atoms.arrays):
                    found.setdefault(str(atoms.info[PARENT_ID]), []).append(atoms)
        for parent, frames in found.items():
            out.setdefault(parent, frames)
    for frames in out.values():
        frames.sort(key=lambda a: int(str(a.info[STRUCTURE_ID]).rsplit("-c", 1)[-1]))
    return out


def _same_geometry(old: Atoms, new: Atoms) -> bool:
    return (np.array_equal(old.numbers, new.numbers)
            and np.allclose(old.positions, new.positions, atol=1e-6, rtol=0)
            and np.allclose(old.cell.array, new.cell.array, atol=1e-6, rtol=0))


def _reused_relaxation(c0: Atoms, settings: SamplingSettings,
                       reusable: dict[str, list[Atoms]]) -> list[Atoms] | None:
    """An earlier labelled relaxation of the same input geometry with exactly the frame kinds
    this plan asks for (``input``, ``relax_steps`` × ``relax``, ``thermal_snapshots`` ×
    ``thermal``), marked ``labels_reused``; None if there is none. The sampling settings
    (step size, strain, displacement, seed) must be those of the earlier build: the caller's
    promise, as with every ``--reuse-labels`` source."""
    old = reusable.get(str(c0.info[PARENT_ID]), [])
    n_relax, n_thermal = settings.frames_for(len(c0))
    kinds = [a.info.get(CONFIG_KIND) for a in old]
    if (not old or kinds != ["input"] + ["relax"] * n_relax + ["thermal"] * n_thermal
            or str(old[0].info[STRUCTURE_ID]) != str(c0.info[STRUCTURE_ID])
            or not _same_geometry(old[0], c0)):
        return None
    frames = []
    for atoms in old:
        frame = atoms.copy()
        frame.info = {**c0.info, **{k: v for k, v in atoms.info.items()
                                    if k in (STRUCTURE_ID, CONFIG_KIND, ENERGY, STRESS,
                                             "label_method", "total_charge")}}
        frame.info[LABELS_REUSED] = True
        frames.append(frame)
    return frames


def _relax_seed(c0: Atoms, settings: SamplingSettings, reusable: dict[str, list[Atoms]]) -> Atoms:
    """The planned frame a worker expands into a labelled relaxation (see
    :mod:`farfield.data.relaxation`); carries the labels of an identical earlier input."""
    seed = c0.copy()
    n_relax, n_thermal = settings.frames_for(len(c0))
    seed.info.update({CONFIG_KIND: RELAX_SEED, RELAX_STEPS: n_relax, THERMAL_SNAPSHOTS: n_thermal})
    old = next((a for a in reusable.get(str(c0.info[PARENT_ID]), [])
                if str(a.info[STRUCTURE_ID]) == str(c0.info[STRUCTURE_ID])
                and a.info.get(CONFIG_KIND) == "input"), None)
    if old is not None and _same_geometry(old, c0):
        seed.info.update({ENERGY: float(old.info[ENERGY]), LABELS_REUSED: True,
                          "label_method": old.info.get("label_method", "")})
        if STRESS in old.info:
            seed.info[STRESS] = np.asarray(old.info[STRESS], dtype=float)
        seed.arrays[FORCES] = np.array(old.arrays[FORCES])
        if CHARGES in old.arrays:
            seed.arrays[CHARGES] = np.array(old.arrays[CHARGES])
    return seed


def _expected_frames(settings: SamplingSettings, n_atoms: int) -> int:
    if settings.relaxes:
        n_relax, n_thermal = settings.frames_for(n_atoms)
        return 1 + n_relax + n_thermal
    return settings.configs_per_parent


def _plan(settings: BuildSettings, work: Path, cache_dir: str | Path | None, n_workers: int,
          address: str | None, progress: bool,
          reuse_labels: str | Path | list[str | Path] | None = None) -> None:
    """Catalogue, select, sample and write ``inputs/`` shards, then ``plan.json``."""
    catalogue = build_catalogue(settings.sources, cache_dir=cache_dir, n_workers=n_workers,
                                address=address, progress=progress)
    n_pick = settings.parents + math.ceil(settings.spare_fraction * settings.parents)
    common = dict(min_atoms=settings.min_atoms, max_atoms=settings.max_atoms,
                  n_bins=settings.size_bins, size_exponent=settings.size_exponent,
                  max_per_metal=settings.max_per_metal, seed=settings.seed)
    if settings.large_parents or settings.min_element_parents:
        n_large = math.ceil(settings.large_parents * (1 + settings.spare_fraction))
        selection = select_covered_parents(
            catalogue, n_pick, n_large=n_large, large_atoms=settings.sampling.large_atoms or 100,
            min_element_parents=math.ceil(settings.min_element_parents
                                          * (1 + settings.spare_fraction)), **common)
    else:
        selection = select_parents(catalogue, n_pick, **common)
    reusable = _reusable_labels(reuse_labels)
    atoms_of, late = _load_parents(selection.chosen, settings)
    inputs = work / INPUTS
    inputs.mkdir(parents=True, exist_ok=True)
    shard: list[Atoms] = []
    shards: list[list[Atoms]] = []
    parent_rows = []
    for row in selection.chosen.itertuples():
        atoms = atoms_of.get(f"{row.source}/{row.name}")
        if atoms is None:
            continue
        frames = sample_configurations(atoms, row.refcode, row.source, settings.sampling,
                                       settings.seed)
        for frame in frames:
            frame.info.update(coremof_entry=row.name, total_charge=settings.total_charge)
        if settings.sampling.relaxes:
            frames = (_reused_relaxation(frames[0], settings.sampling, reusable)
                      or [_relax_seed(frames[0], settings.sampling, reusable)])
        if settings.sampling.md_snapshots:
            seed_frame = frames[0].copy()
            seed_frame.info.update({STRUCTURE_ID: f"{row.refcode}-md", CONFIG_KIND: MD_SEED,
                                    "md_first_index": len(frames)})
            frames.append(seed_frame)
        if shard and len(shard) + len(frames) > settings.shard_size:
            shards.append(shard)
            shard = []
        shard += frames
        parent_rows.append({"parent_id": row.refcode, "source": row.source, "name": row.name,
                            "n_atoms": len(atoms), "formula": row.formula, "metals": row.metals,
                            "size_bin": row.size_bin,
                            "frames": _expected_frames(settings.sampling, len(atoms))})
    if shard:
        shards.append(shard)
    for number, frames in enumerate(shards):
        write_text_atomic(inputs / f"shard-{number:05d}.extxyz", "".join(map(format_frame, frames)))
    rejections = pd.concat([
        catalogue[catalogue["status"] != "ok"][["source", "name", "reason", "detail"]],
        selection.skipped[["source", "name", "reason", "detail"]],
        pd.DataFrame(late, columns=["source", "name", "reason", "detail"]),
    ])
    rejections.to_csv(work / "rejections.csv", index=False)
    pd.DataFrame(parent_rows).to_csv(work / "parents.csv", index=False)
    plan = {"settings": settings.model_dump(), "key": settings.key(), "n_shards": len(shards),
            "n_parents_planned": len(parent_rows), "quotas": selection.quotas,
            "size_bin_edges": selection.edges,
            "shard_sizes": {f"shard-{i:05d}.extxyz": sum(
                1 + int(a.info.get(RELAX_STEPS, 0)) + int(a.info.get(THERMAL_SNAPSHOTS, 0))
                for a in s) for i, s in enumerate(shards)},
            "shard_costs": {f"shard-{i:05d}.extxyz": sum(
                0 if a.info.get(CONFIG_KIND) != RELAX_SEED and a.info.get(LABELS_REUSED) else len(a) ** 2 * (1 + int(a.info.get(RELAX_STEPS, 0)) + int(a.info.get(THERMAL_SNAPSHOTS, 0)))
                for a in s) for i, s in enumerate(shards)},
            "labels_reused": sum(bool(a.info.get(LABELS_REUSED)) for s in shards for a in s),
            "relaxations_reused": sum(a.info.get(CONFIG_KIND) == "input" and bool(a.info.get(LABELS_REUSED))
                                      for s in shards for a in s),
            "catalogue": {"n_cifs": len(catalogue),
                          "n_usable": int((catalogue["status"] == "ok").sum()),
                          "rejected": catalogue.loc[catalogue["status"] != "ok", "reason"]
                          .value_counts().to_dict()}}
    write_text_atomic(work / PLAN, json.dumps(plan, indent=1) + "\n")


def _read_plan(work: Path, settings: BuildSettings) -> dict | None:
    path = work / PLAN
    if not path.is_file():
        return None
    plan = json.loads(path.read_text())
    old, new = plan["settings"], settings.plan_settings()
    if any(old.get(k) != new[k] for k in new):
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k])
        raise ValueError(f"{work} holds a build with other settings ({diff}); use another "
                         f"--out or delete {work} to start over")
    return plan


def _assemble(work: Path, plan: dict, settings: BuildSettings) -> tuple[list[Atoms], list[dict]]:
    """Labelled frames of the first ``parents`` good parents (plan order) and all failures."""
    failures = []
    frames: list[Atoms] = []
    for name in sorted(plan["shard_sizes"]):
        text = (work / FAILURES / name.replace(".extxyz", ".jsonl")).read_text()
        failures += [json.loads(line) for line in text.splitlines() if line.strip()]
        if (work / LABELLED / name).stat().st_size:
            frames += read_shard(work / LABELLED / name)
    by_parent: dict[str, list[Atoms]] = {}
    for atoms in frames:
        by_parent.setdefault(str(atoms.info[PARENT_ID]), []).append(atoms)
    good: list[str] = []
    for parent_id, group in by_parent.items():
        c0 = next((a for a in group if a.info.get(CONFIG_KIND) == "input"), None)
        if c0 is None:
            failures.append({"structure_id": f"{parent_id}-c0", "reason": "parent_dropped",
                             "detail": "input geometry could not be labelled"})
            continue
        f_max = float(np.linalg.norm(c0.arrays[FORCES], axis=1).max())
        if f_max > settings.max_force or _max_charge(c0) > settings.max_charge:
            failures.append({"structure_id": c0.info[STRUCTURE_ID], "reason": "input_outlier",
                             "detail": f"max |F| {f_max:.1f} eV/Å (limit {settings.max_force}), "
                                       f"max |q| {_max_charge(c0):.2f} e (limit "
                                       f"{settings.max_charge}) in the input geometry; "
                                       f"parent dropped"})
            continue
        e0 = float(c0.info["energy"]) / len(c0)
        for atoms in list(group):
            q_max = _max_charge(atoms)
            shift = abs(float(atoms.info["energy"]) / len(atoms) - e0)
            if q_max > settings.max_charge or shift > settings.max_energy_shift:
                group.remove(atoms)
                failures.append({"structure_id": atoms.info[STRUCTURE_ID],
                                 "reason": "label_outlier",
                                 "detail": f"max |q| {q_max:.2f} e (limit {settings.max_charge}), "
                                           f"|E/atom - E/atom(c0)| {shift:.3f} eV "
                                           f"(limit {settings.max_energy_shift}): an SCF "
                                           f"solution far from the input geometry's"})
        if settings.max_label_force is not None:
            for atoms in list(group):
                f_atoms = float(np.linalg.norm(atoms.arrays[FORCES], axis=1).max())
                if f_atoms > settings.max_label_force:
                    group.remove(atoms)
                    failures.append({"structure_id": atoms.info[STRUCTURE_ID],
                                     "reason": "force_cap",
                                     "detail": f"max |F| {f_atoms:.1f} eV/Å above "
                                               f"{settings.max_label_force} eV/Å"})
        needed = min(settings.min_configs, _expected_frames(settings.sampling, len(c0)))
        if len(group) < needed:
            failures.append({"structure_id": c0.info[STRUCTURE_ID], "reason": "parent_dropped",
                             "detail": f"only {len(group)} of the configurations labelled "
                                       f"(fewer than {needed}); parent dropped"})
            continue
        good.append(parent_id)
    elements = {p: {str(s) for s in by_parent[p][0].get_chemical_symbols()} for p in good}
    good = _drop_rare(good, elements, settings.min_element_parents, failures)
    kept = _cover_elements(_quota(good, by_parent, settings), good, elements,
                           settings.min_element_parents)
    kept = _drop_rare(kept, elements, settings.min_element_parents, failures)
    kept = [a for parent_id in _stratify_sizes(kept, work) for a in by_parent[parent_id]]
    return kept, failures


def _quota(good: list[str], by_parent: dict[str, list[Atoms]], settings: BuildSettings) -> list[str]:
    """The first ``parents`` good parents in plan order; with ``large_parents``, the first
    ``large_parents`` above ``sampling.large_atoms`` and the first others up to ``parents``."""
    if not settings.large_parents:
        return good[: settings.parents]
    limit = settings.sampling.large_atoms or 100
    large = [p for p in good if len(by_parent[p][0]) > limit][: settings.large_parents]
    small = [p for p in good if len(by_parent[p][0]) <= limit]
    return [p for p in good if p in set(large) | set(small[: settings.parents - len(large)])]


def _cover_elements(kept: list[str], good: list[str], elements: dict[str, set[str]],
                    m: int) -> list[str]:
    """``kept`` plus, for each element in fewer than ``m`` of them, spare good parents carrying
    it (plan order) until it reaches ``m``: the quota cut must not push an element that the
    spares cover below the rule (``_drop_rare`` would then throw all its parents away)."""
    if not m:
        return kept
    chosen = set(kept)
    for _ in range(len(good)):
        counts: dict[str, int] = {}
        for p in chosen:
            for el in elements[p]:
                counts[el] = counts.get(el, 0) + 1
        short = sorted((el for el, c in counts.items() if c < m), key=lambda el: counts[el])
        spare = next((p for el in short for p in good if p not in chosen and el in elements[p]), None)
        if spare is None:
            break
        chosen.add(spare)
    return [p for p in good if p in chosen]


def _drop_rare(parents: list[str], elements: dict[str, set[str]], m: int,
               failures: list[dict]) -> list[str]:
    """Drop parents carrying an element found in fewer than ``m`` of them, until none is
    left (each dropped parent recorded as ``rare_element``)."""
    while m:
        counts: dict[str, int] = {}
        for p in parents:
            for el in elements[p]:
                counts[el] = counts.get(el, 0) + 1
        rare = {el for el, c in counts.items() if c < m}
        if not rare:
            break
        for p in parents:
            if elements[p] & rare:
                failures.append({"structure_id": f"{p}-c0", "reason": "rare_element",
                                 "detail": f"contains {' '.join(sorted(elements[p] & rare))}, "
                                           f"found in fewer than {m} kept parents; parent dropped"})
        parents = [p for p in parents if not elements[p] & rare]
    return parents


def _max_charge(atoms: Atoms) -> float:
    return float(np.abs(atoms.arrays[CHARGES]).max()) if CHARGES in atoms.arrays else 0.0


def _stratify_sizes(parent_ids: list[str], work: Path) -> list[str]:
    """Parents in stratified size order: sorted by their quantile within their size bin
    ((rank + ½) / bin size, smallest first), so any prefix of the store
    (``data.max_structures``) has the size distribution of the whole set."""
    table = pd.read_csv(work / "parents.csv", dtype={"parent_id": str})
    bin_of = dict(zip(table["parent_id"], table["size_bin"]))
    bins: dict[int, list[str]] = {}
    for parent_id in parent_ids:  # plan order: by bin, then by size
        bins.setdefault(int(bin_of[parent_id]), []).append(parent_id)
    keyed = [((rank + 0.5) / len(members), b, parent_id)
             for b, members in bins.items() for rank, parent_id in enumerate(members)]
    return [parent_id for _, _, parent_id in sorted(keyed)]


def _versions() -> dict[str, str]:
    return {p: version(p) for p in ("tblite", "ase", "core-mof", "numpy", "ray")}


def build_dataset(settings: BuildSettings, out: str | Path, *, n_workers: int = 2,
                  address: str | None = None, cache_dir: str | Path | None = None,
                  progress: bool = True, command: str | None = None,
                  reuse_labels: str | Path | list[str | Path] | None = None) -> tuple[DatasetStore, dict]:
    """Plan (or resume), label and assemble the store at ``out``; returns it and a report.

    ``reuse_labels``: extxyz files or labelled-shard folders of earlier builds (see
    :func:`_reused_relaxation`): whole relaxations, or else input single points, of identical
    input geometries (same id, atoms, positions and cell to 1e-6 Å) are reused; used only
    when a plan is made.
    """
    out = Path(out)
    work = work_dir_of(out)
    work.mkdir(parents=True, exist_ok=True)
    plan = _read_plan(work, settings)
    if plan is None:
        _plan(settings, work, cache_dir, n_workers, address, progress, reuse_labels)
        plan = _read_plan(work, settings)
    labelling = label_shards(work, xtb=settings.xtb, n_workers=n_workers, address=address,
                             sampling=settings.sampling, seed=settings.seed,
                             shard_sizes=plan["shard_sizes"], shard_costs=plan["shard_costs"],
                             progress=progress)
    frames, failures = _assemble(work, plan, settings)
    if not frames:
        raise ValueError(f"{work}: no structure could be labelled (see {work / FAILURES})")
    command = command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    provenance = {"command": command, "settings": settings.model_dump(), "plan_key": settings.key(),
                  "versions": _versions(), "catalogue": plan["catalogue"],
                  "labelling": {k: v for k, v in labelling.items() if k != "workers"},
                  "workers": labelling["workers"], "n_failures": len(failures)}
    extra = {"failures.jsonl": "".join(json.dumps(f) + "\n" for f in failures),
             "parents.csv": (work / "parents.csv").read_text()}
    store = write_store(frames, out, label_method=f"{settings.method} (tblite "
                        f"{version('tblite')}, periodic)", provenance=provenance,
                        extra_files=extra, overwrite=True)
    report = {"store": str(store.path), "content_hash": store.content_hash,
              "n_structures": len(store), "n_parents": store.manifest["n_parents"],
              "n_failures": len(failures), "labelling": labelling}
    return store, report


def _quantised(values: np.ndarray, decimals: int = 8) -> np.ndarray:
    return np.array([float(f"{v:.{decimals}f}") for v in np.ravel(values)]).reshape(np.shape(values))


def export_extxyz_xz(store: DatasetStore, path: str | Path) -> dict:
    """Write ``store`` as one xz-compressed extxyz (forces and charges rounded to 1e-8)
    and a JSON manifest next to it (the store's provenance, hashes); returns the manifest.

    ``ase.io.read(path, ":")`` reads the file, as does ``farfield data import``.
    """
    import ase.io

    path = Path(path)
    frames = store.read()
    for atoms in frames:
        atoms.arrays[FORCES] = _quantised(atoms.arrays[FORCES])
        if CHARGES in atoms.arrays:
            atoms.arrays[CHARGES] = _quantised(atoms.arrays[CHARGES])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with lzma.open(tmp, "wt", preset=9 | lzma.PRESET_EXTREME) as handle:
        ase.io.write(handle, frames, format="extxyz")
    os.replace(tmp, path)
    manifest = {key: store.manifest[key] for key in ("n_structures", "n_parents", "elements",
                                                     "label_method", "provenance", "created_with",
                                                     "content_hash")}
    manifest["store_content_hash"] = manifest.pop("content_hash")
    manifest["file"] = {"name": path.name, "bytes": path.stat().st_size,
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                        "rounding": "forces (eV/Å) and charges (e) to 8 decimals"}
    sizes = store.index["n_atoms"]
    manifest["n_atoms_range"] = [int(sizes.min()), int(sizes.max())]
    from farfield.data.summary import store_summary

    manifest["summary"] = store_summary(store)
    stem = path.name.removesuffix(".xz").removesuffix(".extxyz")
    path.with_name(stem + ".json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
