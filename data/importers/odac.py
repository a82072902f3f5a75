"""ODAC-style import: ASE SQLite databases whose rows name their structure and MOF.

ODAC23/ODAC25 (Open DAC, fairchem) ship ASE databases whose rows carry energy and
forces in the calculator results and keys such as ``sid`` (system id), ``fid``
(frame of a relaxation), ``mof_id`` / ``ads_symbols`` in ``key_value_pairs`` or in
``row.data``. This importer reads such rows with the ``db`` reader
(:mod:`farfield.data.readers`, which flattens calculator results, key-value pairs
and ``data`` into the record) and then

* sets ``structure_id`` from the row key ``id_key`` (default ``sid``), joined with
  ``frame_key`` when given (``"{sid}-{fid}"``: rows of one trajectory share a sid);
* sets ``parent_id`` from ``parent_key`` (default ``mof_id``): splits are made over
  parents, so a row without it is a problem, never silently its own parent
  (``parent_key=None`` makes every structure its own parent);
* validates the record like any other (energy and forces required unless
  ``require_forces=False``).

Energy/forces/charges stored under other names are mapped with ``key_map`` (the
``--key`` option), e.g. ``{"charges": "ddec_charges"}`` for a ``row.data`` entry.

``.aselmdb`` files (fairchem's LMDB backend, as ODAC25 ships) are read by
``--format aselmdb`` (:mod:`farfield.data.importers.aselmdb`, Ray-sharded, with the paper's
selection rules), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from farfield.data.readers import ReadResult, iter_frames
from farfield.data.records import PARENT_ID, SOURCE, STRUCTURE_ID
from farfield.data.validation import Problem, validate_atoms

__all__ = ["LMDB_SUFFIXES", "OdacOptions", "read_odac"]

LMDB_SUFFIXES = (".aselmdb", ".lmdb")


@dataclass(frozen=True)
class OdacOptions:
    """Which row keys name a structure (``id_key``, optionally + ``frame_key``) and
    its parent MOF (``parent_key``; None: each structure is its own parent)."""

    id_key: str = "sid"
    parent_key: str | None = "mof_id"
    frame_key: str | None = None


def _text(value) -> str | None:
    """An id value as text; None for a missing or empty one."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (dict, list, np.ndarray)) or str(value).strip() == "":
        return None
    return str(value).strip()


def _row_keys(atoms: Atoms) -> str:
    keys = [k for k in atoms.info if k not in (SOURCE,)]
    return ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "") or "nothing"


def row_key_values(atoms: Atoms, id_key: str | None, frame_key: str | None,
                   parent_key: str | None) -> tuple[dict[str, str], list[str]]:
    """The id keys of one row, by option name (``--id-key``, ``--frame-key``,
    ``--parent-key``; keys given as None are skipped), and a message per key the row lacks.
    Shared by the ODAC-style and the ``.aselmdb`` importers."""
    values, messages = {}, []
    for option, key in (("--id-key", id_key), ("--frame-key", frame_key), ("--parent-key", parent_key)):
        if key is None:
            continue
        values[option] = _text(atoms.info.get(key))
        if values[option] is None:
            messages.append(f"row has no usable {key!r} ({option}); row keys: {_row_keys(atoms)}")
    return values, messages


def _ids(atoms: Atoms, options: OdacOptions) -> list[str]:
    """Set structure_id / parent_id from the row keys; return what is missing."""
    values, messages = row_key_values(atoms, options.id_key, options.frame_key, options.parent_key)
    if messages:
        return messages
    structure_id = values["--id-key"]
    if options.frame_key:
        structure_id = f"{structure_id}-{values['--frame-key']}"
    atoms.info[STRUCTURE_ID] = structure_id
    atoms.info[PARENT_ID] = values.get("--parent-key") or structure_id
    return []


def read_odac(path: str | Path, options: OdacOptions | None = None, *,
              key_map: dict[str, str] | None = None, require_forces: bool = True) -> ReadResult:
    """Read and validate every row of the ASE SQLite database ``path``.

    Raises FileNotFoundError / ValueError (naming the file) for a missing file, an
    LMDB file, or a key_map that names structure_id/parent_id (use the options);
    every row-level problem is reported in the result instead.
    """
    options = options or OdacOptions()
    file, path = str(path), Path(path)
    if path.suffix.lower() in LMDB_SUFFIXES:
        raise ValueError(f"{file}: LMDB-backed ASE db ({path.suffix}): import it with "
                         f"--format aselmdb (same --id-key/--parent-key/--key options)")
    clash = sorted({STRUCTURE_ID, PARENT_ID} & set(key_map or {}))
    if clash:
        raise ValueError(f"--key {clash[0]}=...: with --format odac the ids come from --id-key / "
                         f"--parent-key / --frame-key")
    result = ReadResult(valid=[], problems=[], n_frames=0)
    frames = set()
    for frame, item in iter_frames(path, format="db", key_map=key_map):
        if isinstance(item, Problem):
            result.problems.append(item)
            if item.frame is not None:
                frames.add(frame)
            continue
        frames.add(frame)
        item.info.setdefault(SOURCE, path.name)
        problems = [Problem(file, frame, message) for message in _ids(item, options)]
        problems += validate_atoms(item, file=file, frame=frame, require_forces=require_forces)
        result.problems += problems
        if not problems:
            result.valid.append(item)
            result.frames.append(frame)
    result.n_frames = len(frames)
    return result
